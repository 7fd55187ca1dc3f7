import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";

import { SshTarget } from "../lib/connection";
import { NodeStep, nodeScript, stepPayload } from "../lib/nodeScript";
import { FirewallInput, FirewallPolicy, firewallRules, OpenPort, openPorts, RenderedRuleset, renderNftables } from "./rules";

const SCRIPTS = path.join(__dirname, "scripts");
/** Shell library both firewall scripts use: state paths and ruleset hashes. */
const STATE_LIB = path.join(SCRIPTS, "lib", "state.sh");

/** What decides a node's firewall. Plain values: the ruleset is rendered when the program runs. */
export interface HostFirewallSpec extends FirewallInput {
    /**
     * Seconds a newly applied ruleset stays live without confirmation before the previous one is
     * restored: the bound on an SSH lockout. Defaults to 60.
     */
    readonly rollbackSeconds?: number;
}

export interface HostFirewallArgs extends HostFirewallSpec {
    /** Where the node is reached; `target.user` decides whether the scripts run through sudo. */
    readonly target: SshTarget;
    /** SSH connection for the commands (see `sshConnection`); the private key stays secret. */
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /** What must be done before the firewall is applied (e.g. the node's preflight gate). */
    readonly dependsOn?: pulumi.ResourceOptions["dependsOn"];
}

export interface HostFirewallPlan {
    readonly policy: FirewallPolicy;
    readonly ruleset: RenderedRuleset;
    readonly openPorts: readonly OpenPort[];
    /** `apply`, then `confirm`; each runs after the one before it. */
    readonly steps: readonly NodeStep[];
}

/**
 * Renders the node's ruleset and the two steps that install it:
 *
 * - `apply` (firewall.sh) checks and loads the ruleset behind a rollback timer; its delete
 *   removes the firewall.
 * - `confirm` (firewall-confirm.sh) must reach the node over a new SSH connection, then cancels
 *   the timer and makes the ruleset persistent. Its parameters carry the ruleset hash and the
 *   apply payload's hash, so it runs again after every run of `apply`.
 */
export function hostFirewallPlan(spec: HostFirewallSpec): HostFirewallPlan {
    const rollbackSeconds = spec.rollbackSeconds ?? 60;
    if (!Number.isInteger(rollbackSeconds) || rollbackSeconds < 5 || rollbackSeconds > 3600) {
        throw new Error(`HostFirewall ${spec.node}: rollbackSeconds ${rollbackSeconds} must be a whole number from 5 to 3600`);
    }
    const policy = firewallRules(spec);
    const ruleset = renderNftables(policy);
    const apply: NodeStep = {
        name: "apply",
        script: path.join(SCRIPTS, "firewall.sh"),
        libraries: [STATE_LIB],
        params: { ZT_NODE: spec.node, ZT_RULESET: ruleset.text, ZT_ROLLBACK_SECONDS: rollbackSeconds },
        hasDelete: true,
        sensitive: false,
        meta: { zerotouchFirewall: { node: spec.node, rules: resolvedRules(policy) } },
    };
    const confirm: NodeStep = {
        name: "confirm",
        script: path.join(SCRIPTS, "firewall-confirm.sh"),
        libraries: [STATE_LIB],
        params: {
            ZT_NODE: spec.node,
            ZT_RULESET_HASH: ruleset.hash,
            ZT_APPLY: stepPayload(apply).hash,
        },
        hasDelete: false,
        sensitive: false,
    };
    return { policy, ruleset, openPorts: openPorts(policy), steps: [apply, confirm] };
}

/** One open port with its sources resolved to CIDRs: what policy packs read. */
export interface ResolvedRule {
    readonly name: string;
    readonly protocol: "tcp" | "udp";
    /** `"22"` or `"2379-2380"`. */
    readonly ports: string;
    /** `["any"]`, or CIDRs (a host as /32 or /128). */
    readonly sources: readonly string[];
}

/** The policy's rules with their source sets resolved to CIDRs, sorted as the policy is. */
export function resolvedRules(policy: FirewallPolicy): ResolvedRule[] {
    const sets = new Map(policy.sets.map((s) => [s.name, s]));
    const cidr = (a: string) => (a.includes("/") ? a : `${a}/${a.includes(":") ? 128 : 32}`);
    return openPorts(policy).map((p) => ({
        name: p.name,
        protocol: p.protocol,
        ports: p.ports,
        sources: p.from.includes("any")
            ? ["any"]
            : [...new Set(p.from.flatMap((f) => [...(sets.get(f)?.ipv4 ?? []), ...(sets.get(f)?.ipv6 ?? [])].map(cidr)))].sort(),
    }));
}

/** The steps of `hostFirewallPlan`, for the lab runner: `apply`, then `confirm`. */
export function hostFirewallSteps(spec: HostFirewallSpec): readonly NodeStep[] {
    return hostFirewallPlan(spec).steps;
}

/**
 * nftables host firewall of one node: inbound traffic is dropped except for the ports the
 * cluster needs, each open only to those who need it (see `firewallRules`). Only the
 * `inet zerotouch` table is managed; other tables are left alone.
 *
 * A ruleset that would lock SSH out cannot stick: `-apply` arms a timer that restores the
 * previous table, and only `-confirm` cancels it. `-confirm` is a separate `remote.Command`, and
 * every such command dials its own SSH connection, so it succeeds only if a new connection gets
 * through the new rules (the apply's own session survives them as an established flow).
 */
export class HostFirewall extends pulumi.ComponentResource {
    /** sha256 identifying the ruleset (printed in its header and reported by the scripts). */
    public readonly rulesetHash: pulumi.Output<string>;
    /** The nftables file loaded on the node. */
    public readonly ruleset: pulumi.Output<string>;
    /** Which ports are open to whom. */
    public readonly openPorts: pulumi.Output<OpenPort[]>;
    /** The last step (`confirm`): the ruleset is loaded, kept, and SSH still gets through it. */
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: HostFirewallArgs, opts?: pulumi.ComponentResourceOptions) {
        super("zerotouch:firewall:HostFirewall", name, {}, opts);
        const plan = hostFirewallPlan(args);

        let previous: pulumi.ResourceOptions["dependsOn"] = args.dependsOn;
        let last: pulumi.Resource | undefined;
        for (const step of plan.steps) {
            last = nodeScript(`${name}-${step.name}`, step, args.connection, args.target, {
                parent: this,
                ...(previous !== undefined ? { dependsOn: previous } : {}),
            });
            previous = [last];
        }
        this.ready = last!;

        this.rulesetHash = pulumi.output(plan.ruleset.hash);
        this.ruleset = pulumi.output(plan.ruleset.text);
        this.openPorts = pulumi.output(plan.openPorts.map((p) => ({ ...p, from: [...p.from] })));
        this.registerOutputs({ rulesetHash: this.rulesetHash, ruleset: this.ruleset, openPorts: this.openPorts });
    }
}
