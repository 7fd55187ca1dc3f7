import { createHash } from "crypto";

import { Cidr, cidrContains, hostCidr, ipToBigInt, parseCidr } from "../lib/cidr";
import type { NodeRole } from "../node/vpsNode";

/**
 * The host firewall as data, and its rendering to one nftables ruleset.
 *
 * `firewallRules()` decides who may open which port on one node; `renderNftables()` prints that
 * decision as a ruleset that replaces only the `inet zerotouch` table, atomically:
 *
 *     table inet zerotouch          # create it if absent, so that the next line cannot fail
 *     delete table inet zerotouch   # drop the old content
 *     table inet zerotouch { … }    # the new content
 *
 * `nft -f` runs the three as one transaction. Other tables (a CNI's, Docker's, kube-proxy's)
 * are never touched, and there is no `flush ruleset`.
 *
 * Policy: inbound traffic to the node (the `input` hook) is dropped unless accepted here.
 * Forwarded and outbound traffic are not filtered by this table, so pod networking stays the
 * CNI's business.
 */

/** A member of the cluster, as the firewall sees it. */
export interface FirewallNode {
    readonly role: NodeRole;
    /** The node's IPv4 or IPv6 address (no prefix length). */
    readonly address: string;
}

/** Named groups of source addresses that rules refer to. */
export type SourceGroup = "cluster" | "control-plane" | "vpn" | "management" | "pods";

/** An additional port to open, e.g. the CNI's overlay port between nodes. */
export interface ExtraRule {
    /** Lower-case name, unique among the rules (`[a-z][a-z0-9-]*`); shows up as the rule's comment. */
    readonly name: string;
    readonly protocol: "tcp" | "udp";
    /** One port, or an inclusive range `[first, last]`. */
    readonly ports: number | readonly [number, number];
    /** Who may connect: anyone, one of the named groups, or a list of addresses/CIDRs. */
    readonly from: "any" | SourceGroup | readonly string[];
}

export interface FirewallInput {
    /** Name of the node the ruleset is for; must be a key of `cluster`. */
    readonly node: string;
    readonly role: NodeRole;
    readonly address: string;
    /** Every node of the cluster (this one included), keyed by node name. */
    readonly cluster: Readonly<Record<string, FirewallNode>>;
    /** The VPN's address range: operators reach the API server and SSH through it. */
    readonly vpnCidr: string;
    /** Ranges SSH is also open to (an operator's office, a bastion). May be empty. */
    readonly managementCidrs: readonly string[];
    /**
     * Pod address ranges. Pods reach the API server (the `kubernetes` Service is DNATed to a
     * control-plane address) and kubelets (metrics-server) from these. Defaults to none.
     */
    readonly podCidrs?: readonly string[];
    /** Further ports to open. Defaults to none. */
    readonly extraRules?: readonly ExtraRule[];
}

export interface PortRange {
    readonly first: number;
    readonly last: number;
}

/** One accept rule: `protocol` to `ports` from `source`. */
export interface FirewallRule {
    /** What the port is for (`ssh`, `kube-apiserver`, …). */
    readonly name: string;
    readonly protocol: "tcp" | "udp";
    readonly ports: PortRange;
    /** `"any"`, or the name of an `AddressSet` of the policy. */
    readonly source: string;
}

/** A named source set; rendered as an `ipv4_addr` and an `ipv6_addr` interval set. */
export interface AddressSet {
    /** nftables identifier stem: the sets are `${name}_v4` and `${name}_v6`. */
    readonly name: string;
    /** Canonical, sorted, non-overlapping elements. */
    readonly ipv4: readonly string[];
    readonly ipv6: readonly string[];
}

/** Everything the ruleset of one node is rendered from. */
export interface FirewallPolicy {
    readonly node: string;
    readonly role: NodeRole;
    /** Only the sets that some rule refers to, sorted by name. */
    readonly sets: readonly AddressSet[];
    /** Sorted by port, protocol, name and source. */
    readonly rules: readonly FirewallRule[];
}

/** One open port and who may reach it: the human-readable summary of a policy. */
export interface OpenPort {
    readonly name: string;
    readonly protocol: "tcp" | "udp";
    /** `"22"` or `"2379-2380"`. */
    readonly ports: string;
    /** `["any"]` or the names of the source sets. */
    readonly from: readonly string[];
}

export interface RenderedRuleset {
    /** The file given to `nft -f`. */
    readonly text: string;
    /** sha256 of the ruleset below the header; also printed in the header. */
    readonly hash: string;
}

