import { execFileSync, spawnSync } from "child_process";
import { createHash } from "crypto";
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";

import type * as FirewallModule from "../components/firewall/hostFirewall";
import { hostFirewallPlan, hostFirewallSteps } from "../components/firewall/hostFirewall";
import { FirewallInput, FirewallPolicy, firewallRules, openPorts, renderNftables } from "../components/firewall/rules";
import { sshConnection } from "../components/lib/connection";
import { installMocks, Recorder, resolve, settle, wireSecret } from "./support/mocks";
import { describeAsRoot } from "./support/host";

const COMMAND = "command:remote:Command";

function input(overrides: Partial<FirewallInput> = {}): FirewallInput {
    return {
        node: "cp-1",
        role: "control-plane",
        address: "203.0.113.11",
        cluster: {
            "cp-1": { role: "control-plane", address: "203.0.113.11" },
            "cp-2": { role: "control-plane", address: "203.0.113.12" },
            "cp-3": { role: "control-plane", address: "2001:db8:0:0::13" },
            "worker-1": { role: "worker", address: "203.0.113.21" },
        },
        vpnCidr: "10.8.0.0/24",
        managementCidrs: ["198.51.100.0/28", "2001:db8:ffff::/48"],
        ...overrides,
    };
}

const worker = (overrides: Partial<FirewallInput> = {}) =>
    input({ node: "worker-1", role: "worker", address: "203.0.113.21", ...overrides });

function set(policy: FirewallPolicy, name: string) {
    const s = policy.sets.find((x) => x.name === name);
    if (!s) {
        throw new Error(`no set ${name}: ${policy.sets.map((x) => x.name).join(", ")}`);
    }
    return s;
}

/** `name ports from` for every rule, in order. */
function ruleLines(policy: FirewallPolicy): string[] {
    return policy.rules.map((r) => `${r.name} ${r.protocol}/${r.ports.first}-${r.ports.last} ${r.source}`);
}

/** The rendered text with set elements blanked: what is left when only the sets differ. */
function withoutElements(text: string): string {
    return text
        .split("\n")
        .filter((l) => !l.trim().startsWith("elements = ") && !l.startsWith("# sha256 "))
        .join("\n");
}

