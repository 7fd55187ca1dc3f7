/**
 * HostFirewall on the lab: real Debian nodes with systemd and sshd, reached over SSH from the
 * host (the management address), with a VPN client and an internet client on the lab bridge.
 *
 * Runs the very steps the component runs (`hostFirewallSteps`), in the same order, and checks
 * the resulting reachability from every source, idempotency, the lockout rollback and delete.
 */
import { createHash } from "crypto";
import * as path from "path";

import { hostFirewallSteps, HostFirewallSpec } from "../../components/firewall/hostFirewall";
import type { FirewallNode } from "../../components/firewall/rules";
import type { NodeStep } from "../../components/lib/nodeScript";
import { lastJsonLine, ScriptAction } from "../../components/lib/script";
import { LISTENER } from "./harness";

// --- the lab harness (test/lab/harness.ts), as documented --------------------------------------
// Loaded by path so that this file type-checks before the harness lands; only what is used here
// is typed, and results are read tolerantly (exit code as `code`, `exitCode` or `status`).

type MaybePromise<T> = T | Promise<T>;
interface LabNode {
    readonly name: string;
    readonly role: "control-plane" | "worker";
    readonly address: string;
}
interface Lab {
    readonly nodes: readonly LabNode[];
    readonly vpnCidr: string;
    readonly managementCidr: string;
}
interface RunResult {
    readonly code?: number | null;
    readonly exitCode?: number | null;
    readonly status?: number | null;
    readonly stdout?: string;
    readonly stderr?: string;
}
interface Harness {
    loadLab(): MaybePromise<Lab>;
    runStep(lab: Lab, node: string, step: NodeStep, action?: ScriptAction): MaybePromise<RunResult>;
    sshRun(lab: Lab, node: string, command: string): MaybePromise<RunResult>;
    tcpProbe(from: string, lab: Lab, address: string, port: number): MaybePromise<boolean>;
}

interface Outcome {
    readonly ok: boolean;
    readonly stdout: string;
    readonly stderr: string;
    readonly json?: Record<string, unknown>;
}

function outcome(r: RunResult | undefined, error?: unknown): Outcome {
    if (error !== undefined) {
        const e = error as RunResult & { message?: string };
        return { ok: false, stdout: e.stdout ?? "", stderr: `${e.stderr ?? ""}${e.message ?? ""}` };
    }
    const code = r?.code ?? r?.exitCode ?? r?.status ?? 0;
    return { ok: code === 0, stdout: r?.stdout ?? "", stderr: r?.stderr ?? "" };
}

const PORTS = [22, 80, 443, 2379, 6443, 10250] as const;
const ROLLBACK_SECONDS = 15;
const LISTENER_UNIT = "zt-fwtest-listen";


jest.setTimeout(600_000);