/** The table every zerotouch node owns. Nothing else is ever changed. */
export const FIREWALL_TABLE = "inet zerotouch";

/** ICMP echo requests accepted per second (and burst) before the rest is dropped. */
const ECHO_RATE = "limit rate 10/second burst 20 packets";

/** The address set each named source group is rendered as (`vpn` → `vpn_v4`, `vpn_v6`). */
export const GROUP_SET: Readonly<Record<SourceGroup, string>> = {
    cluster: "cluster",
    "control-plane": "control_plane",
    vpn: "vpn",
    management: "management",
    pods: "pods",
};

const BUILT_IN_NAMES = ["http", "https", "ssh", "kube-apiserver", "etcd", "kubelet"];
const RULE_NAME = /^[a-z][a-z0-9-]{0,39}$/;
/** Kubernetes node names are DNS subdomains; the name is printed in the ruleset's header. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function single(port: number): PortRange {
    return { first: port, last: port };
}

class InputError {
    constructor(private readonly node: string) {}

    fail(what: string): never {
        throw new Error(`HostFirewall ${this.node}: ${what}`);
    }

    /** Parses addresses and CIDRs; an address stands for its host prefix. */
    prefixes(key: string, values: readonly string[]): Cidr[] {
        return values.map((v) => {
            if (v.includes("%") || (!v.includes("/") && ipToBigInt(v) === undefined)) {
                this.fail(`${key}: "${v}" is not an IPv4 or IPv6 address or CIDR`);
            }
            const parsed = parseCidr(v.includes("/") ? v : hostCidr(v));
            return parsed.ok ? parsed.cidr : this.fail(`${key}: "${v}": ${parsed.reason}`);
        });
    }

    address(key: string, value: string): Cidr {
        if (value.includes("/")) {
            this.fail(`${key}: "${value}" must be a single address, not a CIDR`);
        }
        return this.prefixes(key, [value])[0];
    }
}

/** Host prefixes print as bare addresses. */
function elementText(c: Cidr): string {
    return c.prefix === (c.family === 4 ? 32 : 128) ? c.text.slice(0, c.text.indexOf("/")) : c.text;
}

/**
 * Sorted by address, without duplicates or prefixes covered by another one (nftables interval
 * sets reject overlapping elements): the elements depend only on the addresses covered.
 */
function addressSet(name: string, cidrs: readonly Cidr[]): AddressSet {
    const sorted = [...cidrs].sort((a, b) =>
        a.family !== b.family ? a.family - b.family : a.network !== b.network ? (a.network < b.network ? -1 : 1) : a.prefix - b.prefix,
    );
    // In this order a covered prefix comes after the last kept one that covers it.
    const kept: Cidr[] = [];
    for (const c of sorted) {
        const last = kept[kept.length - 1];
        const covered = last !== undefined && last.family === c.family && last.prefix <= c.prefix && cidrContains(last, c.text.split("/")[0]);
        if (!covered) {
            kept.push(c);
        }
    }
    return {
        name,
        ipv4: kept.filter((c) => c.family === 4).map(elementText),
        ipv6: kept.filter((c) => c.family === 6).map(elementText),
    };
}

function portRange(check: InputError, rule: ExtraRule): PortRange {
    const [first, last] = typeof rule.ports === "number" ? [rule.ports, rule.ports] : rule.ports;
    const ok = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65535;
    if (!ok(first) || !ok(last) || first > last) {
        check.fail(`extraRules.${rule.name}.ports: ${JSON.stringify(rule.ports)} is not a port (1–65535) or a range [first, last]`);
    }
    return { first, last };
}

/** Code-unit order: unlike `localeCompare`, the same on every machine, so hashes are too. */
function byText(a: string, b: string): number {
    return a < b ? -1 : a > b ? 1 : 0;
}

function compareRules(a: FirewallRule, b: FirewallRule): number {
    return (
        a.ports.first - b.ports.first ||
        a.ports.last - b.ports.last ||
        byText(a.protocol, b.protocol) ||
        byText(a.name, b.name) ||
        byText(a.source, b.source)
    );
}

/**
 * Decides the firewall of one node. Pure: the same input (in any key order) gives the same
 * policy. Adding or removing a node changes only the contents of the address sets.
 *
 * - 80/tcp, 443/tcp: from anywhere.
 * - 22/tcp: from `managementCidrs` and `vpnCidr`.
 * - 6443/tcp (API server): from `vpnCidr`, the cluster's nodes and `podCidrs`.
 * - 2379–2380/tcp (etcd): on control-plane nodes only, from control-plane nodes.
 * - 10250/tcp (kubelet): from the cluster's nodes and `podCidrs`.
 * - `extraRules` as given.
 */
