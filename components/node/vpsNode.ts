import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";

import { DialBounds, sshConnection, SshTarget } from "../lib/connection";
import { COMMON_LIB, nodeScript, NodeStep } from "../lib/nodeScript";
import { ConnectResult, parseConnectResult, parsePreflightResult, PreflightResult } from "./facts";
import { LATENCY_LIB, LATENCY_TIMEOUT_MS, LATENCY_TRIES, latencyParams, LatencySpec } from "./latency";

const SCRIPTS = path.join(__dirname, "scripts");

/** Operating systems the node layer supports, as `<os-release ID> <VERSION_ID>`. */
export const SUPPORTED_OS = ["debian 12", "ubuntu 22.04", "ubuntu 24.04"] as const;

/** Commands later phases rely on, with the Debian/Ubuntu package that provides each. */
export const REQUIRED_TOOLS: readonly (readonly [string, string])[] = [
    ["curl", "curl"],
    ["fio", "fio"],
    ["findmnt", "util-linux"],
    ["jq", "jq"],
    ["lsblk", "util-linux"],
    ["nft", "nftables"],
    ["sha256sum", "coreutils"],
    ["systemd-run", "systemd"],
    ["timeout", "coreutils"],
];

export type NodeRole = "control-plane" | "worker";

/** No latency target: nothing measured, nothing judged. */
const NO_LATENCY: LatencySpec = { targets: {}, tries: LATENCY_TRIES.default, timeoutMs: LATENCY_TIMEOUT_MS.default };

/** What decides a node's connect and preflight phases. Plain values. */
export interface VpsNodeSpec {
    /** The node's name in the stack config. */
    readonly node: string;
    /** How the node is reached; `hostKey` pins its SSH host key. */
    readonly target: SshTarget;
    readonly role: NodeRole;
    /** Where etcd keeps (or would keep) its data on this node. */
    readonly etcdDataPath: string;
    /** systemd-detect-virt values this node may report. */
    readonly allowedVirtualization: readonly string[];
    /** Whether a control-plane node's etcd disk must be NVMe. */
    readonly requireNvme: boolean;
    /** Seconds to wait for the node to finish booting once SSH answers. Defaults to 120. */
    readonly bootTimeoutSeconds?: number;
    /**
     * Where the node is: recorded on its connect command (`triggers[1].zerotouchNode`), where
     * residency policies read it.
     */
    readonly location?: { readonly country: string; readonly region: string; readonly datacenter: string; readonly provider: string };
    /**
     * What the latency preflight measures and its threshold. Defaults to nothing measured
     * (tries and timeout at their defaults).
     */
    readonly latency?: LatencySpec;
}

export interface VpsNodeArgs extends VpsNodeSpec {
    /** The SSH private key (secret). */
    readonly privateKey: pulumi.Input<string>;
    /** Bounds on the SSH dial retries. Defaults to those of `sshConnection`. */
    readonly dial?: DialBounds;
}

/** The connect and preflight phases of a node, as data (see `NodeStep`). */
export function vpsNodeSteps(args: VpsNodeSpec): { connect: NodeStep; preflight: NodeStep } {
    return {
        connect: {
            name: "connect",
            script: path.join(SCRIPTS, "connect.sh"),
            libraries: [COMMON_LIB],
            params: {
                ZT_NODE: args.node,
                ZT_HOST: args.target.host,
                ZT_BOOT_TIMEOUT_SECONDS: args.bootTimeoutSeconds ?? 120,
            },
            hasDelete: false,
            sensitive: false,
            meta: {
                zerotouchNode: {
                    node: args.node,
                    host: args.target.host,
                    role: args.role,
                    ...(args.location !== undefined ? { location: { ...args.location } } : {}),
                    etcdDataPath: args.etcdDataPath,
                },
            },
        },
        preflight: {
            name: "preflight",
            script: path.join(SCRIPTS, "preflight.sh"),
            libraries: [COMMON_LIB, LATENCY_LIB],
            params: {
                ZT_NODE: args.node,
                ZT_ROLE: args.role,
                ZT_ETCD_DATA_PATH: args.etcdDataPath,
                ZT_ALLOWED_VIRT: [...args.allowedVirtualization],
                ZT_REQUIRE_NVME: args.requireNvme,
                ZT_SUPPORTED_OS: [...SUPPORTED_OS],
                ZT_REQUIRED_TOOLS: REQUIRED_TOOLS.map(([tool, pkg]) => `${tool} ${pkg}`),
                ...latencyParams(args.latency ?? NO_LATENCY),
            },
            hasDelete: false,
            sensitive: false,
        },
    };
}

/**
 * A rented VPS reached over SSH: waits until it answers and has booted, records or checks its
 * host key, gathers its facts and runs the preflight checks (virtualization, OS, etcd disk,
 * tools, TCP connect times to the GitLab host and a probe target). Nothing may be installed on
 * the node before `ready`.
 */
export class VpsNode extends pulumi.ComponentResource {
    /** SSH connection for later phases, pinned to the configured or first-seen host key. */
    public readonly connection: command.types.input.remote.ConnectionArgs;
    public readonly target: SshTarget;
    /** The host key the node presented (ed25519). */
    public readonly hostKey: pulumi.Output<string>;
    public readonly hostname: pulumi.Output<string>;
    public readonly facts: pulumi.Output<PreflightResult>;
    public readonly virtualization: pulumi.Output<string>;
    /** The preflight command: the dependency point for everything installed on this node. */
    public readonly ready: command.remote.Command;

    constructor(name: string, args: VpsNodeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("zerotouch:node:VpsNode", name, {}, opts);
        const steps = vpsNodeSteps(args);
        this.target = args.target;

        const firstConnection = sshConnection(args.target, args.privateKey, args.dial);
        const connect = nodeScript(`${name}-connect`, steps.connect, firstConnection, args.target, { parent: this });
        const connected: pulumi.Output<ConnectResult> = connect.stdout.apply((out) => parseConnectResult(out, args.node));
        this.hostname = connected.hostname;
        this.hostKey = connected.hostKey;

        // Later phases pin the host key: the configured one, else the one seen on first connect.
        const pinned: pulumi.Input<string> | undefined =
            args.target.hostKey ?? connected.hostKey.apply((k) => k);
        this.connection = sshConnection(args.target, args.privateKey, args.dial, pinned);

        this.ready = nodeScript(`${name}-preflight`, steps.preflight, this.connection, args.target, {
            parent: this,
            dependsOn: [connect],
        });
        this.facts = this.ready.stdout.apply((out) => parsePreflightResult(out, args.node));
        this.virtualization = this.facts.virtualization;

        this.registerOutputs({
            hostKey: this.hostKey,
            hostname: this.hostname,
            facts: this.facts,
            virtualization: this.virtualization,
        });
    }
}
