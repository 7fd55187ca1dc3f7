import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

import { SshTarget } from "../lib/connection";
import { NodeStep, nodeScript, secretNodeScript } from "../lib/nodeScript";
import { PlannedComponent } from "../lib/component";
import {
    clientUrl,
    EtcdMemberResult,
    etcdctlPath,
    etcdMemberStep,
    EtcdMemberStepArgs,
    LOCAL_CLIENT_URL,
    NODE_CLIENT_TLS,
    parseEtcdMemberResult,
} from "./member";
import { EtcdPki } from "./pki";
import { DEFAULT_ETCD_VERSION, EtcdArch, etcdInstallSteps } from "./release";
import { EtcdSource } from "./render";
import { EtcdOffsiteCredentials, EtcdOffsiteTarget, etcdSnapshotSteps, offsiteCredentialParams } from "./snapshot";
import { WalGate, walGateSteps, WalGateStepArgs } from "./walGate";

/** One member as plain data. */
export interface EtcdMemberNode {
    /** Node name: the member's name. */
    readonly name: string;
    readonly target: SshTarget;
    /** The address peers and clients reach the member at (the node's host). */
    readonly address: string;
    /** etcd's data directory: the path the node's fsync gate measured. */
    readonly dataDir: string;
}

/** One control-plane node as the etcd layer sees it. */
export interface EtcdClusterNode extends EtcdMemberNode {
    /** SSH connection (see `sshConnection`); the private key stays secret. */
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /** What must be done on the node first: its fsync gate (and firewall). */
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
}

/** The cluster's settings (the `zerotouch:etcd` config keys). */
export interface EtcdClusterSettings {
    readonly source: EtcdSource;
    /** release: the exact version; preinstalled: the version whose MAJOR.MINOR the node's etcd must have. Defaults to DEFAULT_ETCD_VERSION. */
    readonly version?: string;
    readonly releaseBaseUrl?: string;
    readonly sha256?: Partial<Record<EtcdArch, string>>;
    /** Keeps members of different clusters apart. */
    readonly clusterToken: string;
    /** The member that forms the cluster. Defaults to the first member by name. */
    readonly bootstrapMember?: string;
    readonly walFsyncThresholdMs: number;
    readonly backendCommitThresholdMs: number;
    readonly walGateWrites: number;
    readonly walGateMaxSeconds: number;
    readonly healthTimeoutSeconds: number;
    readonly quotaBackendBytes: number;
    readonly snapshots: { readonly schedule: string; readonly retain: number; readonly dir: string; readonly offsite?: EtcdOffsiteTarget };
    readonly wipeDataOnDelete: boolean;
}

export interface EtcdClusterArgs extends EtcdClusterSettings {
    readonly members: readonly EtcdClusterNode[];
    /** The off-node target's credentials (secret); needed with `snapshots.offsite`. */
    readonly offsiteCredentials?: pulumi.Input<EtcdOffsiteCredentials>;
}

/** What the plan needs: the settings and the members as plain data. */
export interface EtcdClusterPlanArgs extends EtcdClusterSettings {
    readonly members: readonly EtcdMemberNode[];
}

/** One member's plan: its steps as plain data, certificates aside. */
export interface EtcdMemberPlan {
    readonly node: EtcdMemberNode;
    readonly bootstrap: boolean;
    readonly install: NodeStep;
    /** The member step's arguments without the PEM texts (they come from the PKI). */
    readonly member: Omit<EtcdMemberStepArgs, "pem">;
    readonly walGate: WalGateStepArgs;
    readonly snapshots: NodeStep;
}

export interface EtcdClusterPlan {
    /** Members in the order they are created: the bootstrap member, then the others by name. */
    readonly members: readonly EtcdMemberPlan[];
    readonly bootstrapMember: string;
    /** Every member's client URL, in member order. */
    readonly clientEndpoints: readonly string[];
    readonly version: string;
}

/**
 * Plans the cluster. Pure. A member's steps depend on the member, the settings and the bootstrap
 * member only, so adding a member changes no other member's steps.
 */