describe("firewallRules", () => {
    test("a control-plane node opens etcd to control-plane addresses only", () => {
        const p = firewallRules(input());
        expect(ruleLines(p)).toEqual([
            "ssh tcp/22-22 management",
            "ssh tcp/22-22 vpn",
            "http tcp/80-80 any",
            "https tcp/443-443 any",
            "etcd tcp/2379-2380 control_plane",
            "kube-apiserver tcp/6443-6443 cluster",
            "kube-apiserver tcp/6443-6443 vpn",
            "kubelet tcp/10250-10250 cluster",
        ]);
        expect(set(p, "control_plane")).toEqual({ name: "control_plane", ipv4: ["203.0.113.11", "203.0.113.12"], ipv6: ["2001:db8::13"] });
        expect(set(p, "cluster").ipv4).toEqual(["203.0.113.11", "203.0.113.12", "203.0.113.21"]);
        expect(p.sets.map((s) => s.name)).toEqual(["cluster", "control_plane", "management", "vpn"]);
    });

    test("a worker node has no etcd rule and no control-plane set", () => {
        const p = firewallRules(worker());
        expect(ruleLines(p).filter((l) => l.startsWith("etcd"))).toEqual([]);
        expect(p.sets.map((s) => s.name)).toEqual(["cluster", "management", "vpn"]);
        expect(renderNftables(p).text).not.toMatch(/2379|control_plane/);
    });

    test.each([
        ["vpn", { vpnCidr: "10.8.0.0/24" }, { ipv4: ["10.8.0.0/24"], ipv6: [] }],
        ["vpn", { vpnCidr: "fd00:8::/64" }, { ipv4: [], ipv6: ["fd00:8::/64"] }],
        ["management", { managementCidrs: ["198.51.100.0/28", "2001:db8:ffff::/48"] }, { ipv4: ["198.51.100.0/28"], ipv6: ["2001:db8:ffff::/48"] }],
        ["management", { managementCidrs: ["192.0.2.7"] }, { ipv4: ["192.0.2.7"], ipv6: [] }],
        ["management", { managementCidrs: [] }, { ipv4: [], ipv6: [] }],
        // Duplicates and covered ranges are merged; spelling and order do not matter.
        ["management", { managementCidrs: ["10.1.0.0/16", "10.0.0.0/8", "10.0.0.0/8", "2001:DB8::0:1"] }, { ipv4: ["10.0.0.0/8"], ipv6: ["2001:db8::1"] }],
    ] as const)("%s set from %j", (name, overrides, expected) => {
        const s = set(firewallRules(input(overrides)), name);
        expect({ ipv4: s.ipv4, ipv6: s.ipv6 }).toEqual(expected);
    });

    test("an IPv6 node is in the IPv6 sets and its rules match ip6 sources", () => {
        const p = firewallRules(input({ node: "cp-3", address: "2001:db8::13" , cluster: { ...input().cluster, "cp-3": { role: "control-plane", address: "2001:db8::13" } } }));
        expect(set(p, "cluster").ipv6).toEqual(["2001:db8::13"]);
        const text = renderNftables(p).text;
        expect(text).toContain('ip6 saddr @control_plane_v6 tcp dport 2379-2380 accept comment "etcd from control_plane"');
        expect(text).toContain('ip6 saddr @cluster_v6 tcp dport 6443 accept');
        expect(text).toContain('ip6 saddr @cluster_v6 tcp dport 10250 accept');
    });

    test("adding a node changes only the address sets", () => {
        const before = input();
        const after = input({ cluster: { ...before.cluster, "worker-2": { role: "worker", address: "2001:db8::22" }, "cp-4": { role: "control-plane", address: "203.0.113.14" } } });
        for (const make of [(i: FirewallInput) => i, (i: FirewallInput) => ({ ...i, node: "worker-1", role: "worker" as const, address: "203.0.113.21" })]) {
            const a = firewallRules(make(before));
            const b = firewallRules(make(after));
            expect(b.rules).toEqual(a.rules);
            expect(b.sets.map((s) => s.name)).toEqual(a.sets.map((s) => s.name));
            const ra = renderNftables(a);
            const rb = renderNftables(b);
            expect(rb.hash).not.toEqual(ra.hash);
            expect(withoutElements(rb.text)).toEqual(withoutElements(ra.text));
        }
    });

    test("the output does not depend on the order of nodes or CIDRs", () => {
        const a = input();
        const reversed = Object.fromEntries(Object.entries(a.cluster).reverse());
        const b = { ...a, cluster: reversed, managementCidrs: [...a.managementCidrs].reverse() };
        expect(renderNftables(firewallRules(b))).toEqual(renderNftables(firewallRules(a)));
        expect(renderNftables(firewallRules(a))).toEqual(renderNftables(firewallRules(a)));
    });

    test("pod ranges may reach the API server and kubelets", () => {
        const p = firewallRules(input({ podCidrs: ["10.244.0.0/16", "fd00:244::/56"] }));
        expect(ruleLines(p).filter((l) => l.endsWith(" pods"))).toEqual(["kube-apiserver tcp/6443-6443 pods", "kubelet tcp/10250-10250 pods"]);
        expect(set(p, "pods")).toEqual({ name: "pods", ipv4: ["10.244.0.0/16"], ipv6: ["fd00:244::/56"] });
    });

    test("extra rules: groups, any, explicit CIDRs and port ranges", () => {
        const p = firewallRules(
            input({
                extraRules: [
                    { name: "vxlan", protocol: "udp", ports: 8472, from: "cluster" },
                    { name: "node-ports", protocol: "tcp", ports: [30000, 32767], from: "any" },
                    { name: "wireguard", protocol: "udp", ports: 51820, from: ["192.0.2.0/24", "2001:db8:1::/64"] },
                ],
            }),
        );
        expect(ruleLines(p)).toEqual(
            expect.arrayContaining(["vxlan udp/8472-8472 cluster", "node-ports tcp/30000-32767 any", "wireguard udp/51820-51820 extra_wireguard"]),
        );
        expect(set(p, "extra_wireguard")).toEqual({ name: "extra_wireguard", ipv4: ["192.0.2.0/24"], ipv6: ["2001:db8:1::/64"] });
        expect(openPorts(p)).toEqual(
            expect.arrayContaining([
                { name: "node-ports", protocol: "tcp", ports: "30000-32767", from: ["any"] },
                { name: "kube-apiserver", protocol: "tcp", ports: "6443", from: ["cluster", "vpn"] },
                { name: "etcd", protocol: "tcp", ports: "2379-2380", from: ["control_plane"] },
            ]),
        );
    });

    test.each<[string, Partial<FirewallInput>, RegExp]>([
        ["node missing from cluster", { node: "cp-9" }, /HostFirewall cp-9: cluster: the node itself is missing/],
        ["role differs from cluster", { role: "worker" }, /cluster\.cp-1 is control-plane at 203\.0\.113\.11, but the firewall was given worker/],
        ["bad node name", { node: "CP 1" }, /node: "CP 1" is not a valid node name/],
        ["bad vpn CIDR", { vpnCidr: "10.8.0.0/33" }, /vpnCidr: "10\.8\.0\.0\/33": prefix must be 0 to 32/],
        ["vpn CIDR with host bits", { vpnCidr: "10.8.0.1/24" }, /host bits are set; the network is 10\.8\.0\.0\/24/],
        ["management not an address", { managementCidrs: ["office"] }, /managementCidrs: "office" is not an IPv4 or IPv6 address or CIDR/],
        ["node address is a CIDR", { cluster: { ...input().cluster, "cp-2": { role: "control-plane", address: "203.0.113.0/24" } } }, /cluster\.cp-2\.address: "203\.0\.113\.0\/24" must be a single address/],
        ["two nodes, one address", { cluster: { ...input().cluster, "cp-2": { role: "control-plane", address: "203.0.113.11" } } }, /cluster\.cp-2\.address: 203\.0\.113\.11 is also the address of cp-1/],
        ["extra rule named like a built-in", { extraRules: [{ name: "ssh", protocol: "tcp", ports: 2222, from: "vpn" }] }, /extraRules: name "ssh"/],
        ["extra rule port out of range", { extraRules: [{ name: "x", protocol: "tcp", ports: [10, 5], from: "vpn" }] }, /extraRules\.x\.ports: \[10,5\]/],
        ["extra rule unknown group", { extraRules: [{ name: "x", protocol: "tcp", ports: 1, from: "everyone" as never }] }, /extraRules\.x\.from: "everyone"/],
    ])("rejects %s", (_what, overrides, message) => {
        expect(() => firewallRules(input(overrides))).toThrow(message);
    });
});

