/**
 * The exposure check (components/firewall/verify-exposure.ts) for real on the lab: the program's
 * host firewall on every node, then the check run as the pipeline runs it, with nmap, from the
 * lab's internet namespace, its VPN namespace and the host (the management address), against
 * every node. Then one node's firewall is removed (`nft flush ruleset` on it) and the check
 * must fail naming that node and the ports that now answer.
 *
 * The outputs file carries what the lab's nodes and firewalls were given, in the shape of the
 * stack's `platform` output. Each run's nmap XML is kept under .lab/exposure/ (the committed
 * fixtures in test/fixtures/firewall/nmap-*.xml were captured there).
 */
import { execFileSync } from "child_process";
import { mkdirSync, writeFileSync } from "fs";
import * as path from "path";

import { Lab, LabNode, loadLab, netnsRun, REPO_ROOT, RunResult, sshRun, startListeners, stopListeners } from "./harness";
import { labFirewall } from "./labFirewall";

const CLI = path.join(REPO_ROOT, "components", "firewall", "verify-exposure.ts");
const TS_NODE = path.join(REPO_ROOT, "node_modules", "ts-node", "dist", "bin.js");
const OUT_DIR = path.join(REPO_ROOT, ".lab", "exposure");
/** Ports a listener is started on; with sshd's 22 the ports that are open when reached (the rest is closed: nothing listening). */
const LISTENING = [80, 443, 2379, 6443];
const OPEN = [22, ...LISTENING];
const ALL = ["22/tcp", "80/tcp", "443/tcp", "2379/tcp", "2380/tcp", "6443/tcp", "10250/tcp", "8472/udp"];

jest.setTimeout(900_000);