describe("HostFirewall on the lab", () => {
    let h: Harness;
    let lab: Lab;
    let nodes: readonly LabNode[];

    const ssh = async (node: string, command: string): Promise<Outcome> => {
        try {
            const r = await h.sshRun(lab, node, command);
            return outcome(r);
        } catch (e) {
            return outcome(undefined, e);
        }
    };

    const step = async (node: string, s: NodeStep, action: ScriptAction = "create"): Promise<Outcome> => {
        let o: Outcome;
        try {
            o = outcome(await h.runStep(lab, node, s, action));
        } catch (e) {
            o = outcome(undefined, e);
        }
        if (o.ok) {
            return { ...o, json: lastJsonLine(o.stdout, `${node} ${s.name} ${action}`) as Record<string, unknown> };
        }
        return o;
    };

    function spec(node: LabNode, overrides: Partial<HostFirewallSpec> = {}): HostFirewallSpec {
        const cluster: Record<string, FirewallNode> = {};
        for (const n of nodes) {
            cluster[n.name] = { role: n.role, address: n.address };
        }
        return {
            node: node.name,
            role: node.role,
            address: node.address,
            cluster,
            vpnCidr: lab.vpnCidr,
            managementCidrs: [lab.managementCidr],
            rollbackSeconds: ROLLBACK_SECONDS,
            ...overrides,
        };
    }

    /** Applies (apply, then confirm) on every node; returns each step's result per node. */
    async function applyAll(overrides: Partial<HostFirewallSpec> = {}) {
        const out: Record<string, { apply: Outcome; confirm: Outcome }> = {};
        for (const n of nodes) {
            const [apply, confirm] = hostFirewallSteps(spec(n, overrides));
            const a = await step(n.name, apply);
            const c = a.ok ? await step(n.name, confirm) : { ok: false, stdout: "", stderr: "apply failed" };
            out[n.name] = { apply: a, confirm: c };
        }
        return out;
    }

    type Matrix = Record<string, Record<string, Record<number, boolean>>>; // source → node → port

    /** Who reaches which port of which node: from the two clients (tcpProbe) and from every node (nc). */
    async function probeMatrix(): Promise<Matrix> {
        const m: Matrix = {};
        for (const from of ["internet", "vpn"]) {
            m[from] = {};
            await Promise.all(
                nodes.flatMap((n) =>
                    PORTS.map(async (port) => {
                        m[from][n.name] ??= {};
                        m[from][n.name][port] = await h.tcpProbe(from, lab, n.address, port);
                    }),
                ),
            );
        }
        for (const src of nodes) {
            const targets = nodes.filter((n) => n.name !== src.name);
            const script = targets
                .flatMap((n) => PORTS.map((p) => `(nc -z -w 2 ${n.address} ${p} && echo "${n.name} ${p} open" || echo "${n.name} ${p} closed") &`))
                .concat(["wait"])
                .join("\n");
            const r = await ssh(src.name, script);
            expect(r.ok).toBe(true);
            m[src.name] = {};
            for (const line of r.stdout.split("\n")) {
                const [name, port, state] = line.trim().split(" ");
                if (state !== undefined) {
                    (m[src.name][name] ??= {})[Number(port)] = state === "open";
                }
            }
        }
        return m;
    }

    function printMatrix(title: string, m: Matrix): void {
        const lines = [title, ["source".padEnd(14), "node".padEnd(14), ...PORTS.map((p) => String(p).padStart(6))].join(" ")];
        for (const [from, byNode] of Object.entries(m)) {
            for (const n of nodes) {
                if (byNode[n.name] === undefined) {
                    continue;
                }
                lines.push([from.padEnd(14), n.name.padEnd(14), ...PORTS.map((p) => (byNode[n.name][p] ? "open" : "-").padStart(6))].join(" "));
            }
        }
        console.log(lines.join("\n"));
    }

    /** The ports that should answer from `from` on `to`. */
    function expected(from: string, to: LabNode): number[] {
        if (from === "internet") {
            return [80, 443];
        }
        if (from === "vpn") {
            return [22, 80, 443, 6443];
        }
        const src = nodes.find((n) => n.name === from)!;
        return [80, 443, 6443, 10250, ...(src.role === "control-plane" && to.role === "control-plane" ? [2379] : [])].sort((a, b) => a - b);
    }

    const openPorts = (m: Matrix, from: string, to: string) =>
        PORTS.filter((p) => m[from][to][p]).map(Number);

    beforeAll(async () => {
        h = (await import(path.join(__dirname, "harness"))) as Harness;
        lab = await h.loadLab();
        nodes = [...lab.nodes].sort((a, b) => a.name.localeCompare(b.name));
        const script = Buffer.from(LISTENER).toString("base64");
        for (const n of nodes) {
            // Nothing of an earlier run may remain: take the firewall over (whatever applied it
            // last), remove it, and start a fresh listener.
            const [apply] = hostFirewallSteps(spec(n));
            await step(n.name, apply);
            await step(n.name, apply, "delete");
            const r = await ssh(
                n.name,
                [
                    `systemctl stop ${LISTENER_UNIT} 2>/dev/null || true`,
                    `echo ${script} | base64 -d >/run/${LISTENER_UNIT}.py`,
                    `systemd-run --quiet --collect --unit=${LISTENER_UNIT} python3 /run/${LISTENER_UNIT}.py ${n.address} ${PORTS.filter((p) => p !== 22).join(" ")}`,
                    // Bounded wait until the listener is up.
                    `timeout 10 sh -c 'until ss -ltnH "sport = :80" | grep -q .; do sleep 0.2; done'`,
                ].join(" && "),
            );
            expect(r).toMatchObject({ ok: true });
        }
    });

    afterAll(async () => {
        if (!h || !lab) {
            return;
        }
        for (const n of nodes) {
            const [apply] = hostFirewallSteps(spec(n));
            await step(n.name, apply, "delete");
            await ssh(n.name, `systemctl stop ${LISTENER_UNIT} 2>/dev/null; rm -f /run/${LISTENER_UNIT}.py`);
        }
    });

    test("without the firewall every port answers from everywhere", async () => {
        const m = await probeMatrix();
        printMatrix("probe matrix without the firewall", m);
        for (const n of nodes) {
            expect(openPorts(m, "vpn", n.name)).toEqual([...PORTS]);
        }
    });

    test("apply and confirm on every node; the probe matrix matches the policy", async () => {
        const results = await applyAll();
        for (const n of nodes) {
            expect(results[n.name].apply.json).toMatchObject({ node: n.name, changed: true, rollbackArmed: true, rollbackSeconds: ROLLBACK_SECONDS });
            expect(results[n.name].confirm.json).toMatchObject({ node: n.name, confirmed: true, changed: true });
            const timer = await ssh(n.name, "systemctl is-active zerotouch-firewall-rollback.timer");
            expect(timer.ok).toBe(false); // confirmed: no timer left
            expect((await ssh(n.name, "systemctl is-enabled zerotouch-firewall.service")).stdout.trim()).toBe("enabled");
        }
        const m = await probeMatrix();
        printMatrix("probe matrix with the firewall (open = answers)", m);
        for (const from of Object.keys(m)) {
            for (const n of nodes) {
                if (m[from][n.name] !== undefined) {
                    expect({ from, to: n.name, open: openPorts(m, from, n.name) }).toEqual({ from, to: n.name, open: expected(from, n) });
                }
            }
        }
    });

    test("applying twice changes nothing: changed:false and no timer armed", async () => {
        const before = await Promise.all(nodes.map((n) => ssh(n.name, "nft -s list table inet zerotouch")));
        const results = await applyAll();
        for (const [i, n] of nodes.entries()) {
            expect(results[n.name].apply.json).toMatchObject({ changed: false, rollbackArmed: false });
            expect(results[n.name].confirm.json).toMatchObject({ confirmed: true, changed: false });
            expect((await ssh(n.name, "systemctl is-active zerotouch-firewall-rollback.timer")).ok).toBe(false);
            expect((await ssh(n.name, "nft -s list table inet zerotouch")).stdout).toBe(before[i].stdout);
        }
    });

    test("a ruleset that cuts SSH is rolled back within the bound; its confirm fails; SSH works again", async () => {
        const node = nodes[0];
        const confirmed = (await ssh(node.name, "nft -s list table inet zerotouch")).stdout;
        // A management range that excludes the host this test connects from.
        const [cut, cutConfirm] = hostFirewallSteps(spec(node, { managementCidrs: ["192.0.2.0/24"] }));
        const started = Date.now();
        const a = await step(node.name, cut);
        expect(a.json).toMatchObject({ changed: true, rollbackArmed: true, rollbackSeconds: ROLLBACK_SECONDS });
        const c = await step(node.name, cutConfirm);
        console.log(`confirm of the SSH-cutting ruleset: ok=${c.ok}; ${c.stderr.trim().split("\n").slice(-2).join(" | ")}`);
        expect(c.ok).toBe(false);
        // Bounded wait for SSH to come back (tried at least once, however long the confirm took).
        let back: number | undefined;
        do {
            if ((await ssh(node.name, "true")).ok) {
                back = (Date.now() - started) / 1000;
                break;
            }
            await new Promise((r) => setTimeout(r, 500));
        } while (Date.now() - started < (ROLLBACK_SECONDS + 60) * 1000);
        console.log(`SSH to ${node.name} works again ${back ?? "never"}s after the apply (rollback bound ${ROLLBACK_SECONDS}s)`);
        expect(back).toBeDefined();
        // When the rollback ran, by the node's journal (the node shares the host's clock).
        const journal = await ssh(
            node.name,
            `journalctl -u zerotouch-firewall-rollback.service --since @${Math.floor(started / 1000)} -o short-unix --no-pager -q | head -n 1`,
        );
        const firedAt = Number(journal.stdout.trim().split(" ")[0]);
        console.log(`rollback unit ran ${(firedAt - started / 1000).toFixed(1)}s after the apply`);
        expect(firedAt - started / 1000).toBeLessThanOrEqual(ROLLBACK_SECONDS + 5);
        expect((await ssh(node.name, "nft -s list table inet zerotouch")).stdout).toBe(confirmed);
        // The persistent ruleset is still the confirmed one.
        const [apply, confirm] = hostFirewallSteps(spec(node));
        const persisted = await ssh(node.name, "sha256sum </etc/zerotouch/firewall.nft");
        expect(persisted.stdout.split(" ")[0]).toBe(createHash("sha256").update(String(apply.params.ZT_RULESET)).digest("hex"));
        // The confirmed ruleset is back: applying it is a no-op again.
        expect((await step(node.name, apply)).json).toMatchObject({ changed: false, rollbackArmed: false });
        expect((await step(node.name, confirm)).json).toMatchObject({ confirmed: true, changed: false });
    });

    test("delete restores the node: table and unit gone; a second delete exits 0", async () => {
        for (const n of nodes) {
            const [apply, confirm] = hostFirewallSteps(spec(n));
            const d = await step(n.name, apply, "delete");
            expect(d.json).toEqual({ node: n.name, action: "delete", changed: true });
            expect((await ssh(n.name, "nft list table inet zerotouch")).ok).toBe(false);
            expect((await ssh(n.name, "test -e /etc/systemd/system/zerotouch-firewall.service || test -e /etc/zerotouch/firewall.nft || systemctl is-enabled zerotouch-firewall.service")).ok).toBe(false);
            const again = await step(n.name, apply, "delete");
            expect(again.json).toEqual({ node: n.name, action: "delete", changed: false });
            expect((await step(n.name, confirm, "delete")).ok).toBe(true);
        }
        const m = await probeMatrix();
        for (const n of nodes) {
            expect(openPorts(m, "internet", n.name)).toEqual([...PORTS]);
        }
    });
});
