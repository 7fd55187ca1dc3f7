import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

import { SshTarget } from "../lib/connection";
import { nodeScript, secretNodeScript } from "../lib/nodeScript";
import {
    apiServerUrl,
    k3sAgentArgs,
    k3sAgentStep,
    k3sInstallStep,
    k3sKubeconfigStep,
    K3sNodeSpec,
    k3sServerArgs,
    K3sServerShared,
    k3sServerStep,
    K3sSourceSpec,
    kubeconfigServer,
    parseKubeconfigResult,
    resolveK3sSource,
    rewriteKubeconfigServer,
} from "./k3s";

type DependsOn = pulumi.Input<pulumi.Resource>[];

/** One node k3s runs on, as the node layer hands it over. The node's name is its key in the map. */
export interface ControlPlaneNode {
    /** Where the node is reached; `target.user` decides whether the scripts run through sudo. */
    readonly target: SshTarget;
    /** SSH connection for the commands (see `sshConnection`); the private key stays secret. */
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /** The node's address: `--node-ip`, the address Kubernetes knows it by. */
    readonly address: string;
    /** The node's `location.region`: label `topology.kubernetes.io/region`. */
    readonly region: string;
    /** The node's `location.datacenter`: label `topology.kubernetes.io/zone`. */
    readonly zone: string;
    /** What must be done on the node before k3s is installed (e.g. its firewall). */
    readonly dependsOn?: DependsOn;
}

/** The external etcd the k3s servers keep the cluster state in. */
export interface ControlPlaneEtcd {
    /** etcd client URLs, `https://host:2379`, the same for every server. */
    readonly endpoints: readonly string[];
    /** CA bundle that verifies the etcd members' server certificates (PEM). */
    readonly caCertPem: pulumi.Input<string>;
    /** Client certificate the API servers present to etcd (PEM). Kept secret. */
    readonly certPem: pulumi.Input<string>;
    /** Its private key (PEM). Kept secret. */
    readonly keyPem: pulumi.Input<string>;
}

/** Bootstrap Kubernetes with k3s on the given nodes. */
export interface K3sControlPlaneArgs {
    readonly mode: "k3s";
    /**
     * Control-plane nodes by name: each runs `k3s server` against the external etcd. They start
     * one at a time, in name order, each after the one before is ready. At least one.
     */
    readonly servers: Readonly<Record<string, ControlPlaneNode>>;
    /** Worker nodes by name: each runs `k3s agent`, after all servers are ready. Defaults to none. */
    readonly workers?: Readonly<Record<string, ControlPlaneNode>>;
    /**
     * Address or DNS name clients and agents reach the API at (port 6443); a TLS SAN of every
     * server and the server of the kubeconfig. It must reach the servers (DNS or a load balancer).
     */
    readonly apiEndpoint: string;
    /** Which k3s and where it comes from. */
    readonly k3s: K3sSourceSpec;
    /** The external etcd. */
    readonly etcd: ControlPlaneEtcd;
    /** What must be done before anything is installed on any node (e.g. the etcd cluster). */
    readonly dependsOn?: DependsOn;
}

/** Use a cluster that exists already: nothing is bootstrapped. */
export interface ExistingControlPlaneArgs {
    readonly mode: "existing";
    /** The cluster's kubeconfig. Kept secret. Its current context's server is the API endpoint. */
    readonly kubeconfig: pulumi.Input<string>;
}

export type ControlPlaneArgs = K3sControlPlaneArgs | ExistingControlPlaneArgs;

function nodeSpec(name: string, node: ControlPlaneNode): K3sNodeSpec {
    return { node: name, address: node.address, region: node.region, zone: node.zone };
}

/** What the k3s mode decides from its plain arguments, validated before anything is registered. */
interface K3sPlan {
    readonly k3s: ReturnType<typeof resolveK3sSource>;
    /** Server names, sorted: the order they start in. */
    readonly serverNames: string[];
    readonly workers: Readonly<Record<string, ControlPlaneNode>>;
    /** Worker names, sorted. */
    readonly workerNames: string[];
    readonly shared: K3sServerShared;
    readonly url: string;
}