describe("the exposure check on the lab", () => {
    let lab: Lab;
    let nodes: LabNode[];
    let outputs: string;


    /** Runs the check as the pipeline does, from a lab namespace or (netns undefined) from the host. */
    function check(netns: string | undefined, from: string, name: string): RunResult & { table: string } {
        const argv = [TS_NODE, "--transpile-only", CLI, "--outputs", outputs, "--from", from, "--xml-out", path.join(OUT_DIR, `${name}.xml`)];
        const r: RunResult =
            netns !== undefined
                ? netnsRun(netns, [process.execPath, ...argv], 300)
                : (() => {
                      try {
                          const stdout = execFileSync(process.execPath, argv, { encoding: "utf8", timeout: 300_000, stdio: ["ignore", "pipe", "pipe"] });
                          return { code: 0, stdout, stderr: "", seconds: 0 };
                      } catch (e) {
                          const err = e as { status?: number; stdout?: string; stderr?: string };
                          return { code: err.status ?? 1, stdout: err.stdout ?? "", stderr: err.stderr ?? "", seconds: 0 };
                      }
                  })();
        console.log(`verify-exposure --from ${from} (${netns ?? "host"}): exit ${r.code}\n${r.stdout}${r.stderr}`);
        return { ...r, table: r.stdout };
    }

    /** The table's rows: node → port → [expected, observed, verdict]. */
    function rows(table: string): Record<string, Record<string, { expected: string; observed: string; verdict: string }>> {
        const out: Record<string, Record<string, { expected: string; observed: string; verdict: string }>> = {};
        for (const line of table.split("\n").slice(2).filter((l) => l !== "")) {
            const m = /^(\S+)\s+(\S+)\s+(\d+\/(?:tcp|udp))\s+(dropped|may answer \([^)]*\))\s+(\S+(?: \([^)]*\))?)\s+(ok|EXPOSED)$/.exec(line);
            expect(m).not.toBeNull();
            (out[m![1]] ??= {})[m![3]] = { expected: m![4], observed: m![5].split(" ")[0], verdict: m![6] };
        }
        return out;
    }

    /** Every node: the allowed ports answer, every other port is silent (filtered), and the verdict is ok. */
    function expectOnly(table: string, allowed: readonly string[]): void {
        const got = rows(table);
        expect(Object.keys(got).sort()).toEqual(nodes.map((n) => n.name));
        for (const n of nodes) {
            expect(Object.keys(got[n.name])).toEqual(ALL);
            for (const port of ALL) {
                const row = got[n.name][port];
                const open = OPEN.includes(Number(port.split("/")[0]));
                const want = allowed.includes(port)
                    ? { expected: expect.stringMatching(/^may answer/), observed: open ? "open" : "closed", verdict: "ok" }
                    : { expected: "dropped", observed: port.endsWith("/udp") ? "open|filtered" : "filtered", verdict: "ok" };
                expect({ node: n.name, port, ...row }).toEqual({ node: n.name, port, ...want });
            }
        }
    }

    beforeAll(() => {
        execFileSync("bash", [path.join(REPO_ROOT, "test", "support", "host-tools.sh"), "ensure", "nmap"], { stdio: "inherit", timeout: 1_200_000 });
        lab = loadLab();
        nodes = [...lab.nodes].sort((a, b) => a.name.localeCompare(b.name));
        mkdirSync(OUT_DIR, { recursive: true });
        outputs = path.join(OUT_DIR, "outputs.json");
        // What `pulumi stack output platform --json` holds of the nodes and their firewalls.
        const platform = {
            nodes: Object.fromEntries(nodes.map((n) => [n.name, { host: n.address, role: n.role }])),
            vpnCidr: lab.vpnCidr,
            managementCidrs: [lab.managementCidr],
            firewall: { podCidrs: [], extraRules: [] },
        };
        writeFileSync(outputs, JSON.stringify({ platform }, null, 2));
        labFirewall(lab, "create");
        for (const n of nodes) {
            startListeners(lab, n, LISTENING);
        }
    });

    afterAll(() => {
        if (lab === undefined) {
            return;
        }
        for (const n of nodes) {
            stopListeners(lab, n);
        }
        labFirewall(lab, "delete");
    });

    test("from the internet namespace only 80 and 443 answer, on every node", () => {
        const r = check(lab.clients.internet.netns, "internet", "nmap-internet");
        expect(r.code).toBe(0);
        expectOnly(r.table, ["80/tcp", "443/tcp"]);
    });

    test("from the VPN namespace (given by its address) SSH and the API server answer too", () => {
        const r = check(lab.clients.vpn.netns, lab.clients.vpn.address, "nmap-vpn");
        expect(r.code).toBe(0);
        expectOnly(r.table, ["22/tcp", "80/tcp", "443/tcp", "6443/tcp"]);
    });

    test("from the host (the management address) SSH answers too", () => {
        const r = check(undefined, "management", "nmap-management");
        expect(r.code).toBe(0);
        expectOnly(r.table, ["22/tcp", "80/tcp", "443/tcp"]);
    });

    test("a node whose firewall is removed fails the check, naming the node and the ports", () => {
        const victim = nodes[nodes.length - 1];
        const flushed = sshRun(lab, victim, "nft flush ruleset && nft list ruleset | wc -l");
        expect({ code: flushed.code, lines: flushed.stdout.trim() }).toEqual({ code: 0, lines: "0" });

        const fromInternet = check(lab.clients.internet.netns, "internet", "nmap-internet-one-node-open");
        expect(fromInternet.code).toBe(1);
        const dropped = ["22/tcp", "2379/tcp", "2380/tcp", "6443/tcp", "10250/tcp", "8472/udp"];
        expect(fromInternet.stderr.trim().split("\n")).toEqual([
            `exposure: node ${victim.name} (${victim.address}): ${dropped.join(", ")} answer from internet, where its firewall should drop them`,
        ]);
        const got = rows(fromInternet.table);
        for (const port of dropped) {
            expect(got[victim.name][port]).toEqual({ expected: "dropped", observed: OPEN.includes(Number(port.split("/")[0])) ? "open" : "closed", verdict: "EXPOSED" });
        }

        const fromVpn = check(lab.clients.vpn.netns, "vpn", "nmap-vpn-one-node-open");
        expect(fromVpn.code).toBe(1);
        expect(fromVpn.stderr.trim().split("\n")).toEqual([
            `exposure: node ${victim.name} (${victim.address}): 2379/tcp, 2380/tcp, 10250/tcp, 8472/udp answer from vpn, where its firewall should drop them`,
        ]);
    });
});
