/**
 * A real Kubernetes API for the tests: kube-apiserver and kube-controller-manager v1.36 (built
 * from k8s.io/kubernetes into the toolchain cache by `npm run test:k8s`) on loopback, backed by
 * etcd over TLS with a client certificate, as k3s runs on zerotouch's etcd. There is no kubelet:
 * objects are validated and stored, controllers that need no node run (namespaces, garbage
 * collection), pods never start.
 *
 * Every process is bounded (`timeout`) and stopped by `stop()`; traffic stays on loopback.
 */
import { spawnSync } from "child_process";
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";

import { makeEtcdPem } from "../support/etcdCerts";
import { freePort, Processes, waitFor } from "../support/processes";
import { toolchainBin as toolchainAt } from "../support/toolchain";
import { KubectlBase, KubectlResult } from "./gitopsApply";
import { adminKubeconfig, apiServerArgs, ApiServerFiles, controllerManagerArgs, makeKubePki } from "./kubePki";

/** A binary of the toolchain that `npm run test:k8s` builds. */
export function toolchainBin(name: string): string {
    return toolchainAt(name, "npm run test:k8s");
}

export class TestCluster extends KubectlBase {
    readonly dir = mkdtempSync(path.join(tmpdir(), "zt-k8s-"));
    readonly kubeconfig = path.join(this.dir, "admin.kubeconfig");
    private readonly processes = new Processes(this.dir);
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
        const pki = makeKubePki(path.join(this.dir, "pki"), []);
        const files: ApiServerFiles = {
            ca: pki.ca,
            cert: pki.apiserverCert,
            key: pki.apiserverKey,
            saKey: pki.saKey,
            saPub: pki.saPub,
            etcdCa: path.join(etcdDir, "ca.crt"),
            etcdCert: path.join(etcdDir, "kube-apiserver-client.crt"),
            etcdKey: path.join(etcdDir, "kube-apiserver-client.key.p8"),
        };
        this.apiServerUrl = `https://127.0.0.1:${apiPort}`;
        this.run("kube-apiserver", toolchainBin("kube-apiserver"), apiServerArgs({ etcdServers: [etcdUrl], files, bindAddress: "127.0.0.1", port: apiPort }));
        writeFileSync(this.kubeconfig, adminKubeconfig(pki, this.apiServerUrl));
        await this.waitReady(timeoutSec);
        // Without it nothing removes namespaces' finalizers or collects garbage (a destroy hangs).
        this.run(
            "kube-controller-manager",
            toolchainBin("kube-controller-manager"),
            controllerManagerArgs({ kubeconfig: this.kubeconfig, files, bindAddress: "127.0.0.1", port: await freePort(), leaderElect: false }),
        );
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

    /** The last lines of a process's log. */
    logTail(name: string, lines = 30): string {
        return this.processes.logTail(name, lines);
    }

    /** Stops the processes, newest first (the API server before its etcd), and removes the files. */
    stop(): void {
        this.processes.stop();
        rmSync(this.dir, { recursive: true, force: true });
    }

    private run(name: string, bin: string, args: string[]): void {
        this.processes.start(name, bin, args);
    }

    private async waitReady(timeoutSec: number): Promise<void> {
        await waitFor(
            "the API server's /readyz",
            () => {
                const r = this.kubectl(["get", "--raw", "/readyz"], undefined, 10);
                return r.code === 0 && r.stdout.trim() === "ok";
            },
            timeoutSec,
            () => this.processes.assertRunning(),
            () => this.logTail("kube-apiserver"),
        );
    }
}