export function firewallRules(input: FirewallInput): FirewallPolicy {
    const check = new InputError(input.node);
    checkSelf(check, input);
    const groups = sourceGroups(check, input);
    const extra = extraRules(check, input.extraRules ?? []);
    const rules = [...builtInRules(input.role, groups.pods.length > 0), ...extra.rules];
    rules.sort(compareRules);
    const used = new Set(rules.map((r) => r.source));
    const sets = [
        ...(Object.keys(GROUP_SET) as SourceGroup[]).map((g) => addressSet(GROUP_SET[g], groups[g])),
        ...extra.sets,
    ]
        .filter((s) => used.has(s.name))
        .sort((a, b) => byText(a.name, b.name));
    return { node: input.node, role: input.role, sets, rules };
}

/** The node's name is valid, and the cluster holds it with the role and address it was given. */
function checkSelf(check: InputError, input: FirewallInput): void {
    if (!NODE_NAME.test(input.node)) {
        check.fail(`node: ${JSON.stringify(input.node)} is not a valid node name (${NODE_NAME.source})`);
    }
    const self = input.cluster[input.node];
    if (self === undefined) {
        check.fail(`cluster: the node itself is missing (nodes: ${Object.keys(input.cluster).sort().join(", ") || "none"})`);
    }
    if (self.role !== input.role || self.address !== input.address) {
        check.fail(
            `cluster.${input.node} is ${self.role} at ${self.address}, but the firewall was given ${input.role} at ${input.address}`,
        );
    }
}

/** The prefixes of each source group, checked: the cluster's nodes (each address once), the VPN, management and pods. */
function sourceGroups(check: InputError, input: FirewallInput): Record<SourceGroup, Cidr[]> {
    const names = Object.keys(input.cluster).sort();
    const seen = new Map<string, string>();
    const members = names.map((name) => {
        const n = input.cluster[name];
        if (n.role !== "control-plane" && n.role !== "worker") {
            check.fail(`cluster.${name}.role: "${String(n.role)}" is not "control-plane" or "worker"`);
        }
        const prefix = check.address(`cluster.${name}.address`, n.address);
        const key = prefix.text;
        const other = seen.get(key);
        if (other !== undefined) {
            check.fail(`cluster.${name}.address: ${n.address} is also the address of ${other}`);
        }
        seen.set(key, name);
        return { role: n.role, prefix };
    });
    const [vpn] = check.prefixes("vpnCidr", [input.vpnCidr]);
    return {
        cluster: members.map((m) => m.prefix),
        "control-plane": members.filter((m) => m.role === "control-plane").map((m) => m.prefix),
        vpn: [vpn],
        management: check.prefixes("managementCidrs", input.managementCidrs),
        pods: check.prefixes("podCidrs", input.podCidrs ?? []),
    };
}

/** The rules every node gets (see `firewallRules`), unsorted. */
function builtInRules(role: FirewallInput["role"], withPods: boolean): FirewallRule[] {
    const rules: FirewallRule[] = [];
    const allow = (name: string, ports: PortRange, ...from: ("any" | SourceGroup)[]) => {
        for (const f of from) {
            rules.push({ name, protocol: "tcp", ports, source: f === "any" ? "any" : GROUP_SET[f] });
        }
    };
    allow("http", single(80), "any");
    allow("https", single(443), "any");
    allow("ssh", single(22), "management", "vpn");
    allow("kube-apiserver", single(6443), "vpn", "cluster");
    allow("kubelet", single(10250), "cluster");
    if (withPods) {
        allow("kube-apiserver", single(6443), "pods");
        allow("kubelet", single(10250), "pods");
    }
    if (role === "control-plane") {
        allow("etcd", { first: 2379, last: 2380 }, "control-plane");
    }
    return rules;
}

