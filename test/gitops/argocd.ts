/**
 * Argo CD running for the GitOps loop tests: the `argocd` binary built from
 * github.com/argoproj/argo-cd/v3 into the toolchain cache (`test/lab/toolchain`, run as
 * argocd-repo-server, argocd-application-controller and argocd-server), with Redis from Debian, as
 * processes on loopback against a real Kubernetes API server (test/k8s/cluster.ts) through a
 * kubeconfig. The in-cluster destination (`https://kubernetes.default.svc`) is that API server:
 * Argo CD's own ARGOCD_FAKE_IN_CLUSTER switch makes it read KUBECONFIG instead of a service
 * account. Argo CD reads everything else (argocd-cm, argocd-secret, the repository Secret, the
 * AppProjects and Applications) from the cluster, where the program's GitOps layer put it.
 */
import { spawnSync } from "child_process";
import { mkdirSync, writeFileSync } from "fs";
import * as path from "path";

import type { K8sObject } from "../k8s/gitopsApply";
import { freePort, Processes, waitFor } from "../support/processes";
import { toolchainBin, toolchainDir } from "../support/toolchain";

const COMMAND = "npm run test:gitops";

/**
 * The environment the chart gives a component's main container (`kind`/`name` among the rendered
 * `objects`), with ConfigMap and Secret references resolved from the same objects (a missing
 * optional reference is left out, as the kubelet does). What the program configures through
 * argocd-cm and argocd-cmd-params-cm (reconciliation timeout, jitter, ...) reaches the processes
 * this way, as it would reach the pods.
 */
export function chartEnv(objects: readonly K8sObject[], kind: string, name: string): Record<string, string> {
    const workload = objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (workload === undefined) {
        throw new Error(`the rendered chart has no ${kind} ${name}`);
    }
    const container = (workload.spec.template.spec.containers as { env?: EnvVar[] }[])[0];
    const data = (kind: string, ref: { name: string; key: string }): string | undefined => {
        const o = objects.find((x) => x.kind === kind && x.metadata.name === ref.name);
        const plain = (o?.stringData as Record<string, string> | undefined)?.[ref.key] ?? (o?.data as Record<string, string> | undefined)?.[ref.key];
        return plain === undefined || kind !== "Secret" || o?.stringData?.[ref.key] !== undefined ? plain : Buffer.from(plain, "base64").toString("utf8");
    };
    const env: Record<string, string> = {};
    for (const e of container.env ?? []) {
        const value =
            e.value ??
            (e.valueFrom?.configMapKeyRef !== undefined ? data("ConfigMap", e.valueFrom.configMapKeyRef) : undefined) ??
            (e.valueFrom?.secretKeyRef !== undefined ? data("Secret", e.valueFrom.secretKeyRef) : undefined);
        if (value !== undefined) {
            env[e.name] = value;
        }
    }
    return env;
}

interface EnvVar {
    name: string;
    value?: string;
    valueFrom?: { configMapKeyRef?: { name: string; key: string }; secretKeyRef?: { name: string; key: string } };
}

export interface ArgoCdOptions {
    /** The admin kubeconfig of the API server Argo CD manages and reads its config from. */
    readonly kubeconfig: string;
    /** Where logs, Redis' and the repo-server's files go. */
    readonly dir: string;
    /** Argo CD's namespace. */
    readonly namespace: string;
    /** CA certificates Argo CD trusts per Git server name (ARGOCD_TLS_DATA_PATH: one file per server). */
    readonly trustedCas?: Readonly<Record<string, string>>;
    /** The chart's rendered objects with the program's config: each component gets its workload's environment. */
    readonly objects: readonly K8sObject[];
    /**
     * The network namespace every component runs in (the lab's VPN namespace, from where the lab
     * nodes' API servers answer); the host's own namespace unless given.
     */
    readonly netns?: string;
    /** The address argocd-server listens on and is reached at (its webhook): 127.0.0.1 unless given. */
    readonly serverAddress?: string;
}

export class ArgoCd {
    private readonly processes: Processes;
    private readonly env: NodeJS.ProcessEnv;
    serverUrl = "";
    version = "";
    /** The controller's reconciliation timeout as the chart hands it over (ARGOCD_RECONCILIATION_TIMEOUT). */
    reconciliation = "";
    /** The environment the chart gives the application controller. */
    controllerEnv: Record<string, string> = {};

    constructor(readonly opts: ArgoCdOptions) {
        mkdirSync(opts.dir, { recursive: true });
        this.processes = new Processes(opts.dir);
        const tls = path.join(opts.dir, "tls");
        mkdirSync(tls, { recursive: true });
        for (const [server, pem] of Object.entries(opts.trustedCas ?? {})) {
            writeFileSync(path.join(tls, server), pem);
        }
        const home = path.join(opts.dir, "home");
        mkdirSync(home, { recursive: true });
        this.env = {
            // helm (from the toolchain) and git (Debian) for the repo-server.
            PATH: `${toolchainDir(COMMAND)}:/usr/local/bin:/usr/bin:/bin`,
            HOME: home,
            TMPDIR: path.join(opts.dir, "tmp"),
            KUBECONFIG: opts.kubeconfig,
            ARGOCD_FAKE_IN_CLUSTER: "true",
            ARGOCD_TLS_DATA_PATH: tls,
            ARGOCD_GPG_ENABLED: "false",
            ARGOCD_GNUPGHOME: path.join(opts.dir, "gnupg"),
            ARGOCD_SSH_DATA_PATH: path.join(opts.dir, "ssh"),
        };
        for (const d of [this.env.TMPDIR!, this.env.ARGOCD_GNUPGHOME!, this.env.ARGOCD_SSH_DATA_PATH!]) {
            mkdirSync(d, { recursive: true });
        }
    }

