import { cidrContains, hostCidr, ipToBigInt, parseCidr } from "../lib/cidr";
import type { NodeRole } from "../node/vpsNode";
import { ExtraRule, FirewallNode, FirewallPolicy, firewallRules, GROUP_SET } from "./rules";

/**
 * The exposure check as data: which ports of which node may answer a prober standing somewhere
 * (derived from `firewallRules()`, the very function the nodes' rulesets are rendered from), what
 * nmap saw, and the verdict. `verify-exposure.ts` runs nmap and prints the result.
 *
 * What "answers" means: a TCP port that is `open` (SYN/ACK) or `closed` (RST: the packet reached
 * the node and nothing listens) answers; `filtered` (no reply, or an ICMP prohibited) does not.
 * A closed port counts as exposed because the firewall should have dropped the packet before
 * the kernel could reset it: the next process that binds the port is reachable.
 *
 * UDP 8472 (flannel's VXLAN) is the ambiguous one. VXLAN never replies to a probe, so a node
 * whose VXLAN endpoint listens looks like a node that drops the packet: nmap says
 * `open|filtered` for both, and this check counts that as silent. Only an ICMP port unreachable
 * (`closed`: reachable, nothing listening) or a UDP reply (`open`) proves the port is reachable,
 * and both count as exposed. So the UDP probe catches a node without a firewall where flannel is
 * not running, not one where it is; that node's TCP ports (10250, 6443, 2379) still fail the check.
 */

export interface ProbedPort {
    readonly protocol: "tcp" | "udp";
    readonly port: number;
}

/** The ports that matter: SSH, HTTP(S), etcd, the API server, the kubelet, flannel's VXLAN. */
export const PROBED_PORTS: readonly ProbedPort[] = [
    { protocol: "tcp", port: 22 },
    { protocol: "tcp", port: 80 },
    { protocol: "tcp", port: 443 },
    { protocol: "tcp", port: 2379 },
    { protocol: "tcp", port: 2380 },
    { protocol: "tcp", port: 6443 },
    { protocol: "tcp", port: 10250 },
    { protocol: "udp", port: 8472 },
];

/**
 * What the check reads of the stack outputs (`platform` in stacks/outputs.ts): the nodes'
 * public addresses and roles, and every other input of their firewalls.
 */
export interface ExposureTargets {
    readonly nodes: Readonly<Record<string, { readonly host: string; readonly role: NodeRole }>>;
    readonly vpnCidr: string;
    readonly managementCidrs: readonly string[];
    readonly firewall: { readonly podCidrs: readonly string[]; readonly extraRules: readonly ExtraRule[] };
}

/** Where the prober stands, by name. */
export const POSITIONS = ["internet", "management", "vpn"] as const;
export type NamedPosition = (typeof POSITIONS)[number];

/**
 * A named position, or the prober's own source address as the nodes see it.
 *
 * - `internet`: in none of the firewall's source sets (outside the VPN, the management ranges,
 *   the cluster, the pod ranges and every extra rule's CIDRs): only rules `from: any` apply.
 * - `management`: inside `managementCidrs` (and nothing else): plus SSH.
 * - `vpn`: inside `vpnCidr` (and nothing else): plus SSH and the API server.
 * - an address: every source set that holds it applies, computed per node.
 */
export type ProberPosition = NamedPosition | { readonly address: string };

export function parsePosition(text: string): ProberPosition {
    if ((POSITIONS as readonly string[]).includes(text)) {
        return text as NamedPosition;
    }
    if (ipToBigInt(text) !== undefined) {
        return { address: canonicalAddress(text) };
    }
    throw new Error(`--from: ${JSON.stringify(text)} is not one of ${POSITIONS.join(", ")} or an IPv4/IPv6 address`);
}

export function positionText(from: ProberPosition): string {
    return typeof from === "string" ? from : `address ${from.address}`;
}

/** An address in one spelling (`2001:DB8:0::1` → `2001:db8::1`), as nmap prints it. */
export function canonicalAddress(address: string): string {
    return hostCidr(address).split("/")[0];
}

/** One node's firewall, decided from the outputs exactly as the program decided it (infra/program.ts). */
export function nodePolicy(targets: ExposureTargets, node: string): FirewallPolicy {
    const self = targets.nodes[node];
    const cluster: Record<string, FirewallNode> = {};
    for (const [name, n] of Object.entries(targets.nodes)) {
        cluster[name] = { role: n.role, address: n.host };
    }
    return firewallRules({
        node,
        role: self.role,
        address: self.host,
        cluster,
        vpnCidr: targets.vpnCidr,
        managementCidrs: targets.managementCidrs,
        podCidrs: targets.firewall.podCidrs,
        extraRules: targets.firewall.extraRules,
    });
}

