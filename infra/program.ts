import * as pulumi from "@pulumi/pulumi";

import { HostFirewall, HostFirewallSpec, hostFirewallSteps } from "../components/firewall/hostFirewall";
import { FsyncGate, FsyncGateStepArgs, fsyncGateSteps } from "../components/fsync/fsyncGate";
import { SshTarget } from "../components/lib/connection";
import { NodeStep } from "../components/lib/nodeScript";
import { VpsNode, VpsNodeSpec, vpsNodeSteps } from "../components/node/vpsNode";
import { NodeOutput, OUTPUTS_VERSION, PlatformOutputs } from "../stacks/outputs";
import { NodeConfig, PlatformConfig } from "./config";

/** What the program decides for one node, as plain data (no resources, no secrets). */
export interface NodePlan {
    readonly name: string;
    readonly config: NodeConfig;
    readonly target: SshTarget;
    readonly vps: VpsNodeSpec;
    readonly gate: FsyncGateStepArgs;
    readonly firewall: HostFirewallSpec;
}

/** Plans every node from a validated config, sorted by name. Pure. */
export function planNodes(cfg: PlatformConfig): NodePlan[] {
    const names = Object.keys(cfg.nodes).sort();
    const cluster = Object.fromEntries(names.map((n) => [n, { role: cfg.nodes[n].role, address: cfg.nodes[n].host }]));
    return names.map((name): NodePlan => {
        const node = cfg.nodes[name];
        const target: SshTarget = {
            host: node.host,
            port: node.sshPort,
            user: node.sshUser,
            ...(node.sshHostKey !== undefined ? { hostKey: node.sshHostKey } : {}),
        };
        return {
            name,
            config: node,
            target,
            vps: {
                node: name,
                target,
                role: node.role,
                etcdDataPath: node.etcdDataPath,
                allowedVirtualization: cfg.preflight.allowedVirtualization,
                requireNvme: cfg.preflight.requireNvme,
            },
            gate: {
                node: name,
                target,
                dataPath: node.etcdDataPath,
                thresholdMs: node.fsyncThresholdMs ?? cfg.fsyncGate.thresholdMs,
                runs: cfg.fsyncGate.runs,
                maxSecondsPerRun: cfg.fsyncGate.maxSecondsPerRun,
            },
            firewall: {
                node: name,
                role: node.role,
                address: node.host,
                cluster,
                vpnCidr: cfg.vpnCidr,
                managementCidrs: cfg.managementCidrs,
            },
        };
    });
}

/** A node's phases in the order the program runs them (each waits for the one before). */
export function nodeSteps(plan: NodePlan): NodeStep[] {
    const vps = vpsNodeSteps(plan.vps);
    return [vps.connect, vps.preflight, ...fsyncGateSteps(plan.gate), ...hostFirewallSteps(plan.firewall)];
}

/** Everything the node layer made for one node. */
export interface NodeLayerMember {
    readonly vps: VpsNode;
    readonly gate: FsyncGate;
    readonly firewall: HostFirewall;
}

export interface Platform {
    readonly nodes: Readonly<Record<string, NodeLayerMember>>;
    /**
     * Per node, the resource everything installed later must depend on: the node passed
     * preflight and its etcd disk passed the fsync gate.
     */
    readonly gated: Readonly<Record<string, pulumi.Resource>>;
    readonly outputs: pulumi.Output<PlatformOutputs>;
}

/**
 * The zerotouch program for a validated config. Nodes are bootstrapped in parallel: each node's
 * phases form one chain (connect → preflight → fsync gate → firewall) and no chain waits on
 * another node's.
 */
export function buildPlatform(cfg: PlatformConfig, privateKey: pulumi.Input<string>): Platform {
    const plans = planNodes(cfg);
    const nodes: Record<string, NodeLayerMember> = {};
    for (const plan of plans) {
        const vps = new VpsNode(plan.name, { ...plan.vps, privateKey });
        const gate = new FsyncGate(
            `${plan.name}-fsync`,
            { ...plan.gate, connection: vps.connection, dependsOn: vps.ready },
            { parent: vps },
        );
        const firewall = new HostFirewall(
            `${plan.name}-firewall`,
            { ...plan.firewall, target: plan.target, connection: vps.connection, dependsOn: [gate.command] },
            { parent: vps },
        );
        nodes[plan.name] = { vps, gate, firewall };
    }

    const nodeOutputs: Record<string, pulumi.Output<NodeOutput>> = {};
    for (const plan of plans) {
        const { vps, gate, firewall } = nodes[plan.name];
        nodeOutputs[plan.name] = pulumi
            .all([vps.hostKey, vps.facts, gate.p99Ms, firewall.rulesetHash])
            .apply(
                ([hostKey, facts, p99Ms, rulesetHash]): NodeOutput => ({
                    host: plan.config.host,
                    role: plan.config.role,
                    location: plan.config.location,
                    hostKey,
                    virtualization: facts.virtualization,
                    os: facts.os.prettyName,
                    etcdDisk: facts.etcdDisk.description,
                    fsyncP99Ms: p99Ms,
                    fsyncThresholdMs: plan.gate.thresholdMs,
                    firewallRulesetHash: rulesetHash,
                }),
            );
    }

    const names = plans.map((p) => p.name);
    const outputs = pulumi.all(nodeOutputs).apply(
        (resolved): PlatformOutputs => ({
            outputsVersion: OUTPUTS_VERSION,
            project: "zerotouch",
            stack: pulumi.getStack(),
            nodes: resolved,
            controlPlaneNodes: names.filter((n) => cfg.nodes[n].role === "control-plane"),
            workerNodes: names.filter((n) => cfg.nodes[n].role === "worker"),
            vpnCidr: cfg.vpnCidr,
            managementCidrs: cfg.managementCidrs,
        }),
    );

    const gated = Object.fromEntries(plans.map((p) => [p.name, nodes[p.name].gate.command]));
    return { nodes, gated, outputs };
}
