/**
 * FsyncGate on the lab: the gate's step (`fsyncGateSteps`) run over real SSH on Debian nodes
 * whose etcd data path is an ext4 loop device; on the slow-disk node (`slowDisk: true` in
 * .lab/state.json) the writes to that device are throttled (blkio, 40 IOPS by default).
 *
 * Checks: a normal node passes and prints a real p99; a second run changes nothing; the
 * slow-disk node fails with node, p99 and threshold in the script's refusal and nothing is
 * left in its data path; delete has nothing to undo.
 * Uses the lab harness (test/lab/harness.ts); `npm run test:lab` brings the lab up.
 */
import { FsyncGateResult, fsyncGateSteps, FsyncGateStepArgs, parseFsyncGateResult } from "../../components/fsync/fsyncGate";
import type { NodeStep } from "../../components/lib/nodeScript";
import { lastJsonLine, ScriptAction } from "../../components/lib/script";
import { fsyncMessageP99Ms, fsyncRefusal } from "../support/fsyncEvaluate";
import { Lab, LabNode, loadLab, nodesByRole, runStep, RunResult, sshRun } from "./harness";

/** The product default and the step defaults (fio size 22m, bs 2300) on the normal node. */
const THRESHOLD_MS = 10;
/**
 * On the throttled node a 22m run takes about 8 minutes per run (two writes per fdatasync at
 * 40 IOPS); 4m keeps the same steady-state latency in about 90 s.
 */
const SLOW_FIO_SIZE = "4m";

describe("FsyncGate on the lab", () => {
    let lab: Lab;
    let normal: LabNode;
    let slow: LabNode;

    const step = (node: LabNode, extra: Partial<FsyncGateStepArgs> = {}): NodeStep => {
        const [only] = fsyncGateSteps({
            node: node.name,
            target: { host: node.address, port: 22, user: "root" },
            dataPath: node.etcdDataPath,
            thresholdMs: THRESHOLD_MS,
            runs: 2,
            ...extra,
        });
        return only;
    };
    const gate = (node: LabNode, s: NodeStep, action?: ScriptAction): RunResult => runStep(lab, node, s, action);
    const ssh = (node: LabNode, command: string): string => {
        const r = sshRun(lab, node, command);
        if (r.code !== 0) {
            throw new Error(`${node.name}: ${command}: exit ${r.code}: ${r.stderr}`);
        }
        return r.stdout;
    };
    /**
     * Every entry of the data path (name, mode, size, mtime), its own mode, the installed
     * packages. The listing holds the gate's lock (flock on the data path directory), so a
     * gate running at the same time (another run of the lab tests) is waited for, not seen.
     */
    const nodeState = (node: LabNode) => ({
        dataPath: ssh(
            node,
            `flock -w 600 ${node.etcdDataPath} find ${node.etcdDataPath} -mindepth 1 -printf '%P %m %s %T@\\n' | sort`,
        ),
        dataPathMode: ssh(node, `stat -c '%a %U' ${node.etcdDataPath}`),
        packages: ssh(node, "dpkg-query -W -f '${Package} ${Version}\\n' | sort | sha256sum"),
    });

    beforeAll(() => {
        lab = loadLab();
        const cps = nodesByRole(lab, "control-plane");
        const n = cps.find((x) => !x.slowDisk);
        const s = cps.find((x) => x.slowDisk);
        if (n === undefined || s === undefined) {
            throw new Error("the lab needs a control-plane node with a normal etcd disk and one with a slow one (LAB_SLOW_NODES)");
        }
        normal = n;
        slow = s;
    });

    it("passes on a normal node, with a real p99", () => {
        const r = gate(normal, step(normal));
        expect(r.stderr).toMatch(/passed: fdatasync p99 \d+\.\d\d ms \(worst of 2 runs\) <= 10 ms/);
        expect(r.code).toBe(0);
        const first: FsyncGateResult = parseFsyncGateResult(r.stdout);
        console.log(
            `${normal.name}: fdatasync p99 ${first.worstP99Ms.toFixed(3)} ms (runs: ` +
                `${first.runs.map((x) => (x.p99Ns / 1e6).toFixed(3)).join(", ")} ms) on ${first.path} ` +
                `(${first.device.source}, ${first.device.fstype}), ${first.fioVersion}, ${r.seconds}s`,
        );
        expect(first).toMatchObject({ node: normal.name, host: normal.address, path: normal.etcdDataPath, passed: true });
        expect(first.fioSize).toBe("22m");
        expect(first.fioBs).toBe(2300);
        expect(first.device.fstype).toBe("ext4");
        expect(first.runs).toHaveLength(2);
    });

    it("runs again with the same inputs: exit 0, nothing changes on the node", () => {
        const before = nodeState(normal);
        const r = gate(normal, step(normal));
        expect(r.code).toBe(0);
        expect(r.stderr).not.toMatch(/installing|created|removing/);
        expect(nodeState(normal)).toEqual(before);
        expect(parseFsyncGateResult(r.stdout).passed).toBe(true);
    });

    it("fails on the slow-disk node, naming node, p99 and threshold, and leaves nothing behind", () => {
        const before = nodeState(slow);
        const r = gate(slow, step(slow, { runs: 1, fioSize: SLOW_FIO_SIZE }));
        expect(r.code).toBe(3);
        const result = parseFsyncGateResult(r.stdout);
        const message = fsyncRefusal(r.stderr);
        console.log(`${slow.name} (${r.seconds}s): ${message}`);
        expect(Math.abs(fsyncMessageP99Ms(message) - result.worstP99Ms)).toBeLessThanOrEqual(0.005 + 1e-9);
        expect(message).toContain(`fsync gate failed on node ${slow.name}:`);
        expect(message).toMatch(/fdatasync p99 of \d+\.\d\d ms \(1 run\)/);
        expect(message).toContain(`above the threshold of ${THRESHOLD_MS} ms`);
        expect(message).toContain(`zerotouch:nodes.${slow.name}.fsyncThresholdMs`);
        expect(result.passed).toBe(false);
        expect(result.worstP99Ms).toBeGreaterThan(THRESHOLD_MS);
        const after = nodeState(slow);
        expect(after.dataPath).toBe(before.dataPath);
        expect(after.dataPathMode).toBe(before.dataPathMode);
    });

    it("has nothing to undo on delete", () => {
        const r = gate(normal, step(normal), "delete");
        expect(r.code).toBe(0);
        expect(lastJsonLine(r.stdout, "fsync gate delete")).toEqual({ action: "delete", node: normal.name, changed: false });
    });
});