/** Validates everything plain in the k3s arguments (throws on the first problem) and plans the bootstrap. Pure. */
function planK3s(args: K3sControlPlaneArgs): K3sPlan {
    const k3s = resolveK3sSource(args.k3s);
    const serverNames = Object.keys(args.servers).sort();
    const workers = args.workers ?? {};
    const workerNames = Object.keys(workers).sort();
    if (serverNames.length === 0) {
        throw new Error("ControlPlane: servers is empty; allowed: one or more control-plane nodes");
    }
    for (const w of workerNames) {
        if (serverNames.includes(w)) {
            throw new Error(`ControlPlane: node ${w} is both a server and a worker; allowed: each node in one of them`);
        }
    }
    const shared: K3sServerShared = { apiEndpoint: args.apiEndpoint, datastoreEndpoints: [...args.etcd.endpoints] };
    for (const n of serverNames) {
        k3sServerArgs(nodeSpec(n, args.servers[n]), shared);
        k3sInstallStep(n, k3s);
    }
    for (const n of workerNames) {
        k3sAgentArgs(nodeSpec(n, workers[n]), args.apiEndpoint);
        k3sInstallStep(n, k3s);
    }
    return { k3s, serverNames, workers, workerNames, shared, url: apiServerUrl(args.apiEndpoint) };
}

/** The generated cluster secrets and the etcd client credentials, all secret. */
interface K3sSecrets {
    readonly token: pulumi.Output<string>;
    readonly agentToken: pulumi.Output<string>;
    readonly etcd: pulumi.Output<[string, string, string]>;
}

/**
 * The Kubernetes control plane. In mode `k3s` it installs a pinned k3s on every node (binary
 * verified against the release's sha256 before it is made executable, or a preinstalled one
 * checked for its version), runs the servers one at a time against the external etcd over TLS,
 * each waiting until `/readyz` is ok and its node is Ready, then joins the workers with a
 * generated agent token, and reads the admin kubeconfig back from the first server (by name).
 * In mode `existing` it only wraps a given kubeconfig.
 *
 * Either way it hands the cluster on as `provider` (for `opts.providers` downstream) and a
 * secret `kubeconfig`.
 */
export class ControlPlane extends pulumi.ComponentResource {
    /** Admin kubeconfig, pointing at `https://<apiEndpoint>:6443`. Secret. */
    public readonly kubeconfig: pulumi.Output<string>;
    /** Provider for the cluster's resources. */
    public readonly provider: k8s.Provider;
    /** Address or DNS name of the API (no scheme, no port; IPv6 without brackets). */
    public readonly apiEndpoint: pulumi.Output<string>;
    /** The API server URL, `https://<apiEndpoint>:6443` (or the existing kubeconfig's server). */
    public readonly apiServerUrl: pulumi.Output<string>;
    /** Per control-plane node, its `k3s server` step; done when that server is ready. Empty in mode `existing`. */
    public readonly servers: Readonly<Record<string, command.remote.Command>>;
    /** Per worker, its `k3s agent` step; done when the node is Ready. Empty in mode `existing`. */
    public readonly agents: Readonly<Record<string, command.remote.Command>>;
    /** What later layers depend on: every server and agent step, the kubeconfig read, the provider. */
    public readonly ready: pulumi.Resource[];

    constructor(name: string, args: ControlPlaneArgs, opts?: pulumi.ComponentResourceOptions) {
        if (args.mode === "existing") {
            // A kubeconfig given as a plain string is checked before anything is registered.
            if (typeof args.kubeconfig === "string") {
                kubeconfigServer(args.kubeconfig);
            }
            super("zerotouch:k8s:ControlPlane", name, {}, opts);
            this.kubeconfig = pulumi.secret(args.kubeconfig);
            const server = pulumi.unsecret(this.kubeconfig.apply((k) => kubeconfigServer(k)));
            this.apiEndpoint = server.apply((s) => s.host);
            this.apiServerUrl = server.apply((s) => s.url);
            this.servers = {};
            this.agents = {};
            this.provider = new k8s.Provider(`${name}-provider`, { kubeconfig: this.kubeconfig }, { parent: this });
            this.ready = [this.provider];
            this.registerOutputs({ kubeconfig: this.kubeconfig, apiEndpoint: this.apiEndpoint, apiServerUrl: this.apiServerUrl });
            return;
        }

        // Validate everything plain before registering anything.
        const plan = planK3s(args);

        super("zerotouch:k8s:ControlPlane", name, {}, opts);

        const secrets = this.clusterSecrets(name, args.etcd);
        const servers = this.startServers(name, args, plan, secrets);
        const allServers = plan.serverNames.map((n) => servers[n]);
        const agents = this.joinWorkers(name, args, plan, secrets, allServers);

        // The admin kubeconfig, from the first server by name.
        const first = plan.serverNames[0];
        const read = nodeScript(`${name}-kubeconfig`, k3sKubeconfigStep(first, plan.k3s), args.servers[first].connection, args.servers[first].target, {
            parent: this,
            dependsOn: [servers[first]],
        });
        this.kubeconfig = pulumi.secret(read.stdout.apply((stdout) => rewriteKubeconfigServer(parseKubeconfigResult(stdout), args.apiEndpoint)));
        this.apiEndpoint = pulumi.output(args.apiEndpoint);
        this.apiServerUrl = pulumi.output(plan.url);
        this.servers = servers;
        this.agents = agents;
        const joined = [read, ...allServers, ...plan.workerNames.map((n) => agents[n])];
        this.provider = new k8s.Provider(`${name}-provider`, { kubeconfig: this.kubeconfig }, { parent: this, dependsOn: joined });
        this.ready = [...joined, this.provider];
        this.registerOutputs({ kubeconfig: this.kubeconfig, apiEndpoint: this.apiEndpoint, apiServerUrl: this.apiServerUrl });
    }

