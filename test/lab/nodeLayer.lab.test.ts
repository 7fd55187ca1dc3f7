/**
 * The main job on the lab (`npm run lab` without the Pulumi CLI): the program's node layer run
 * end to end on every lab node, twice. The second run must change nothing. The slow-disk node is
 * refused by the fsync gate, after its firewall is in place; the etcd layer does not start.
 */
import { spawnSync } from "child_process";
import * as path from "path";

import { Lab, loadLab, REPO_ROOT, sshRun, startListeners, stopListeners, tcpProbe } from "./harness";

function runNodeLayer(): { code: number; stdout: string } {
    const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "nodeLayer.ts")], {
        cwd: REPO_ROOT,
        encoding: "utf8",
        timeout: 15 * 60 * 1000,
    });
    process.stdout.write(r.stdout);
    return { code: r.status ?? 124, stdout: r.stdout };
}

/** The lines of one node's report. */
function section(stdout: string, node: string): string {
    const start = stdout.indexOf(`\n${node} (`);
    const end = stdout.indexOf("\n\n", start + 1);
    return stdout.slice(start, end < 0 ? undefined : end);
}

let lab: Lab;
beforeAll(() => {
    lab = loadLab();
});

/** Ports that matter on a node, TCP (8472/udp is not probed by TCP). */
const PROBED = [22, 80, 443, 2379, 2380, 6443, 10250] as const;

test("runs every node's phases in order, firewall before the gate; the slow-disk node is refused yet locked down; no etcd member while a control-plane node is refused; a second run changes nothing", () => {
    const first = runNodeLayer();
    expect(first.code).toBe(0);
    for (const node of lab.nodes) {
        const text = section(first.stdout, node.name);
        expect(text).toMatch(/connect +ok/);
        expect(text).toMatch(/preflight +ok .*systemd-nspawn/);
        // The latency figures of the lab's GitLab host and probe target, under the lab's threshold.
        expect(text).toMatch(/latency to gitlab 10\.213\.200\.10:7080: median \d+\.\d{3} ms, worst \d+\.\d{3} ms \(5\/5\), threshold 20 ms\n/);
        expect(text).toMatch(/latency to probe 10\.213\.200\.10:7081: median \d+\.\d{3} ms, worst \d+\.\d{3} ms \(5\/5\), threshold 20 ms\n/);
        // Locked down before it is judged: every node's firewall is confirmed, the refused one's too.
        expect(text).toMatch(/firewall confirm +ok .*confirmed true/);
        expect(text.indexOf("firewall confirm")).toBeLessThan(text.indexOf("fsync gate"));
        expect(sshRun(lab, node, "nft list table inet zerotouch").code).toBe(0);
        if (node.slowDisk) {
            expect(text).toMatch(new RegExp(`fsync gate +FAILED[\\s\\S]*fsync gate failed on node ${node.name}: fio measured an fdatasync p99 of \\d+\\.\\d\\d ms`));
        } else {
            expect(text).toMatch(/fsync gate +ok .*fio fdatasync p99 \d+\.\d\d ms/);
        }
    }
    const slow = lab.nodes.filter((n) => n.slowDisk);
    expect(first.stdout).toContain(`${lab.nodes.length - slow.length} of ${lab.nodes.length} nodes ready`);
    // No cluster smaller than asked: with a control-plane node refused, no member at all.
    expect(first.stdout).toMatch(/etcd: not started, no member created: \d+ of \d+ control-plane node\(s\) refused/);
    for (const node of slow) {
        expect(first.stdout).toMatch(new RegExp(`\\n  ${node.name}: fsync gate: .*p99 of \\d+\\.\\d\\d ms`));
    }
    for (const node of lab.nodes.filter((n) => n.role === "control-plane")) {
        expect(sshRun(lab, node, "systemctl is-active etcd.service").stdout.trim()).not.toBe("active");
        expect(sshRun(lab, node, "test -e /etc/systemd/system/etcd.service").code).not.toBe(0);
    }

    // From outside the VPN only 80 and 443 answer, on every node, the refused one included; from
    // the VPN also SSH and the API server. Listeners make a port that the firewall lets through answer.
    const matrix: string[] = [`${"node".padEnd(14)} ${"from".padEnd(9)} ${PROBED.map((p) => String(p).padStart(6)).join("")}`];
    try {
        for (const node of lab.nodes) {
            startListeners(lab, node, PROBED.filter((p) => p !== 22));
        }
        for (const node of lab.nodes) {
            for (const from of ["internet", "vpn"] as const) {
                const open = PROBED.filter((p) => tcpProbe(from, lab, node.address, p));
                matrix.push(`${node.name.padEnd(14)} ${from.padEnd(9)} ${PROBED.map((p) => (open.includes(p) ? "open" : "-").padStart(6)).join("")}`);
                const expected = from === "internet" ? [80, 443] : [22, 80, 443, 6443];
                expect({ node: node.name, from, open }).toEqual({ node: node.name, from, open: expected });
            }
        }
    } finally {
        lab.nodes.forEach((n) => stopListeners(lab, n));
        console.log(`probe matrix after the node layer (open = a connection was accepted):\n${matrix.join("\n")}`);
    }

    const second = runNodeLayer();
    expect(second.code).toBe(0);
    for (const node of lab.nodes) {
        const text = section(second.stdout, node.name);
        expect(text).toMatch(/firewall apply +ok .*changed false, rollbackArmed false/);
        expect(text).toMatch(/firewall confirm +ok .*changed false, confirmed true/);
    }
});