    /** Starts Redis, the repo-server, the application controller and the server; resolves when each answers. */
    async start(timeoutSec = 120): Promise<void> {
        const [redis, repo, repoMetrics, controllerMetrics, server, serverMetrics] = await Promise.all([1, 2, 3, 4, 5, 6].map(() => freePort()));
        const argocd = (name: string): string => toolchainBin(name, COMMAND);
        this.version = spawnSync(argocd("argocd"), ["version", "--client", "--short"], { encoding: "utf8", env: this.env }).stdout.trim();
        const common = ["--redis", `127.0.0.1:${redis}`, "--loglevel", "info", "--logformat", "text"];
        const kube = ["--kubeconfig", this.opts.kubeconfig, "--namespace", this.opts.namespace];
        // The repo-server's gRPC on TLS with its own generated certificate, as in the chart.
        const repoServer = ["--repo-server", `127.0.0.1:${repo}`];
        // Each component with its chart workload's environment; the addresses the chart gives as
        // in-cluster Service names are replaced by the flags above and below.
        const envOf = (kind: string, name: string): NodeJS.ProcessEnv => ({ ...chartEnv(this.opts.objects, kind, name), ...this.env });
        this.controllerEnv = chartEnv(this.opts.objects, "StatefulSet", "argocd-application-controller");
        const controllerEnv: NodeJS.ProcessEnv = { ...this.controllerEnv, ...this.env };
        this.reconciliation = controllerEnv.ARGOCD_RECONCILIATION_TIMEOUT ?? "";
        // Redis with the password the chart hands the components (the program's Redis Secret), from
        // a config file: never on a command line.
        const redisConf = path.join(this.opts.dir, "redis.conf");
        const password = controllerEnv.REDIS_PASSWORD;
        writeFileSync(redisConf, [`port ${redis}`, "bind 127.0.0.1", 'save ""', "appendonly no", `dir ${this.opts.dir}`, ...(password ? [`requirepass "${password}"`] : [])].join("\n") + "\n", { mode: 0o600 });
        const netns = this.opts.netns;
        this.processes.start("redis", "/usr/bin/redis-server", [redisConf], { netns });
        await this.waitPort("redis", redis, timeoutSec);

        this.processes.start("repo-server", argocd("argocd-repo-server"), ["--port", String(repo), "--metrics-port", String(repoMetrics), ...common], { env: envOf("Deployment", "argocd-repo-server"), netns });
        this.processes.start("application-controller", argocd("argocd-application-controller"), [
            ...kube,
            ...repoServer,
            ...common,
            "--metrics-port", String(controllerMetrics),
            "--status-processors", "4",
            "--operation-processors", "4",
        ], { env: controllerEnv, netns });
        const address = this.opts.serverAddress ?? "127.0.0.1";
        this.processes.start("server", argocd("argocd-server"), [...kube, ...repoServer, ...common, "--insecure", "--address", address, "--port", String(server), "--metrics-port", String(serverMetrics)], {
            env: envOf("Deployment", "argocd-server"),
            netns,
        });
        this.serverUrl = `http://${address}:${server}`;
        await this.waitPort("repo-server", repo, timeoutSec);
        await this.waitHttp("server", `${this.serverUrl}/healthz`, timeoutSec);
        await this.waitHttp("application-controller", `http://127.0.0.1:${controllerMetrics}/metrics`, timeoutSec);
    }

    stop(): void {
        this.processes.stop();
    }

    logTail(name: string, lines = 40): string {
        return this.processes.logTail(name, lines);
    }

    /** Every component's last log lines, for a failure message. */
    logs(lines = 15): string {
        return ["repo-server", "application-controller", "server"].map((n) => `--- ${n}\n${this.logTail(n, lines)}`).join("\n");
    }

    /** argv run where the components run: in their network namespace, if any. */
    private where(argv: readonly string[]): [string, string[]] {
        return this.opts.netns === undefined ? [argv[0], argv.slice(1)] : ["ip", ["netns", "exec", this.opts.netns, ...argv]];
    }

    private async waitPort(name: string, port: number, timeoutSec: number): Promise<void> {
        const [bin, args] = this.where(["bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${port}`]);
        await waitFor(
            `${name} on 127.0.0.1:${port}`,
            () => spawnSync(bin, args, { stdio: "ignore", timeout: 5000 }).status === 0,
            timeoutSec,
            () => this.processes.assertRunning(),
            () => this.logTail(name),
        );
    }

    private async waitHttp(name: string, url: string, timeoutSec: number): Promise<void> {
        await waitFor(
            `${name} at ${url}`,
            async () => {
                if (this.opts.netns !== undefined) {
                    const [bin, args] = this.where(["curl", "-sf", "-o", "/dev/null", "--max-time", "5", url]);
                    return spawnSync(bin, args, { stdio: "ignore", timeout: 10_000 }).status === 0;
                }
                try {
                    return (await fetch(url, { signal: AbortSignal.timeout(5000) })).ok;
                } catch {
                    return false;
                }
            },
            timeoutSec,
            () => this.processes.assertRunning(),
            () => this.logTail(name),
        );
    }
}
