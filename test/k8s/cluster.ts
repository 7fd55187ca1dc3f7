/**
 * A real Kubernetes API for the tests: kube-apiserver and kube-controller-manager v1.36 (built
 * from k8s.io/kubernetes into the toolchain cache by `npm run test:k8s`) on loopback, backed by
 * etcd over TLS with a client certificate, as k3s runs on zerotouch's etcd. There is no kubelet:
 * objects are validated and stored, controllers that need no node run (namespaces, garbage
 * collection), pods never start.
 *
 * Every process is bounded (`timeout`) and stopped by `stop()`; traffic stays on loopback.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from "child_process";
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "fs";
import { createServer } from "net";
import { tmpdir } from "os";
import * as path from "path";

import { makeEtcdPem } from "../support/etcdCerts";

/** The folder of the toolchain's binaries (ZT_TOOLCHAIN_BIN, set by `npm run test:k8s`). */
export function toolchainBin(name: string): string {
    const dir = process.env.ZT_TOOLCHAIN_BIN;
    if (dir === undefined || dir === "") {
        throw new Error("ZT_TOOLCHAIN_BIN is not set: run these tests with `npm run test:k8s`, which builds kube-apiserver, kube-controller-manager and kubectl");
    }
    return path.join(dir, name);
}

/** A free TCP port on loopback. */
async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as { port: number }).port;
            srv.close(() => resolve(port));
        });
    });
}

function openssl(args: string[]): void {
    execFileSync("openssl", args, { timeout: 15000, stdio: ["ignore", "pipe", "pipe"] });
}

export interface KubectlResult {
    code: number;
    stdout: string;
    stderr: string;
}

export class TestCluster {
    readonly dir = mkdtempSync(path.join(tmpdir(), "zt-k8s-"));
    readonly kubeconfig = path.join(this.dir, "admin.kubeconfig");
    private readonly processes: { name: string; child: ChildProcess; log: string }[] = [];
    apiServerUrl = "";