export function planEtcdCluster(args: EtcdClusterPlanArgs): EtcdClusterPlan {
    const byName = new Map(args.members.map((m) => [m.name, m]));
    if (byName.size !== args.members.length) {
        throw new Error("etcd cluster: a member is listed twice; allowed: each control-plane node once");
    }
    const names = [...byName.keys()].sort();
    if (names.length === 0) {
        throw new Error("etcd cluster: no members; allowed: 1, 3 or 5 control-plane nodes");
    }
    const bootstrapMember = args.bootstrapMember ?? names[0];
    const bootstrapNode = byName.get(bootstrapMember);
    if (bootstrapNode === undefined) {
        throw new Error(`etcd cluster: bootstrapMember is ${JSON.stringify(bootstrapMember)}; allowed: one of the members (${names.join(", ")})`);
    }
    const order = [bootstrapMember, ...names.filter((n) => n !== bootstrapMember)];
    const version = args.version ?? DEFAULT_ETCD_VERSION;
    const joinEndpoint = clientUrl(bootstrapNode.address);
    const members = order.map((name): EtcdMemberPlan => {
        const node = byName.get(name)!;
        const bootstrap = name === bootstrapMember;
        const [install] = etcdInstallSteps({
            node: name,
            source: args.source,
            version,
            ...(args.releaseBaseUrl !== undefined ? { baseUrl: args.releaseBaseUrl } : {}),
            ...(args.sha256 !== undefined ? { sha256: args.sha256 } : {}),
        });
        const [snapshots] = etcdSnapshotSteps({
            node: name,
            etcdctl: etcdctlPath(args.source),
            endpoint: LOCAL_CLIENT_URL,
            tls: NODE_CLIENT_TLS,
            dir: args.snapshots.dir,
            retain: args.snapshots.retain,
            schedule: args.snapshots.schedule,
            ...(args.snapshots.offsite !== undefined ? { offsite: args.snapshots.offsite } : {}),
        });
        const walGate: WalGateStepArgs = {
            node: name,
            target: node.target,
            endpoint: LOCAL_CLIENT_URL,
            tls: NODE_CLIENT_TLS,
            walThresholdMs: args.walFsyncThresholdMs,
            commitThresholdMs: args.backendCommitThresholdMs,
            writes: args.walGateWrites,
            loadSeconds: args.walGateMaxSeconds,
        };
        walGateSteps(walGate); // validates
        return {
            node,
            bootstrap,
            install,
            snapshots,
            walGate,
            member: {
                node: name,
                address: node.address,
                dataDir: node.dataDir,
                source: args.source,
                clusterToken: args.clusterToken,
                bootstrap,
                ...(bootstrap ? {} : { joinEndpoint }),
                healthTimeoutSeconds: args.healthTimeoutSeconds,
                quotaBackendBytes: args.quotaBackendBytes,
                wipeDataOnDelete: args.wipeDataOnDelete,
            },
        };
    });
    return { members, bootstrapMember, clientEndpoints: members.map((m) => clientUrl(m.node.address)), version };
}

/**
 * A member's snapshot command: a plain step, or with off-node copies a secret one that carries the
 * target's credentials (the target's facts stay readable for the residency policy).
 */
function snapshotCommand(name: string, step: NodeStep, args: EtcdClusterArgs, node: EtcdClusterNode, opts: pulumi.CustomResourceOptions): command.remote.Command {
    const offsite = args.snapshots.offsite;
    if (offsite === undefined || args.offsiteCredentials === undefined) {
        return nodeScript(name, step, node.connection, node.target, opts);
    }
    const withCredentials = pulumi
        .output(args.offsiteCredentials)
        .apply((c): NodeStep => ({ ...step, params: { ...step.params, ...offsiteCredentialParams(node.name, offsite, c) } }));
    return secretNodeScript(name, withCredentials, { hasDelete: step.hasDelete, ...(step.meta !== undefined ? { meta: step.meta } : {}) }, node.connection, node.target, opts);
}

/** What the cluster reports about one member. */
export interface EtcdMemberStatus {
    readonly memberId: string;
    readonly clusterId: string;
    /** The etcd version the member runs. */
    readonly version: string;
    /** WAL fsync p99 under the gate's write load, ms. */
    readonly walFsyncP99Ms: number;
    /** Whether that p99 is an estimate inside a wide bucket (e.g. 8–16 ms). */
    readonly walFsyncEstimate: boolean;
    /** Backend commit p99 under the write load, ms. */
    readonly backendCommitP99Ms: number;
    readonly walFsyncThresholdMs: number;
    readonly backendCommitThresholdMs: number;
}

/**
 * A TLS etcd cluster over the control-plane nodes, formed only on nodes that passed the fsync
 * gate. Per member, in order: install (parallel on all members, after each node's gate), then
 * one member after another: member (certificates, unit, start or join, health gate) → WAL fsync
 * gate from etcd's own metrics. Snapshots are set up on each member once it runs.
 *
 * Nothing deletes etcd data unless `wipeDataOnDelete` is set.
 */