/** The extra rules, checked, and an address set for each one that comes from its own CIDRs. */
function extraRules(check: InputError, extras: readonly ExtraRule[]): { rules: FirewallRule[]; sets: AddressSet[] } {
    const rules: FirewallRule[] = [];
    const sets: AddressSet[] = [];
    const extraNames = new Set<string>();
    for (const extra of extras) {
        if (!RULE_NAME.test(extra.name) || BUILT_IN_NAMES.includes(extra.name) || extraNames.has(extra.name)) {
            check.fail(
                `extraRules: name "${extra.name}" must match ${RULE_NAME.source} and differ from the other rules (${[...BUILT_IN_NAMES, ...extraNames].join(", ")})`,
            );
        }
        extraNames.add(extra.name);
        if (extra.protocol !== "tcp" && extra.protocol !== "udp") {
            check.fail(`extraRules.${extra.name}.protocol: "${String(extra.protocol)}" is not "tcp" or "udp"`);
        }
        const ports = portRange(check, extra);
        let source: string;
        if (typeof extra.from === "string") {
            if (extra.from !== "any" && !(extra.from in GROUP_SET)) {
                check.fail(`extraRules.${extra.name}.from: "${extra.from}" is not "any", one of ${Object.keys(GROUP_SET).join(", ")}, or a list of CIDRs`);
            }
            source = extra.from === "any" ? "any" : GROUP_SET[extra.from];
        } else {
            source = `extra_${extra.name.replace(/-/g, "_")}`;
            sets.push(addressSet(source, check.prefixes(`extraRules.${extra.name}.from`, extra.from)));
        }
        rules.push({ name: extra.name, protocol: extra.protocol, ports, source });
    }
    return { rules, sets };
}

function portText(ports: PortRange): string {
    return ports.first === ports.last ? String(ports.first) : `${ports.first}-${ports.last}`;
}

/** Which ports are open to whom, one entry per rule name, protocol and port range. */
export function openPorts(policy: FirewallPolicy): OpenPort[] {
    const byKey = new Map<string, { name: string; protocol: "tcp" | "udp"; ports: string; from: string[] }>();
    for (const rule of policy.rules) {
        const ports = portText(rule.ports);
        const key = `${rule.name}/${rule.protocol}/${ports}`;
        const entry = byKey.get(key) ?? { name: rule.name, protocol: rule.protocol, ports, from: [] };
        entry.from.push(rule.source);
        byKey.set(key, entry);
    }
    return [...byKey.values()];
}

function renderSet(name: string, type: "ipv4_addr" | "ipv6_addr", elements: readonly string[]): string[] {
    return [
        `\tset ${name} {`,
        `\t\ttype ${type}`,
        "\t\tflags interval",
        ...(elements.length > 0 ? [`\t\telements = { ${elements.join(", ")} }`] : []),
        "\t}",
    ];
}

function renderRule(rule: FirewallRule): string[] {
    const match = `${rule.protocol} dport ${portText(rule.ports)} accept`;
    if (rule.source === "any") {
        return [`\t\t${match} comment "${rule.name}"`];
    }
    const comment = `comment "${rule.name} from ${rule.source}"`;
    return [`\t\tip saddr @${rule.source}_v4 ${match} ${comment}`, `\t\tip6 saddr @${rule.source}_v6 ${match} ${comment}`];
}

/**
 * Prints a policy as an nftables file. The output is a function of the policy only; its header
 * carries the sha256 of everything below it, which identifies the ruleset on the node.
 */
export function renderNftables(policy: FirewallPolicy): RenderedRuleset {
    const body = [
        `table ${FIREWALL_TABLE}`,
        `delete table ${FIREWALL_TABLE}`,
        "",
        `table ${FIREWALL_TABLE} {`,
        ...policy.sets.flatMap((s) => [...renderSet(`${s.name}_v4`, "ipv4_addr", s.ipv4), ...renderSet(`${s.name}_v6`, "ipv6_addr", s.ipv6)]),
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        // IPv6 cannot work without neighbour discovery: accepted first, whatever conntrack
        // makes of it. Hop limit 255 and link-local sources mean it comes from the link itself.
        '\t\ticmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept comment "ipv6 neighbour discovery"',
        '\t\tip6 saddr fe80::/10 icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } accept comment "ipv6 multicast listener discovery"',
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        '\t\tiif "lo" accept',
        `\t\ticmp type echo-request ${ECHO_RATE} accept comment "ping"`,
        `\t\ticmpv6 type echo-request ${ECHO_RATE} accept comment "ping6"`,
        '\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept comment "dhcpv6 replies"',
        ...policy.rules.flatMap(renderRule),
        "\t}",
        "}",
        "",
    ].join("\n");
    const hash = createHash("sha256").update(body).digest("hex");
    const header = [
        `# zerotouch host firewall of node ${policy.node} (${policy.role})`,
        `# sha256 ${hash}`,
        "# Generated: replaces only the inet zerotouch table; edits are overwritten.",
        "",
    ].join("\n");
    return { text: `${header}\n${body}`, hash };
}