    /** Starts etcd, the API server and the controller manager; resolves once /readyz is ok. */
    async start(timeoutSec = 120): Promise<void> {
        const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
        // etcd with TLS and client certificates, as zerotouch runs it.
        const etcdDir = path.join(this.dir, "etcd-pki");
        makeEtcdPem(etcdDir, [{ name: "local-1", address: "127.0.0.1" }]);
        const etcdUrl = `https://127.0.0.1:${etcdClient}`;
        this.run("etcd", "/usr/bin/etcd", [
            "--name", "local-1",
            "--data-dir", path.join(this.dir, "etcd-data"),
            "--listen-client-urls", etcdUrl,
            "--advertise-client-urls", etcdUrl,
            "--listen-peer-urls", `http://127.0.0.1:${etcdPeer}`,
            "--initial-advertise-peer-urls", `http://127.0.0.1:${etcdPeer}`,
            "--initial-cluster", `local-1=http://127.0.0.1:${etcdPeer}`,
            "--cert-file", path.join(etcdDir, "local-1-server.crt"),
            "--key-file", path.join(etcdDir, "local-1-server.key.p8"),
            "--client-cert-auth",
            "--trusted-ca-file", path.join(etcdDir, "ca.crt"),
            "--listen-metrics-urls", "http://127.0.0.1:0",
        ]);

        // The cluster's own CA: the API server's serving certificate and the admin's client certificate.
        const pki = path.join(this.dir, "pki");
        mkdirSync(pki);
        const f = (n: string) => path.join(pki, n);
        openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")]);
        openssl(["req", "-x509", "-new", "-key", f("ca.key"), "-subj", "/CN=zt-test-cluster-ca", "-days", "2", "-out", f("ca.crt")]);
        const issue = (name: string, subject: string, ext: string) => {
            writeFileSync(f(`${name}.ext`), ext);
            openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f(`${name}.key`)]);
            openssl(["req", "-new", "-key", f(`${name}.key`), "-subj", subject, "-out", f(`${name}.csr`)]);
            openssl(["x509", "-req", "-in", f(`${name}.csr`), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", f(`${name}.ext`), "-out", f(`${name}.crt`)]);
        };
        issue("apiserver", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n");
        issue("admin", "/O=system:masters/CN=zt-admin", "extendedKeyUsage=clientAuth\n");
        openssl(["genrsa", "-out", f("sa.key"), "2048"]);
        openssl(["rsa", "-in", f("sa.key"), "-pubout", "-out", f("sa.pub")]);

        this.apiServerUrl = `https://127.0.0.1:${apiPort}`;
        this.run("kube-apiserver", toolchainBin("kube-apiserver"), [
            `--etcd-servers=${etcdUrl}`,
            `--etcd-cafile=${path.join(etcdDir, "ca.crt")}`,
            `--etcd-certfile=${path.join(etcdDir, "kube-apiserver-client.crt")}`,
            `--etcd-keyfile=${path.join(etcdDir, "kube-apiserver-client.key.p8")}`,
            "--bind-address=127.0.0.1",
            `--secure-port=${apiPort}`,
            `--tls-cert-file=${f("apiserver.crt")}`,
            `--tls-private-key-file=${f("apiserver.key")}`,
            `--client-ca-file=${f("ca.crt")}`,
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            `--service-account-key-file=${f("sa.pub")}`,
            `--service-account-signing-key-file=${f("sa.key")}`,
            "--service-cluster-ip-range=10.43.0.0/16",
        ]);
        writeFileSync(
            this.kubeconfig,
            [
                "apiVersion: v1",
                "kind: Config",
                "clusters:",
                `- name: zt-test\n  cluster:\n    server: ${this.apiServerUrl}\n    certificate-authority: ${f("ca.crt")}`,
                "users:",
                `- name: zt-admin\n  user:\n    client-certificate: ${f("admin.crt")}\n    client-key: ${f("admin.key")}`,
                "contexts:",
                "- name: zt-test\n  context:\n    cluster: zt-test\n    user: zt-admin",
                "current-context: zt-test",
                "",
            ].join("\n"),
        );
        await this.waitReady(timeoutSec);
        // Without it nothing removes namespaces' finalizers or collects garbage (a destroy hangs).
        this.run("kube-controller-manager", toolchainBin("kube-controller-manager"), [
            `--kubeconfig=${this.kubeconfig}`,
            `--authentication-kubeconfig=${this.kubeconfig}`,
            `--authorization-kubeconfig=${this.kubeconfig}`,
            "--bind-address=127.0.0.1",
            `--secure-port=${await freePort()}`,
            "--leader-elect=false",
            `--service-account-private-key-file=${f("sa.key")}`,
            `--root-ca-file=${f("ca.crt")}`,
            "--use-service-account-credentials=false",
        ]);
    }

    /** Runs kubectl against the cluster (bounded); never throws. */
    kubectl(args: readonly string[], input?: string, timeoutSec = 120): KubectlResult {
        const r = spawnSync(toolchainBin("kubectl"), ["--kubeconfig", this.kubeconfig, ...args], {
            input,
            encoding: "utf8",
            timeout: timeoutSec * 1000,
            maxBuffer: 64 * 1024 * 1024,
        });
        return { code: r.status ?? 124, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
    }

    /** kubectl that must succeed: returns stdout, throws with stderr otherwise. */
    must(args: readonly string[], input?: string, timeoutSec = 120): string {
        const r = this.kubectl(args, input, timeoutSec);
        if (r.code !== 0) {
            throw new Error(`kubectl ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
        }
        return r.stdout;
    }

    /**
     * Waits, bounded, until the CRDs are Established (polling: `kubectl wait` fails on a CRD
     * whose status has no conditions yet).
     */
    async waitEstablished(names: readonly string[], timeoutSec = 60): Promise<void> {
        const deadline = Date.now() + timeoutSec * 1000;
        let pending = [...names];
        while (pending.length > 0 && Date.now() < deadline) {
            pending = pending.filter(
                (n) => this.kubectl(["get", "crd", n, "-o", 'jsonpath={.status.conditions[?(@.type=="Established")].status}'], undefined, 10).stdout.trim() !== "True",
            );
            if (pending.length > 0) {
                await new Promise((r) => setTimeout(r, 500));
            }
        }
        if (pending.length > 0) {
            throw new Error(`CRDs not Established within ${timeoutSec}s: ${pending.join(", ")}`);
        }
    }

    /** The last lines of a process's log. */
    logTail(name: string, lines = 30): string {
        const p = this.processes.find((x) => x.name === name);
        if (p === undefined) {
            return "";
        }
        const r = spawnSync("tail", ["-n", String(lines), p.log], { encoding: "utf8" });
        return r.stdout ?? "";
    }

    /**
     * Stops the processes, newest first (the API server before its etcd), each with its whole
     * process group (the `timeout` wrapper and the server under it): SIGTERM, then SIGKILL after
     * a bounded wait, so nothing outlives the tests.
     */
    stop(): void {
        for (const p of [...this.processes].reverse()) {
            this.signal(p.child, "SIGTERM");
            const deadline = Date.now() + 15_000;
            while (this.groupAlive(p.child) && Date.now() < deadline) {
                spawnSync("sleep", ["0.2"]);
            }
            this.signal(p.child, "SIGKILL");
        }
        rmSync(this.dir, { recursive: true, force: true });
    }

    private signal(child: ChildProcess, signal: NodeJS.Signals): void {
        if (child.pid === undefined) {
            return;
        }
        try {
            process.kill(-child.pid, signal);
        } catch {
            // the group is gone already
        }
    }

    private groupAlive(child: ChildProcess): boolean {
        return child.pid !== undefined && spawnSync("pgrep", ["-g", String(child.pid)], { stdio: "ignore" }).status === 0;
    }

    private run(name: string, bin: string, args: string[]): void {
        const log = path.join(this.dir, `${name}.log`);
        const fd = openSync(log, "a");
        // Bounded even if the test process dies without stop().
        // Its own process group, so that stop() reaches the server under the wrapper too.
        const child = spawn("timeout", ["1800", bin, ...args], { stdio: ["ignore", fd, fd], detached: true });
        this.processes.push({ name, child, log });
    }

    private async waitReady(timeoutSec: number): Promise<void> {
        const deadline = Date.now() + timeoutSec * 1000;
        while (Date.now() < deadline) {
            const r = this.kubectl(["get", "--raw", "/readyz"], undefined, 10);
            if (r.code === 0 && r.stdout.trim() === "ok") {
                return;
            }
            const dead = this.processes.find((p) => p.child.exitCode !== null);
            if (dead !== undefined) {
                throw new Error(`${dead.name} exited (${dead.child.exitCode}):\n${this.logTail(dead.name)}`);
            }
            await new Promise((r) => setTimeout(r, 500));
        }
        throw new Error(`the API server was not ready within ${timeoutSec}s:\n${this.logTail("kube-apiserver")}`);
    }
}