describe("renderNftables", () => {
    const rendered = renderNftables(firewallRules(input()));

    test("replaces only its own table, atomically, and never flushes the ruleset", () => {
        const body = rendered.text.split("\n").filter((l) => !l.startsWith("#") && l.trim() !== "");
        expect(body.slice(0, 3)).toEqual(["table inet zerotouch", "delete table inet zerotouch", "table inet zerotouch {"]);
        expect(rendered.text).not.toMatch(/flush/);
        expect(rendered.text.match(/^table /gm)).toHaveLength(2);
    });

    test("filters input only: drop policy there, no forward or output chain", () => {
        expect(rendered.text.match(/\bchain \w+/g)).toEqual(["chain input"]);
        expect(rendered.text).toContain("type filter hook input priority filter; policy drop;");
        expect(rendered.text).not.toMatch(/hook (forward|output)/);
    });

    test("base rules: conntrack, loopback, rate-limited ping, neighbour discovery before the invalid drop", () => {
        const lines = rendered.text.split("\n").map((l) => l.trim());
        const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
        expect(at("ct state established,related accept")).toBeGreaterThan(0);
        expect(at('iif "lo" accept')).toBeGreaterThan(at("ct state invalid drop"));
        expect(at("icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept")).toBeLessThan(
            at("ct state invalid drop"),
        );
        expect(lines).toContain('icmp type echo-request limit rate 10/second burst 20 packets accept comment "ping"');
        expect(lines).toContain('icmpv6 type echo-request limit rate 10/second burst 20 packets accept comment "ping6"');
    });

    test("sets are typed interval sets; empty ones have no elements line", () => {
        expect(rendered.text).toContain("\tset vpn_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.8.0.0/24 }\n\t}");
        expect(rendered.text).toContain("\tset vpn_v6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t}");
        expect(rendered.text).toContain('\t\ttcp dport 80 accept comment "http"');
        expect(rendered.text).toContain('\t\tip saddr @vpn_v4 tcp dport 6443 accept comment "kube-apiserver from vpn"');
    });

    test("the header carries the sha256 of the ruleset below it", () => {
        const [header, body] = [rendered.text.slice(0, rendered.text.indexOf("\n\n") + 2), rendered.text.slice(rendered.text.indexOf("\n\n") + 2)];
        expect(header).toContain(`# sha256 ${rendered.hash}\n`);
        expect(header).toContain("# zerotouch host firewall of node cp-1 (control-plane)");
        expect(createHash("sha256").update(body).digest("hex")).toEqual(rendered.hash);
    });
});