/** The source sets of `policy` the prober is a member of; `any` always. */
function memberSets(policy: FirewallPolicy, from: ProberPosition): Set<string> {
    if (typeof from === "string") {
        return new Set(["any", ...(from === "internet" ? [] : [GROUP_SET[from]])]);
    }
    const holds = (element: string) => {
        const parsed = parseCidr(element.includes("/") ? element : hostCidr(element));
        return parsed.ok && cidrContains(parsed.cidr, from.address);
    };
    return new Set(["any", ...policy.sets.filter((s) => [...s.ipv4, ...s.ipv6].some(holds)).map((s) => s.name)]);
}

export interface Expectation {
    readonly node: string;
    readonly address: string;
    readonly protocol: "tcp" | "udp";
    readonly port: number;
    /** Whether the firewall accepts this port from where the prober stands. */
    readonly mayAnswer: boolean;
    /** The accepting rules, as `https from any`; empty when the port is dropped. */
    readonly because: readonly string[];
}

/** Per node (sorted by name) and probed port: may it answer the prober at `from`? */
export function expectedExposure(targets: ExposureTargets, from: ProberPosition): Expectation[] {
    const out: Expectation[] = [];
    for (const node of Object.keys(targets.nodes).sort()) {
        const policy = nodePolicy(targets, node);
        const member = memberSets(policy, from);
        for (const { protocol, port } of PROBED_PORTS) {
            const because = policy.rules
                .filter((r) => r.protocol === protocol && r.ports.first <= port && port <= r.ports.last && member.has(r.source))
                .map((r) => `${r.name} from ${r.source}`);
            out.push({ node, address: canonicalAddress(targets.nodes[node].host), protocol, port, mayAnswer: because.length > 0, because });
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// nmap

/** What nmap reported for one port: its state and the reason (`reset`, `no-response`, `port-unreach`, …). */
export interface PortState {
    readonly state: string;
    readonly reason: string;
}

/** address → `22/tcp` → state, from one nmap run. */
export type NmapScan = ReadonlyMap<string, ReadonlyMap<string, PortState>>;

export function portKey(p: ProbedPort): string {
    return `${p.port}/${p.protocol}`;
}

/**
 * nmap's arguments for one address family: no host discovery (`-Pn`: the firewall answers
 * pings at a limited rate, and a node must be probed even when it does not), no DNS, a SYN scan
 * of the TCP ports and a UDP scan of the UDP ones (both need root: raw sockets), every port
 * retried twice before it counts as filtered, and XML on stdout.
 */
export function nmapArgs(addresses: readonly string[], hostTimeoutSeconds: number): string[] {
    const six = addresses.some((a) => ipToBigInt(a)?.family === 6);
    if (six && addresses.some((a) => ipToBigInt(a)?.family === 4)) {
        throw new Error("nmapArgs: one run scans one address family; split IPv4 and IPv6 addresses");
    }
    const tcp = PROBED_PORTS.filter((p) => p.protocol === "tcp").map((p) => p.port);
    const udp = PROBED_PORTS.filter((p) => p.protocol === "udp").map((p) => p.port);
    return [
        ...(six ? ["-6"] : []),
        ...["-Pn", "-n", "-sS", "-sU", "-p", `T:${tcp.join(",")},U:${udp.join(",")}`],
        ...["--max-retries", "2", "--host-timeout", `${hostTimeoutSeconds}s`, "-oX", "-"],
        ...addresses,
    ];
}

function attribute(tag: string, name: string): string | undefined {
    return new RegExp(`\\b${name}="([^"]*)"`).exec(tag)?.[1];
}

/** One `<host>` element: its address and the state of every port it lists. */
function parseHost(block: string): [string, Map<string, PortState>] {
    const address = /<address\b[^>]*addrtype="ipv[46]"[^>]*\/>/.exec(block);
    const addr = address === null ? undefined : attribute(address[0], "addr");
    if (addr === undefined) {
        throw new Error(`nmap XML: a <host> without an IP address: ${block.slice(0, 200)}`);
    }
    const ports = new Map<string, PortState>();
    for (const m of block.matchAll(/<port\b([^>]*)>\s*<state\b([^>]*)\/>/g)) {
        const protocol = attribute(m[1], "protocol");
        const port = attribute(m[1], "portid");
        const state = attribute(m[2], "state");
        if (protocol === undefined || port === undefined || state === undefined) {
            throw new Error(`nmap XML: a <port> without protocol, portid or state: ${m[0]}`);
        }
        ports.set(`${port}/${protocol}`, { state, reason: attribute(m[2], "reason") ?? "" });
    }
    return [canonicalAddress(addr), ports];
}

/**
 * Parses nmap's XML output (`-oX -`). Throws when nmap did not finish successfully. A host that
 * timed out is left out, as nmap leaves it out; `judge` then names the node as unprobed.
 */
export function parseNmapXml(xml: string): NmapScan {
    if (!/<nmaprun\b/.test(xml)) {
        throw new Error("nmap XML: no <nmaprun> element (is this nmap's -oX output?)");
    }
    const finished = /<finished\b[^>]*\/>/.exec(xml);
    if (finished === null || attribute(finished[0], "exit") !== "success") {
        const message = finished === null ? "the run did not finish" : (attribute(finished[0], "errormsg") ?? "exit not success");
        throw new Error(`nmap XML: ${message}`);
    }
    const scan = new Map<string, Map<string, PortState>>();
    for (const m of xml.matchAll(/<host\b([^>]*)>([\s\S]*?)<\/host>/g)) {
        if (attribute(m[1], "timedout") === "true") {
            continue;
        }
        const [address, ports] = parseHost(m[2]);
        scan.set(address, ports);
    }
    return scan;
}

/**
 * Whether a port state proves the prober's packet reached the node: `open`, `closed` (RST or
 * ICMP port unreachable) and `unfiltered` (an RST to an ACK probe) do; `filtered` and
 * `open|filtered` (no reply) do not. Any other state is not one these scans produce: it throws.
 */
export function answers(state: PortState): boolean {
    if (["open", "closed", "unfiltered"].includes(state.state)) {
        return true;
    }
    if (["filtered", "open|filtered"].includes(state.state)) {
        return false;
    }
    throw new Error(`nmap state "${state.state}" (reason ${state.reason || "none"}) is not one this check can judge`);
}

// ---------------------------------------------------------------------------------------------
// verdict

export interface ExposureRow extends Expectation {
    readonly observed: PortState;
    /** `exposed`: it answers although the firewall should drop it from here. */
    readonly verdict: "ok" | "exposed";
}

export interface ExposureReport {
    readonly from: ProberPosition;
    readonly rows: readonly ExposureRow[];
    /** Per node with exposed ports: those ports (`22/tcp`), in probe order. */
    readonly exposed: readonly { readonly node: string; readonly address: string; readonly ports: readonly string[] }[];
    /** Nodes nmap reported nothing for, or where not one port answered: the probe proves nothing there. */
    readonly unproven: readonly { readonly node: string; readonly address: string; readonly why: string }[];
    readonly ok: boolean;
}

function nodeRows(expectations: readonly Expectation[], ports: ReadonlyMap<string, PortState>): ExposureRow[] {
    return expectations.map((e) => {
        const observed = ports.get(portKey(e));
        if (observed === undefined) {
            throw new Error(`nmap reported no state for ${e.node} (${e.address}) ${portKey(e)}`);
        }
        return { ...e, observed, verdict: !e.mayAnswer && answers(observed) ? "exposed" : "ok" };
    });
}

/** Holds every expectation against the scan. */
export function judge(expectations: readonly Expectation[], scan: NmapScan, from: ProberPosition): ExposureReport {
    const rows: ExposureRow[] = [];
    const exposed: { node: string; address: string; ports: string[] }[] = [];
    const unproven: { node: string; address: string; why: string }[] = [];
    const nodes = [...new Set(expectations.map((e) => e.node))];
    for (const node of nodes) {
        const own = expectations.filter((e) => e.node === node);
        const address = own[0].address;
        const ports = scan.get(address);
        if (ports === undefined) {
            unproven.push({ node, address, why: "nmap reported nothing for it (host timeout?)" });
            continue;
        }
        const mine = nodeRows(own, ports);
        rows.push(...mine);
        const bad = mine.filter((r) => r.verdict === "exposed").map(portKey);
        if (bad.length > 0) {
            exposed.push({ node, address, ports: bad });
        }
        if (!mine.some((r) => answers(r.observed))) {
            const allowed = mine.filter((r) => r.mayAnswer).map(portKey);
            unproven.push({ node, address, why: `not one port answered, not even ${allowed.join(", ") || "(none allowed)"} that the firewall accepts from here` });
        }
    }
    return { from, rows, exposed, unproven, ok: exposed.length === 0 && unproven.length === 0 };
}

/** The report as a table: node, address, port, expected, observed, verdict. */
export function formatTable(report: ExposureReport): string {
    const head = ["node", "address", "port", "expected", "observed", "verdict"];
    const body = report.rows.map((r) => [
        r.node,
        r.address,
        portKey(r),
        r.mayAnswer ? `may answer (${r.because.join(", ")})` : "dropped",
        `${r.observed.state}${r.observed.reason ? ` (${r.observed.reason})` : ""}`,
        r.verdict === "exposed" ? "EXPOSED" : "ok",
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
    return [`exposure from ${positionText(report.from)}:`, line(head), ...body.map(line)].join("\n");
}

/** One line per failing node, naming node, address and ports; empty when the check passed. */
export function failureLines(report: ExposureReport): string[] {
    const from = positionText(report.from);
    return [
        ...report.exposed.map(
            (e) => `exposure: node ${e.node} (${e.address}): ${e.ports.join(", ")} answer${e.ports.length === 1 ? "s" : ""} from ${from}, where its firewall should drop ${e.ports.length === 1 ? "it" : "them"}`,
        ),
        ...report.unproven.map((u) => `exposure: node ${u.node} (${u.address}): unproven from ${from}: ${u.why}`),
    ];
}
