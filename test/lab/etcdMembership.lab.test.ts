/**
 * etcd membership changes on the lab, through the member step (`etcdMemberStep`) as Pulumi runs
 * it, with a write loop running the whole time: not one write may fail (a put caught in a
 * leadership hand-over is sent once more, as etcd clients do; see WriteLoop).
 *
 * - five delete and re-create cycles in a row (the first one deletes the leader);
 * - the control plane scaled 3 → 5 → 3 (members added one at a time in the program's order,
 *   removed last-first as the engine deletes a chain);
 * - a control-plane node replaced by a node with another name in one update: the engine creates
 *   what is new before it deletes what left the program (deletes run at the end of an update),
 *   so the new member joins (3 → 4) before the old one leaves (4 → 3); quorum is never at risk.
 *
 * A member leaves through the members that stay, and its removal counts only once their member
 * list no longer holds it. Needs five control-plane nodes (`LAB_CONTROL_PLANES=5`, as
 * `npm run test:lab` starts the lab).
 */
import { mkdtempSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";

import { clientUrl, EtcdMemberPem, parseEtcdMemberResult } from "../../components/etcd/member";
import { lastJsonLine } from "../../components/lib/script";
import { makeEtcdPem } from "../support/etcdCerts";
import { etcdctl, expectOk, LabEtcd, ssh, wipeEtcd, WriteLoop } from "./etcdLab";
import { Lab, LabNode, loadLab, nodesByRole } from "./harness";

interface DeleteResult {
    removedFromCluster: boolean;
    dataKept: string | null;
}

describe("etcd membership changes under a write loop", () => {
    let lab: Lab;
    let cps: LabNode[];
    let etcd: LabEtcd;
    let loop: WriteLoop | undefined;
    let certDir: string;
    /** The members as the test has made them, in order. */
    const current: string[] = [];
    const history: string[] = [];

    const node = (name: string): LabNode => cps.find((n) => n.name === name)!;
    const endpoints = (names: readonly string[]): string[] => names.map((n) => clientUrl(node(n).address));
    /** Names in the cluster's member list, read through a member that stays (the first one). */
    const memberNames = (): string[] =>
        etcdctl(lab, node(current[0]), "member list", endpoints(current).join(","))
            .trim()
            .split("\n")
            .map((l) => l.split(", ")[2])
            .sort();
    const healthyCount = (): number =>
        (etcdctl(lab, node(current[0]), "endpoint health --cluster 2>&1 || true").match(/ is healthy/g) ?? []).length;
    const quorum = (n: number): number => Math.floor(n / 2) + 1;
    const note = (what: string): void => {
        const n = current.length;
        const healthy = healthyCount();
        const line = `${what}: ${n} member(s) (${current.join(", ")}), quorum ${quorum(n)}, ${healthy} healthy`;
        history.push(line);
        console.log(line);
        expect({ what, healthy }).toEqual({ what, healthy: n });
    };

    /** A member joins, as its step's create; clients come to it once it settled. */
    const add = (name: string): void => {
        const n = node(name);
        const r = etcd.run(n, etcd.step(n));
        expectOk(n, r);
        current.push(name);
        expect(parseEtcdMemberResult(r.stdout)).toMatchObject({ node: name, state: "joined", healthy: true, members: current.length });
        expect(memberNames()).toEqual([...current].sort());
        // A member that has just started is given a few seconds before clients come to it: etcd
        // 3.4 may answer gRPC on a fresh TLS listener as plain HTTP while it settles.
        ssh(lab, n, "sleep 5");
        loop!.setEndpoints(endpoints(current));
        note(`+${name}`);
    };

    /** A member leaves, as its step's delete: clients leave it first. */
    const remove = (name: string): string => {
        const n = node(name);
        const staying = current.filter((c) => c !== name);
        loop!.setEndpoints(endpoints(staying));
        const r = etcd.delete(n);
        expectOk(n, r);
        const result = lastJsonLine(r.stdout, "etcd member delete") as DeleteResult;
        expect({ name, removed: result.removedFromCluster, log: r.stderr.match(/.*(failed|error).*/gi) ?? [] }).toEqual({ name, removed: true, log: [] });
        expect(result.dataKept).toMatch(/\/member\.removed-/);
        // Removed through the members that stay, never through itself.
        expect(r.stderr).toMatch(new RegExp(`removing member [0-9a-f]+ through the members that stay \\((${endpoints(staying).map((e) => e.replace(/[.]/g, "\\.")).join("|")})`));
        current.splice(current.indexOf(name), 1);
        expect(memberNames()).toEqual([...current].sort());
        note(`-${name}`);
        return r.stderr;
    };

    beforeAll(() => {
        lab = loadLab();
        cps = nodesByRole(lab, "control-plane");
        if (cps.length < 5) {
            throw new Error(`the membership tests need five control-plane nodes; the lab has ${cps.length} (start it with LAB_CONTROL_PLANES=5, as npm run test:lab does)`);
        }
        certDir = mkdtempSync(path.join(os.tmpdir(), "zt-lab-etcd-members-"));
        const pem: Record<string, EtcdMemberPem> = makeEtcdPem(certDir, cps.map((m) => ({ name: m.name, address: m.address }))).pem;
        cps.forEach((n) => wipeEtcd(lab, n));
        etcd = new LabEtcd(lab, pem, cps[0]);
        // The cluster the changes start from: cp-1 forms it, cp-2 and cp-3 join.
        const first = cps[0];
        expectOk(first, etcd.run(first, etcd.step(first)));
        current.push(first.name);
        for (const n of cps.slice(1, 3)) {
            expectOk(n, etcd.run(n, etcd.step(n)));
            current.push(n.name);
        }
        ssh(lab, first, "sleep 5");
        expect(memberNames()).toEqual([...current].sort());
        // One loop for the whole file, on the member that never leaves.
        loop = new WriteLoop(lab, first, "/lab/members/");
        loop.start(endpoints(current), 1800);
        note("start");
    }, 600_000);

    afterAll(() => {
        if (loop !== undefined) {
            try {
                loop.stop();
            } catch {
                // the node may be gone; wiping below is what matters
            }
        }
        if (cps !== undefined) {
            cps.forEach((n) => wipeEtcd(lab, n));
        }
        if (certDir !== undefined) {
            rmSync(certDir, { recursive: true, force: true });
        }
        console.log(`membership history:\n  ${history.join("\n  ")}`);
    });

    test("five delete and re-create cycles in a row, the first one deleting the leader", () => {
        const [, cp2, cp3] = cps;
        // The leader is the member that leaves first: its step hands leadership on before leaving.
        const cp2Id = etcdctl(lab, cps[0], "member list").split("\n").find((l) => l.includes(`, ${cp2.name}, `))!.split(", ")[0];
        etcdctl(lab, cps[0], `move-leader ${cp2Id}`, endpoints(current).join(","));
        expect(etcdctl(lab, cp2, "endpoint status").split(", ")[4]).toBe("true");
        for (let cycle = 1; cycle <= 5; cycle++) {
            const n = cycle % 2 === 1 ? cp2 : cp3;
            const log = remove(n.name);
            if (cycle === 1) {
                expect(log).toMatch(/moving leadership to member [0-9a-f]+ before leaving/);
            }
            add(n.name);
        }
        const { failed, errors } = loop!.count();
        expect({ failed, errors }).toEqual({ failed: 0, errors: "" });
    }, 1_200_000);

    test("the control plane scales 3 → 5 → 3, one member at a time", () => {
        add(cps[3].name);
        add(cps[4].name);
        expect(memberNames()).toHaveLength(5);
        // The engine deletes a chain last-first: the member added last leaves first.
        remove(cps[4].name);
        remove(cps[3].name);
        expect(memberNames()).toEqual(cps.slice(0, 3).map((n) => n.name).sort());
        const { failed, errors } = loop!.count();
        expect({ failed, errors }).toEqual({ failed: 0, errors: "" });
    }, 1_200_000);

    test("a node replaced by a node with another name: the new member joins before the old one leaves", () => {
        const [, cp2, , cp4] = cps;
        // One update's worth of steps in the engine's order: creates (the new node's chain, its
        // member) first, deletes of what left the program at the end.
        add(cp4.name);
        expect(current).toHaveLength(4);
        remove(cp2.name);
        expect(memberNames()).toEqual([cps[0], cps[2], cp4].map((n) => n.name).sort());
        // At no step did the cluster have fewer healthy members than its quorum.
        for (const line of history) {
            const [, n, q, h] = line.match(/(\d+) member\(s\).*quorum (\d+), (\d+) healthy/)!.map(Number);
            expect(h).toBeGreaterThanOrEqual(q);
            expect(h).toBe(n);
        }
    }, 600_000);

    test("the write loop saw no failed write through all of it, and every write is there", () => {
        const { ok, failed, retried, errors, retries } = loop!.stop();
        console.log(`write loop over all membership changes: ${ok} writes succeeded (${retried} after one retry), ${failed} failed${retries ? `\n${retries}` : ""}`);
        expect({ failed, errors }).toEqual({ failed: 0, errors: "" });
        expect(ok).toBeGreaterThan(100);
        expect(etcdctl(lab, cps[0], "get /lab/members/ --prefix --keys-only | grep -c .").trim()).toBe(String(ok));
    }, 300_000);
});
