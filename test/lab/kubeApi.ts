/**
 * A real Kubernetes API on the lab: kube-apiserver and kube-controller-manager v1.36 (built from
 * k8s.io/kubernetes into the toolchain cache) as systemd units on control-plane nodes, backed by
 * the lab's etcd cluster over TLS with the `kube-apiserver` client certificate, the way k3s runs
 * on zerotouch's etcd: the same datastore files (`K3S_FILES`), every member's client URL as the
 * datastore endpoint, the API on 6443 (open only to the VPN by the host firewall). There is no
 * kubelet: objects are validated and stored, controllers that need no node run, pods never start.
 *
 * It writes an admin kubeconfig with the certificates inline beside the lab's state
 * (`.lab/kubeconfig`), so that a lab stack can use `kubernetes.mode: existing`:
 *
 *     pulumi config set --secret --stack lab zerotouch:kubeconfig < .lab/kubeconfig
 *
 * kubectl runs on the host inside the lab's VPN namespace (where the API is reachable from).
 */
import { spawnSync } from "child_process";
import { readFileSync, rmSync, writeFileSync } from "fs";
import * as path from "path";

import { K3S_FILES } from "../../components/k8s/k3s";
import { parseStackFile } from "../../infra/config";
import { KubectlBase, KubectlResult } from "../k8s/gitopsApply";
import { toolchainBin as toolchainAt } from "../support/toolchain";
import { adminKubeconfig, apiServerArgs, ApiServerFiles, controllerManagerArgs, makeKubePki } from "../k8s/kubePki";
import { copyToNode, Lab, LabNode, labStatePath, sshRun } from "./harness";

export const API_PORT = 6443;
const DIR = "/etc/zerotouch-lab/kube";
const BIN = "/usr/local/bin";
const UNIT = { apiServer: "zt-lab-kube-apiserver", controllerManager: "zt-lab-kube-controller-manager" } as const;
/** Every unit stops by itself after this long, even if nothing stops it. */
const RUNTIME_MAX_SECONDS = 3 * 3600;
const FILES: ApiServerFiles = {
    ca: `${DIR}/ca.crt`,
    cert: `${DIR}/apiserver.crt`,
    key: `${DIR}/apiserver.key`,
    saKey: `${DIR}/sa.key`,
    saPub: `${DIR}/sa.pub`,
    etcdCa: K3S_FILES.etcdCa,
    etcdCert: K3S_FILES.etcdCert,
    etcdKey: K3S_FILES.etcdKey,
};

/** The lab's admin kubeconfig, beside its state file. */
export function labKubeconfigPath(): string {
    return path.join(path.dirname(labStatePath()), "kubeconfig");
}

/** A binary of the toolchain that `npm run test:lab` builds. */
export function toolchainBin(name: string): string {
    return toolchainAt(name, "npm run test:lab");
}

export interface LabEtcdClient {
    /** Client URLs of every member. */
    readonly endpoints: readonly string[];
    readonly caCert: string;
    /** The `kube-apiserver` client certificate and key. */
    readonly cert: string;
    readonly key: string;
}