// `nft -c` needs a netlink socket even though it changes nothing: each check runs in a
// throwaway network namespace (`unshare -n`), so the host's own ruleset is never touched.
describeAsRoot("every rendered ruleset loads in nftables", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "zt-fwtest-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const cases: [string, FirewallInput][] = [
        ["control plane", input()],
        ["worker", worker()],
        ["IPv6-only control plane", input({ node: "cp-3", address: "2001:db8::13", cluster: { "cp-3": { role: "control-plane", address: "2001:db8::13" } }, vpnCidr: "fd00:8::/64", managementCidrs: ["2001:db8:ffff::/48"] })],
        ["no management ranges", input({ managementCidrs: [] })],
        ["pods and extras", input({ podCidrs: ["10.244.0.0/16"], extraRules: [{ name: "vxlan", protocol: "udp", ports: 8472, from: "cluster" }, { name: "wg", protocol: "udp", ports: [51820, 51821], from: ["192.0.2.0/25", "192.0.2.128/25"] }] })],
    ];

    test.each(cases)("%s", (_name, i) => {
        const file = path.join(dir, "ruleset.nft");
        writeFileSync(file, renderNftables(firewallRules(i)).text);
        const r = spawnSync("unshare", ["-n", "nft", "-c", "-f", file], { encoding: "utf8" });
        expect(r.stderr).toEqual("");
        expect(r.status).toBe(0);
        // Loaded for real (in the namespace), the table lists back and a second load is accepted.
        const listed = execFileSync("unshare", ["-n", "sh", "-c", `nft -f "$1" && nft -f "$1" && nft -s list table inet zerotouch`, "sh", file], { encoding: "utf8" });
        expect(listed).toContain("policy drop");
    });
});

describe("hostFirewallSteps", () => {
    test("apply, then confirm, with their parameters", () => {
        const plan = hostFirewallPlan(input());
        const [apply, confirm] = hostFirewallSteps(input());
        expect([apply.name, confirm.name]).toEqual(["apply", "confirm"]);
        expect(path.basename(apply.script)).toBe("firewall.sh");
        expect(path.basename(confirm.script)).toBe("firewall-confirm.sh");
        expect(apply.params).toEqual({ ZT_NODE: "cp-1", ZT_RULESET: plan.ruleset.text, ZT_ROLLBACK_SECONDS: 60 });
        expect(apply.hasDelete).toBe(true);
        expect(confirm.hasDelete).toBe(false);
        expect(confirm.params.ZT_RULESET_HASH).toBe(plan.ruleset.hash);
        expect([apply.sensitive, confirm.sensitive]).toEqual([false, false]);
    });

    test("confirm runs again whenever apply does", () => {
        const base = hostFirewallSteps(input())[1].params;
        expect(hostFirewallSteps(input())[1].params).toEqual(base);
        expect(hostFirewallSteps({ ...input(), rollbackSeconds: 15 })[1].params.ZT_APPLY).not.toEqual(base.ZT_APPLY);
        expect(hostFirewallSteps({ ...input(), rollbackSeconds: 15 })[1].params.ZT_RULESET_HASH).toEqual(base.ZT_RULESET_HASH);
        expect(hostFirewallSteps(input({ vpnCidr: "10.9.0.0/24" }))[1].params.ZT_RULESET_HASH).not.toEqual(base.ZT_RULESET_HASH);
    });

    test.each([0, 4, 3601, 1.5])("rejects rollbackSeconds %p", (s) => {
        expect(() => hostFirewallPlan({ ...input(), rollbackSeconds: s })).toThrow(/rollbackSeconds .* must be a whole number from 5 to 3600/);
    });
});

