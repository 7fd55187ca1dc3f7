/**
 * The etcd and Kubernetes layers of the whole program under mocks: order (gates → members one by
 * one, each with its health and WAL gates → servers one by one → workers), secrecy of every key,
 * token and kubeconfig, stability of existing members when control-plane nodes are added, and
 * the Kubernetes modes.
 */
import type { Recorded, Recorder } from "./support/mocks";
import { isSecret, resolve, wireSecret } from "./support/mocks";
import { location, validRawConfig } from "./support/config";
import { paramOf } from "./support/nodeStdout";
import { runProgram } from "./support/program";
import { MOCK_KEY_MARKER, providerState } from "./support/providerState";

const COMMAND = "command:remote:Command";
const PASSWORD = "random:index/randomPassword:RandomPassword";
const CPS = ["cp-1", "cp-2", "cp-3"];

type Run = { recorder: Recorder; exports: Record<string, any> };

const member = (n: string) => `etcd-${n}-member`;
const walGate = (n: string) => `etcd-${n}-wal-gate`;
const server = (n: string) => `kubernetes-${n}-server`;

function deps(recorder: Recorder, a: string, b: string): [string, string, boolean] {
    return [a, b, recorder.dependsOn(a, b)];
}

describe("etcd and Kubernetes layers of the program", () => {
    let run: Run;

    beforeAll(async () => {
        run = await runProgram(validRawConfig(1));
    });

    test("etcd members come one at a time, each after every control-plane node's gates, with health and WAL gates between", () => {
        const { recorder } = run;
        for (const [i, n] of CPS.entries()) {
            for (const before of [`${n}-firewall-confirm`, `etcd-${n}-install`]) {
                expect(deps(recorder, member(n), before)).toEqual([member(n), before, true]);
            }
            // No member and no install before every control-plane node passed its gate: a refused
            // node means no cluster, never a smaller one.
            for (const gated of CPS) {
                const gate = `${gated}-fsync-fio`;
                expect(deps(recorder, member(n), gate)).toEqual([member(n), gate, true]);
                expect(deps(recorder, `etcd-${n}-install`, gate)).toEqual([`etcd-${n}-install`, gate, true]);
                expect(recorder.directDependencies(`etcd-${n}-install`)).toContain(gate);
            }
            expect(deps(recorder, walGate(n), member(n))).toEqual([walGate(n), member(n), true]);
            expect(deps(recorder, `etcd-${n}-snapshots`, member(n))).toEqual([`etcd-${n}-snapshots`, member(n), true]);
            if (i > 0) {
                const prev = CPS[i - 1];
                expect(deps(recorder, member(n), walGate(prev))).toEqual([member(n), walGate(prev), true]);
                expect(deps(recorder, member(prev), member(n))).toEqual([member(prev), member(n), false]);
            }
        }
        // Installs run in parallel: none waits on another member.
        for (const n of CPS) {
            for (const other of CPS.filter((o) => o !== n)) {
                expect(deps(recorder, `etcd-${n}-install`, member(other))).toEqual([`etcd-${n}-install`, member(other), false]);
            }
        }
    });

    test("no etcd step depends on a node whose gate it does not follow, nor on any worker", () => {
        const { recorder } = run;
        const nodes = [...CPS, "worker-1"];
        for (const m of recorder.ofType(COMMAND).filter((r) => r.name.startsWith("etcd-"))) {
            for (const n of nodes) {
                if (recorder.dependsOn(m.name, `${n}-connect`)) {
                    expect(deps(recorder, m.name, `${n}-fsync-fio`)).toEqual([m.name, `${n}-fsync-fio`, true]);
                }
            }
            expect(deps(recorder, m.name, "worker-1-connect")).toEqual([m.name, "worker-1-connect", false]);
        }
    });

    test("only the bootstrap member forms the cluster; the others join through it", () => {
        const stdin = (n: string) => String(run.recorder.byName(member(n)).inputs.stdin);
        expect(CPS.map((n) => paramOf(stdin(n), "ZT_BOOTSTRAP"))).toEqual(["true", "false", "false"]);
        expect(paramOf(stdin("cp-1"), "ZT_JOIN_ENDPOINT")).toBeUndefined();
        expect(paramOf(stdin("cp-2"), "ZT_JOIN_ENDPOINT")).toBe("https://203.0.113.11:2379");
        expect(paramOf(stdin("cp-2"), "ZT_PEER_URL")).toBe("https://203.0.113.12:2380");
        // The unit names no other member: the initial cluster is written at first start.
        expect(paramOf(stdin("cp-2"), "ZT_UNIT")).not.toMatch(/203\.0\.113\.1[13]/);
    });

    test("Kubernetes servers start after the whole etcd cluster, one at a time; workers after every server", () => {
        const { recorder } = run;
        expect(deps(recorder, server("cp-1"), walGate("cp-3"))).toEqual([server("cp-1"), walGate("cp-3"), true]);
        expect(deps(recorder, server("cp-2"), server("cp-1"))).toEqual([server("cp-2"), server("cp-1"), true]);
        expect(deps(recorder, server("cp-3"), server("cp-2"))).toEqual([server("cp-3"), server("cp-2"), true]);
        expect(deps(recorder, "kubernetes-worker-1-agent", server("cp-3"))).toEqual(["kubernetes-worker-1-agent", server("cp-3"), true]);
        expect(deps(recorder, "kubernetes-worker-1-agent", "worker-1-fsync-fio")).toEqual(["kubernetes-worker-1-agent", "worker-1-fsync-fio", true]);
        const stdin = String(recorder.byName(server("cp-1")).inputs.stdin);
        expect(stdin).toContain("https://203.0.113.11:2379,https://203.0.113.12:2379,https://203.0.113.13:2379");
        expect(stdin).toContain("topology.kubernetes.io/zone=osl1");
    });

    test("every private key, token and kubeconfig is secret: on the wire, in state, in the outputs", async () => {
        const { recorder, exports } = run;
        const passwords = recorder.ofType(PASSWORD).map((p) => String(providerState(PASSWORD, p.name)?.result));
        expect(passwords).toHaveLength(2);
        const carriesSecret = (c: Recorded) => {
            const stdin = String(c.inputs.stdin ?? "");
            return stdin.includes("PRIVATE KEY") || passwords.some((p) => p !== "" && stdin.includes(p));
        };
        const secretSteps = recorder.ofType(COMMAND).filter(carriesSecret);
        expect(secretSteps.map((c) => c.name).sort()).toEqual(
            [...CPS.map(member), ...CPS.map(server), "kubernetes-worker-1-agent"].sort(),
        );
        for (const c of secretSteps) {
            expect([c.name, wireSecret(c.wire, ["stdin"]), wireSecret(c.wire, ["triggers", "0"]), c.inputs.logging]).toEqual([c.name, true, true, "none"]);
        }
        for (const c of recorder.ofType(COMMAND).filter((r) => !carriesSecret(r))) {
            expect([c.name, JSON.stringify(c.inputs)]).not.toEqual([c.name, expect.stringContaining(MOCK_KEY_MARKER)]);
        }
        expect(await isSecret(exports.kubeconfig)).toBe(true);
        expect(await isSecret(exports.platform)).toBe(false);
        const platform = JSON.stringify(await resolve(exports.platform));
        expect(platform).not.toContain("PRIVATE KEY");
        for (const p of passwords) {
            expect(platform).not.toContain(p);
        }
        expect(String(await resolve(exports.kubeconfig))).toContain("server: https://203.0.113.11:6443");
    });

    test("the outputs carry the API endpoint, the etcd CA and each member's WAL fsync and backend commit p99", async () => {
        const { parsePlatformOutputs } = await import("../stacks/outputs");
        const outputs = parsePlatformOutputs(await resolve(run.exports.platform), "test");
        expect(outputs.kubernetes).toEqual({ mode: "k3s", apiEndpoint: "203.0.113.11", apiServerUrl: "https://203.0.113.11:6443" });
        expect(outputs.etcd.caCertPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
        expect(outputs.etcd.clientEndpoints).toEqual(["https://203.0.113.11:2379", "https://203.0.113.12:2379", "https://203.0.113.13:2379"]);
        expect(Object.keys(outputs.etcd.members)).toEqual(CPS);
        for (const n of CPS) {
            // test/fixtures/etcd/gate-normal.stdout: 0.99 ms WAL fsync, 6.00 ms backend commit.
            expect(outputs.etcd.members[n].walFsyncP99Ms).toBeCloseTo(0.99, 2);
            expect(outputs.etcd.members[n].backendCommitP99Ms).toBeCloseTo(6.0, 2);
            expect(outputs.etcd.members[n]).toMatchObject({ walFsyncThresholdMs: 10, backendCommitThresholdMs: 25, version: "3.4.23" });
        }
    });
});

test("the outputs hold every input of the nodes' firewalls: firewallRules() on them gives each deployed ruleset", async () => {
    const { parsePlatformOutputs } = await import("../stacks/outputs");
    const { nodePolicy } = await import("../components/firewall/exposure");
    const { renderNftables } = await import("../components/firewall/rules");
    const raw = validRawConfig(1);
    raw.firewall = { extraRules: [{ name: "nodeports", protocol: "tcp", ports: [30000, 32767], from: ["192.0.2.0/24"] }] };
    const { exports } = await runProgram(raw);
    const outputs = parsePlatformOutputs(await resolve(exports.platform), "test");
    expect(outputs.firewall).toEqual({
        podCidrs: ["10.42.0.0/16"],
        extraRules: [
            { name: "flannel-vxlan", protocol: "udp", ports: 8472, from: "cluster" },
            { name: "nodeports", protocol: "tcp", ports: [30000, 32767], from: ["192.0.2.0/24"] },
        ],
    });
    expect(Object.keys(outputs.nodes).length).toBeGreaterThan(3);
    const targets = { ...outputs, firewall: outputs.firewall! };
    for (const [name, node] of Object.entries(outputs.nodes)) {
        expect([name, renderNftables(nodePolicy(targets, name)).hash]).toEqual([name, node.firewallRulesetHash]);
    }
});

describe("adding control-plane nodes (3 → 5)", () => {
    test("changes none of the existing members' etcd resources", async () => {
        const before = await runProgram(validRawConfig(1));
        const raw = validRawConfig(1);
        raw.nodes["cp-4"] = { host: "203.0.113.14", role: "control-plane", location: location("osl2") };
        raw.nodes["cp-5"] = { host: "203.0.113.15", role: "control-plane", location: location("osl1") };
        const after = await runProgram(raw);
        const afterByName = new Map(after.recorder.resources.map((r) => [r.name, r]));
        const etcd = before.recorder.resources.filter((r) => r.name.startsWith("etcd-"));
        expect(etcd.length).toBeGreaterThan(20);
        for (const r of etcd) {
            const same = afterByName.get(r.name);
            expect([r.name, same?.type, same?.inputs]).toEqual([r.name, r.type, r.inputs]);
        }
        // The new members join after the existing ones.
        expect(after.recorder.dependsOn(member("cp-4"), walGate("cp-3"))).toBe(true);
        expect(after.recorder.dependsOn(member("cp-3"), member("cp-4"))).toBe(false);
    });
});

describe("settings", () => {
    test("etcd.bootstrapMember decides who forms the cluster and who comes next", async () => {
        const raw = validRawConfig(1);
        raw.etcd = { bootstrapMember: "cp-2" };
        const { recorder } = await runProgram(raw);
        expect(paramOf(String(recorder.byName(member("cp-2")).inputs.stdin), "ZT_BOOTSTRAP")).toBe("true");
        expect(paramOf(String(recorder.byName(member("cp-1")).inputs.stdin), "ZT_BOOTSTRAP")).toBe("false");
        expect(recorder.dependsOn(member("cp-1"), walGate("cp-2"))).toBe(true);
        expect(recorder.dependsOn(member("cp-2"), member("cp-1"))).toBe(false);
    });

    test("etcd.wipeDataOnDelete reaches the member step; it is off by default", async () => {
        const wipe = (r: Run) => CPS.map((n) => paramOf(String(r.recorder.byName(member(n)).inputs.stdin), "ZT_WIPE_DATA_ON_DELETE"));
        const raw = validRawConfig(1);
        raw.etcd = { wipeDataOnDelete: true };
        expect(wipe(await runProgram(raw))).toEqual(["true", "true", "true"]);
        expect(wipe(await runProgram(validRawConfig(1)))).toEqual(["false", "false", "false"]);
    });

    test("kubernetes.mode none: etcd only, no kubeconfig output", async () => {
        const raw = validRawConfig(1);
        raw.kubernetes = { mode: "none" };
        const { recorder, exports } = await runProgram(raw);
        expect(recorder.ofType("zerotouch:k8s:ControlPlane")).toEqual([]);
        expect(recorder.ofType(COMMAND).filter((c) => c.name.startsWith("kubernetes-"))).toEqual([]);
        expect(exports.kubeconfig).toBeUndefined();
        expect((await resolve<{ kubernetes: unknown }>(exports.platform)).kubernetes).toEqual({ mode: "none", apiEndpoint: null, apiServerUrl: null });
    });

    test("kubernetes.mode existing: nothing bootstrapped, the given kubeconfig stays secret", async () => {
        const raw = validRawConfig(1);
        const kubeconfig = [
            "apiVersion: v1",
            "kind: Config",
            "clusters: [{name: prod, cluster: {server: 'https://api.prod.example:6443'}}]",
            "users: [{name: admin, user: {token: existing-token-SECRET}}]",
            "contexts: [{name: prod, context: {cluster: prod, user: admin}}]",
            "current-context: prod",
        ].join("\n");
        raw.kubernetes = { mode: "existing" };
        raw.kubeconfig = kubeconfig;
        const { recorder, exports } = await runProgram(raw, ["sshPrivateKey", "kubeconfig"]);
        expect(recorder.ofType("zerotouch:k8s:ControlPlane")).toHaveLength(1);
        expect(recorder.ofType(COMMAND).filter((c) => c.name.startsWith("kubernetes-"))).toEqual([]);
        expect(await isSecret(exports.kubeconfig)).toBe(true);
        expect(await resolve(exports.kubeconfig)).toBe(kubeconfig);
        const platform = await resolve<{ kubernetes: unknown }>(exports.platform);
        expect(platform.kubernetes).toMatchObject({ mode: "existing", apiEndpoint: "api.prod.example" });
        expect(JSON.stringify(platform)).not.toContain("existing-token-SECRET");
    });
});