function unitFile(description: string, argv: readonly string[]): string {
    return [
        "[Unit]",
        `Description=${description} (zerotouch lab)`,
        "After=network-online.target",
        "",
        "[Service]",
        `ExecStart=${argv.join(" ")}`,
        "Restart=on-failure",
        "RestartSec=2",
        `RuntimeMaxSec=${RUNTIME_MAX_SECONDS}`,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

export class LabKubeApi extends KubectlBase {
    readonly kubeconfig = labKubeconfigPath();
    readonly server: string;

    constructor(
        private readonly lab: Lab,
        /** Nodes that run an API server; the first also runs the controller manager, and is the kubeconfig's server. */
        readonly servers: readonly LabNode[],
        private readonly etcd: LabEtcdClient,
        private readonly pkiDir: string,
    ) {
        super();
        if (servers.length === 0) {
            throw new Error("LabKubeApi: no server node");
        }
        this.server = `https://${servers[0].address}:${API_PORT}`;
    }

    /** Installs and starts the units, writes the kubeconfig, and waits (bounded) until /readyz is ok from the VPN. */
    async start(timeoutSec = 300): Promise<void> {
        const pki = makeKubePki(this.pkiDir, this.servers.map((s) => s.address));
        writeFileSync(this.kubeconfig, adminKubeconfig(pki, this.server, "zerotouch-lab"), { mode: 0o600 });
        // Where the controller manager reads its kubeconfig: the local API server.
        const local = adminKubeconfig(pki, `https://127.0.0.1:${API_PORT}`, "zerotouch-lab");
        const read = (f: string) => readFileSync(f, "utf8");
        for (const [i, node] of this.servers.entries()) {
            copyToNode(this.lab, node, toolchainBin("kube-apiserver"), `${BIN}/kube-apiserver`);
            const files: [string, string][] = [
                [FILES.ca, read(pki.ca)],
                [FILES.cert, read(pki.apiserverCert)],
                [FILES.key, read(pki.apiserverKey)],
                [FILES.saKey, read(pki.saKey)],
                [FILES.saPub, read(pki.saPub)],
                [FILES.etcdCa, this.etcd.caCert],
                [FILES.etcdCert, this.etcd.cert],
                [FILES.etcdKey, this.etcd.key],
                [`${DIR}/admin.kubeconfig`, local],
                [
                    `/etc/systemd/system/${UNIT.apiServer}.service`,
                    unitFile("kube-apiserver", [
                        `${BIN}/kube-apiserver`,
                        ...apiServerArgs({ etcdServers: this.etcd.endpoints, files: FILES, bindAddress: "0.0.0.0", advertiseAddress: node.address, port: API_PORT }),
                    ]),
                ],
            ];
            if (i === 0) {
                copyToNode(this.lab, node, toolchainBin("kube-controller-manager"), `${BIN}/kube-controller-manager`);
                files.push([
                    `/etc/systemd/system/${UNIT.controllerManager}.service`,
                    unitFile("kube-controller-manager", [
                        `${BIN}/kube-controller-manager`,
                        ...controllerManagerArgs({ kubeconfig: `${DIR}/admin.kubeconfig`, files: FILES, bindAddress: "127.0.0.1", port: 10257, leaderElect: true }),
                    ]),
                ]);
            }
            for (const [file, content] of files) {
                this.write(node, file, content);
            }
            const units = i === 0 ? `${UNIT.apiServer} ${UNIT.controllerManager}` : UNIT.apiServer;
            this.mustSsh(node, `systemctl daemon-reload && systemctl restart ${units}`);
        }
        await this.waitReady(timeoutSec);
    }

    /** kubectl against the kubeconfig's server, from the VPN namespace (bounded); never throws. */
    kubectl(args: readonly string[], input?: string, timeoutSec = 120): KubectlResult {
        return this.kubectlAt(this.server, args, input, timeoutSec);
    }

    /** kubectl against one node's API server. */
    kubectlAt(server: string, args: readonly string[], input?: string, timeoutSec = 120): KubectlResult {
        const r = spawnSync(
            "ip",
            ["netns", "exec", this.lab.clients.vpn.netns, "timeout", String(timeoutSec), toolchainBin("kubectl"), "--kubeconfig", this.kubeconfig, "--server", server, ...args],
            { input, encoding: "utf8", timeout: (timeoutSec + 10) * 1000, maxBuffer: 64 * 1024 * 1024 },
        );
        return { code: r.status ?? 124, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
    }

    /** The last lines of a unit's journal on a node. */
    journal(node: LabNode, unit: keyof typeof UNIT = "apiServer", lines = 30): string {
        return sshRun(this.lab, node, `journalctl -u ${UNIT[unit]} -n ${lines} --no-pager`).stdout;
    }

    /** Stops and removes the units, files and binaries on every server node, and the kubeconfig. */
    stop(): void {
        for (const node of this.servers) {
            sshRun(
                this.lab,
                node,
                // One unit at a time: `systemctl disable --now` stops nothing when one of its units does not exist.
                `for u in ${UNIT.apiServer} ${UNIT.controllerManager}; do systemctl stop "$u"; systemctl disable "$u"; systemctl reset-failed "$u"; done >/dev/null 2>&1; ` +
                    `rm -f /etc/systemd/system/${UNIT.apiServer}.service /etc/systemd/system/${UNIT.controllerManager}.service; systemctl daemon-reload; ` +
                    `rm -rf ${DIR} ${FILES.etcdCa} ${FILES.etcdCert} ${FILES.etcdKey} ${BIN}/kube-apiserver ${BIN}/kube-controller-manager`,
            );
        }
        rmSync(this.kubeconfig, { force: true });
    }

    private write(node: LabNode, file: string, content: string): void {
        const r = sshRun(this.lab, node, `umask 077; mkdir -p "$(dirname '${file}')" && cat >'${file}.part' && mv -f '${file}.part' '${file}'`, content);
        if (r.code !== 0) {
            throw new Error(`${node.name}: writing ${file}: exit ${r.code}: ${r.stderr}`);
        }
    }

    private mustSsh(node: LabNode, command: string): void {
        const r = sshRun(this.lab, node, command);
        if (r.code !== 0) {
            throw new Error(`${node.name}: ${command}: exit ${r.code}: ${r.stderr}\n${this.journal(node)}`);
        }
    }

    private async waitReady(timeoutSec: number): Promise<void> {
        const deadline = Date.now() + timeoutSec * 1000;
        const pending = new Set(this.servers.map((s) => s.address));
        while (pending.size > 0 && Date.now() < deadline) {
            for (const address of [...pending]) {
                const r = this.kubectlAt(`https://${address}:${API_PORT}`, ["get", "--raw", "/readyz"], undefined, 10);
                if (r.code === 0 && r.stdout.trim() === "ok") {
                    pending.delete(address);
                }
            }
            if (pending.size > 0) {
                await new Promise((r) => setTimeout(r, 1000));
            }
        }
        if (pending.size > 0) {
            const node = this.servers.find((s) => pending.has(s.address))!;
            throw new Error(`the API server on ${node.name} was not ready within ${timeoutSec}s:\n${this.journal(node)}`);
        }
    }
}

/** The secret values the lab stack with a Kubernetes layer takes (none is real). */
export const LAB_GITOPS_SECRETS = { manifestsPassword: "lab-reader-0123456789" } as const;

/**
 * The lab's GitOps layer config (`zerotouch:gitops`), without GitLab wiring: Argo CD from the chart
 * at `chartPath`, the manifests repository served by the host (the management address), and one
 * application laid out as app teams do.
 */
export function labGitopsConfig(lab: Lab, chartPath: string): Record<string, unknown> {
    return {
        argocd: { hostname: "argocd.vpn.lab.zerotouch.test", webhookHostname: "argocd-hooks.lab.zerotouch.test", chart: { path: chartPath }, reconciliationSeconds: 60 },
        manifests: { url: `https://${lab.managementCidr.split("/")[0]}/git/platform/manifests.git`, username: "argocd-reader" },
        applications: { "backend-service-lab": { environment: "prod", path: "deployments/prod", namespace: "backend", valueFiles: ["values-prod.yaml"] } },
    };
}

/**
 * The lab stack (`Pulumi.lab.yaml`, as `lab.sh up` writes it) with the Kubernetes layer on the
 * lab's API server (`kubernetes.mode: existing`, this kubeconfig as the secret
 * `zerotouch:kubeconfig`) and the GitOps layer without GitLab wiring: Argo CD from the shared
 * chart tarball, the manifests repository on the lab's host with a read credential.
 */
export function labStackWithKubernetes(lab: Lab, stackFile: string, kubeconfig: string, chartPath: string): { raw: Record<string, unknown>; secretKeys: Set<string> } {
    const { raw, secretKeys } = parseStackFile(readFileSync(stackFile, "utf8"), {});
    raw.sshPrivateKey = readFileSync(lab.keyPath, "utf8");
    raw.kubernetes = { mode: "existing" };
    raw.kubeconfig = kubeconfig;
    raw.gitops = labGitopsConfig(lab, chartPath);
    raw.manifestsPassword = LAB_GITOPS_SECRETS.manifestsPassword;
    for (const k of ["sshPrivateKey", "kubeconfig", "manifestsPassword"]) {
        secretKeys.add(k);
    }
    return { raw, secretKeys };
}