export class EtcdCluster extends PlannedComponent<EtcdClusterPlan> {
    /** The cluster's CA certificate, PEM (public). */
    public readonly caCertPem: pulumi.Output<string>;
    /** Every member's client URL. */
    public readonly clientEndpoints: pulumi.Output<string[]>;
    /** Per member: IDs, version and the WAL gate's figures. */
    public readonly members: pulumi.Output<Record<string, EtcdMemberStatus>>;
    /** The cluster's PKI (client certificates for the API server and backups). */
    public readonly pki: EtcdPki;
    /** The last member's WAL gate: what needs the whole cluster depends on it. */
    public readonly ready: pulumi.Resource;
    /** Per member, its member step (the order is in `plan`). */
    public readonly memberCommands: Readonly<Record<string, command.remote.Command>>;

    constructor(name: string, args: EtcdClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        if ((args.snapshots.offsite === undefined) !== (args.offsiteCredentials === undefined)) {
            throw new Error("etcd cluster: snapshots.offsite and its credentials go together");
        }
        super("zerotouch:etcd:EtcdCluster", name, planEtcdCluster(args), opts);
        const plan = this.plan;

        this.pki = new EtcdPki(
            `${name}-pki`,
            { members: Object.fromEntries(plan.members.map((m) => [m.node.name, { addresses: [m.node.address] }])) },
            { parent: this },
        );
        const backup = this.pki.clients["backup"];

        let previous: pulumi.Resource | undefined;
        const statuses: Record<string, pulumi.Output<EtcdMemberStatus>> = {};
        const memberCommands: Record<string, command.remote.Command> = {};
        const nodes = new Map(args.members.map((n) => [n.name, n]));
        for (const m of plan.members) {
            const node = nodes.get(m.node.name)!;
            const prefix = `${name}-${node.name}`;
            const install = nodeScript(`${prefix}-${m.install.name}`, m.install, node.connection, node.target, {
                parent: this,
                dependsOn: node.dependsOn,
            });
            const certs = this.pki.members[node.name];
            const step = pulumi
                .all([this.pki.caCertPem, certs.serverCertPem, certs.serverKeyPem, certs.peerCertPem, certs.peerKeyPem, backup.certPem, backup.keyPem])
                .apply(([caCert, serverCert, serverKey, peerCert, peerKey, clientCert, clientKey]) =>
                    etcdMemberStep({ ...m.member, pem: { caCert, serverCert, serverKey, peerCert, peerKey, clientCert, clientKey } }),
                );
            const member = secretNodeScript(`${prefix}-member`, step, true, node.connection, node.target, {
                parent: this,
                dependsOn: [install, ...node.dependsOn, ...(previous !== undefined ? [previous] : [])],
            });
            memberCommands[node.name] = member;
            const gate = new WalGate(`${prefix}-wal`, { ...m.walGate, connection: node.connection, dependsOn: [member] }, { parent: this });
            snapshotCommand(`${prefix}-${m.snapshots.name}`, m.snapshots, args, node, { parent: this, dependsOn: [member] });
            previous = gate.command;

            // The result line holds IDs and the version, nothing secret; the output is secret
            // only because the step's output as a whole is.
            const result = pulumi.unsecret(member.stdout.apply((stdout): EtcdMemberResult => parseEtcdMemberResult(stdout)));
            statuses[node.name] = pulumi.all([result, gate.result, gate.walFsyncP99Ms, gate.backendCommitP99Ms]).apply(
                ([r, g, walFsyncP99Ms, backendCommitP99Ms]): EtcdMemberStatus => ({
                    memberId: r.memberId,
                    clusterId: r.clusterId,
                    version: r.version,
                    walFsyncP99Ms,
                    walFsyncEstimate: g.walFsync.estimate,
                    backendCommitP99Ms,
                    walFsyncThresholdMs: args.walFsyncThresholdMs,
                    backendCommitThresholdMs: args.backendCommitThresholdMs,
                }),
            );
        }
        this.memberCommands = memberCommands;
        this.ready = previous!;
        this.caCertPem = this.pki.caCertPem;
        this.clientEndpoints = pulumi.output([...plan.clientEndpoints]);
        this.members = pulumi.all(statuses);
        this.registerOutputs({ caCertPem: this.caCertPem, clientEndpoints: this.clientEndpoints, members: this.members });
    }
}