describe("HostFirewall under mocks", () => {
    let recorder: Recorder;
    let fw: typeof FirewallModule;
    let gate: import("@pulumi/pulumi").CustomResource;
    const target = { host: "203.0.113.11", port: 22, user: "root" };
    const instances: Record<string, FirewallModule.HostFirewall> = {};

    beforeAll(async () => {
        recorder = await installMocks();
        fw = await import("../components/firewall/hostFirewall");
        const command = await import("@pulumi/command");
        gate = new command.local.Command("gate", { create: "true" });
        const args = (extra: Partial<FirewallInput> = {}) => ({
            ...input(extra),
            target,
            connection: sshConnection(target, "TEST-PRIVATE-KEY"),
            dependsOn: gate,
        });
        instances.a = new fw.HostFirewall("fw-a", args());
        instances.b = new fw.HostFirewall("fw-b", args());
        instances.grown = new fw.HostFirewall(
            "fw-grown",
            args({ cluster: { ...input().cluster, "worker-2": { role: "worker", address: "203.0.113.22" } } }),
        );
        await resolve(instances.a.rulesetHash);
        await settle();
    });

    test("token and child names", () => {
        expect(recorder.byName("fw-a").type).toBe("zerotouch:firewall:HostFirewall");
        const children = recorder.resources.filter((r) => r.parentUrn === recorder.byName("fw-a").urn);
        expect(children.map((c) => `${c.type} ${c.name}`).sort()).toEqual([`${COMMAND} fw-a-apply`, `${COMMAND} fw-a-confirm`]);
    });

    test("apply waits for the given gate; confirm waits for apply", () => {
        expect(recorder.byName("fw-a-apply").dependencies).toContain(recorder.byName("gate").urn);
        expect(recorder.byName("fw-a-confirm").dependencies).toContain(recorder.byName("fw-a-apply").urn);
        expect(recorder.dependsOn("fw-a-apply", "fw-a-confirm")).toBe(false);
    });

    test("the connection's private key is secret", () => {
        for (const name of ["fw-a-apply", "fw-a-confirm"]) {
            expect(wireSecret(recorder.byName(name).wire, ["connection", "privateKey"])).toBe(true);
        }
    });

    test("apply deletes the firewall; confirm has no delete", () => {
        expect(recorder.byName("fw-a-apply").inputs.delete).toMatch(/ZT_ACTION=delete/);
        expect(recorder.byName("fw-a-confirm").inputs.delete).toBeUndefined();
    });

    test("triggers are stable for equal inputs and change when a node is added", () => {
        const triggers = (name: string) => recorder.byName(name).inputs.triggers as string[];
        expect(triggers("fw-b-apply")).toEqual(triggers("fw-a-apply"));
        expect(triggers("fw-b-confirm")).toEqual(triggers("fw-a-confirm"));
        expect(triggers("fw-grown-apply")).not.toEqual(triggers("fw-a-apply"));
        expect(triggers("fw-grown-confirm")).not.toEqual(triggers("fw-a-confirm"));
        // The ruleset itself travels in the payload, not in the triggers.
        expect(JSON.stringify(triggers("fw-a-apply"))).not.toContain("table inet");
    });

    test("outputs: hash, ruleset text and open ports", async () => {
        const plan = hostFirewallPlan(input());
        expect(await resolve(instances.a.rulesetHash)).toBe(plan.ruleset.hash);
        expect(await resolve(instances.a.ruleset)).toBe(plan.ruleset.text);
        expect(await resolve(instances.a.openPorts)).toEqual(plan.openPorts);
        expect(await resolve(instances.grown.rulesetHash)).not.toBe(plan.ruleset.hash);
        expect(recorder.byName("fw-a-apply").inputs.stdin).toContain(plan.ruleset.text.split("\n")[1]);
    });
});