    /** The server token and the agent token (generated), and the etcd client credentials, all secret. */
    private clusterSecrets(name: string, etcd: ControlPlaneEtcd): K3sSecrets {
        const token = new random.RandomPassword(`${name}-token`, { length: 48, special: false }, { parent: this });
        const agentToken = new random.RandomPassword(`${name}-agent-token`, { length: 48, special: false }, { parent: this });
        return {
            token: pulumi.secret(token.result),
            agentToken: pulumi.secret(agentToken.result),
            etcd: pulumi.all([pulumi.secret(etcd.caCertPem), pulumi.secret(etcd.certPem), pulumi.secret(etcd.keyPem)]),
        };
    }

    /** k3s installed on a node, after what the whole control plane and the node itself wait for. */
    private install(name: string, args: K3sControlPlaneArgs, plan: K3sPlan, n: string, node: ControlPlaneNode): command.remote.Command {
        return nodeScript(`${name}-${n}-install`, k3sInstallStep(n, plan.k3s), node.connection, node.target, {
            parent: this,
            dependsOn: [...(args.dependsOn ?? []), ...(node.dependsOn ?? [])],
        });
    }

    /** Servers one at a time, in name order: each waits for the one before to be ready. */
    private startServers(name: string, args: K3sControlPlaneArgs, plan: K3sPlan, secrets: K3sSecrets): Record<string, command.remote.Command> {
        const servers: Record<string, command.remote.Command> = {};
        let previous: command.remote.Command | undefined;
        for (const n of plan.serverNames) {
            const node = args.servers[n];
            const spec = nodeSpec(n, node);
            const step = pulumi
                .all([secrets.token, secrets.agentToken, secrets.etcd])
                .apply(([t, a, [ca, cert, key]]) =>
                    k3sServerStep(spec, plan.shared, plan.k3s, { token: t, agentToken: a, etcdCaPem: ca, etcdCertPem: cert, etcdKeyPem: key }),
                );
            const installed = this.install(name, args, plan, n, node);
            const server = secretNodeScript(`${name}-${n}-server`, step, true, node.connection, node.target, {
                parent: this,
                dependsOn: previous === undefined ? [installed] : [installed, previous],
            });
            servers[n] = server;
            previous = server;
        }
        return servers;
    }

    /** Workers join once every server is ready. */
    private joinWorkers(
        name: string,
        args: K3sControlPlaneArgs,
        plan: K3sPlan,
        secrets: K3sSecrets,
        allServers: readonly command.remote.Command[],
    ): Record<string, command.remote.Command> {
        const agents: Record<string, command.remote.Command> = {};
        for (const n of plan.workerNames) {
            const node = plan.workers[n];
            const spec = nodeSpec(n, node);
            const step = secrets.agentToken.apply((a) => k3sAgentStep(spec, args.apiEndpoint, plan.k3s, a));
            const installed = this.install(name, args, plan, n, node);
            agents[n] = secretNodeScript(`${name}-${n}-agent`, step, true, node.connection, node.target, {
                parent: this,
                dependsOn: [installed, ...allServers],
            });
        }
        return agents;
    }
}
