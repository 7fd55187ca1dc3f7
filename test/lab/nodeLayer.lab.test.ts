/**
 * The main job on the lab (`npm run lab` without the Pulumi CLI): the program's node layer run
 * end to end on every lab node, twice. The second run must change nothing.
 */
import { spawnSync } from "child_process";
import * as path from "path";

import { Lab, loadLab, REPO_ROOT, sshRun } from "./harness";

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

test("runs every node's phases in order; the slow-disk node is refused, the others are ready; a second run changes nothing", () => {
    const first = runNodeLayer();
    expect(first.code).toBe(0);
    for (const node of lab.nodes) {
        const text = section(first.stdout, node.name);
        expect(text).toMatch(/connect +ok/);
        expect(text).toMatch(/preflight +ok .*systemd-nspawn/);
        if (node.slowDisk) {
            expect(text).toMatch(new RegExp(`fsync gate +FAILED[\\s\\S]*fsync gate failed on node ${node.name}: fio measured an fdatasync p99 of \\d+\\.\\d\\d ms`));
            expect(text).not.toContain("firewall apply");
            // Nothing was installed past the gate: no firewall on the refused node.
            expect(sshRun(lab, node, "nft list table inet zerotouch").code).not.toBe(0);
        } else {
            expect(text).toMatch(/fsync gate +ok .*fio fdatasync p99 \d+\.\d\d ms/);
            expect(text).toMatch(/firewall confirm +ok .*confirmed true/);
        }
    }
    const slow = lab.nodes.filter((n) => n.slowDisk).length;
    expect(first.stdout).toContain(`${lab.nodes.length - slow} of ${lab.nodes.length} nodes ready`);

    const second = runNodeLayer();
    expect(second.code).toBe(0);
    for (const node of lab.nodes.filter((n) => !n.slowDisk)) {
        const text = section(second.stdout, node.name);
        expect(text).toMatch(/firewall apply +ok .*changed false, rollbackArmed false/);
        expect(text).toMatch(/firewall confirm +ok .*changed false, confirmed true/);
    }
});
