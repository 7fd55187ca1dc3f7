/**
 * FsyncGate on the lab: the gate's step (`fsyncGateSteps`) run over real SSH on Debian nodes
 * whose etcd data path is an ext4 loop device; on the slow-disk node (`slowDisk: true` in
 * .lab/state.json) the writes to that device are throttled (blkio, 40 IOPS by default).
 *
 * Checks: a normal node passes and prints a real p99; a second run changes nothing; the
 * slow-disk node fails with node, p99 and threshold in the message (the wording of
 * formatGateFailure) and nothing is left in its data path; delete has nothing to undo.
 */
import { readFileSync } from "fs";
import * as path from "path";

import { formatGateFailure, FsyncGateResult, parseFsyncGateResult } from "../../components/fsync/fio";
import { fsyncGateSteps, FsyncGateStepArgs } from "../../components/fsync/fsyncGate";
import type { NodeStep } from "../../components/lib/nodeScript";
import { lastJsonLine, ScriptAction } from "../../components/lib/script";

// --- the lab harness (test/lab/harness.ts), as documented --------------------------------------
// Loaded by path so that this file type-checks on its own; only what is used here is typed,
// and results are read tolerantly (exit code as `code`, `exitCode` or `status`).

type MaybePromise<T> = T | Promise<T>;
interface LabNode {
    readonly name: string;
    readonly role: "control-plane" | "worker";
    readonly address: string;
    readonly etcdDataPath?: string;
    readonly slowDisk?: boolean;
}
interface Lab {
    readonly nodes: readonly LabNode[];
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
}

interface Outcome {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
}

async function settle(run: () => MaybePromise<RunResult>): Promise<Outcome> {
    try {
        const r = await run();
        return { code: r.code ?? r.exitCode ?? r.status ?? 0, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    } catch (error) {
        // A harness may throw on a non-zero exit, with the result on the error.
        const e = error as RunResult & { message?: string };
        const code = e.code ?? e.exitCode ?? e.status;
        if (typeof code !== "number") {
            throw error;
        }
        return { code, stdout: e.stdout ?? "", stderr: `${e.stderr ?? ""}${e.message ?? ""}` };
    }
}

/** The product default and the step defaults (fio size 22m, bs 2300) on the normal node. */
const THRESHOLD_MS = 10;
/**
 * On the throttled node a 22m run takes about 8 minutes per run (two writes per fdatasync at
 * 40 IOPS); 4m keeps the same steady-state latency in about 90 s.
 */
const SLOW_FIO_SIZE = "4m";

jest.setTimeout(1_500_000);

describe("FsyncGate on the lab", () => {
    let h: Harness;
    let lab: Lab;
    let normal: Required<LabNode>;
    let slow: Required<LabNode>;

    /** Lab nodes with their etcd disk facts, from the harness or else from .lab/state.json. */
    function withDiskFacts(nodes: readonly LabNode[]): Required<LabNode>[] {
        const stateDir = process.env.LAB_STATE_DIR ?? path.join(__dirname, "..", "..", ".lab");
        const state = JSON.parse(readFileSync(path.join(stateDir, "state.json"), "utf8")) as { nodes: LabNode[] };
        return nodes.map((n) => {
            const s = state.nodes.find((x) => x.name === n.name);
            return {
                ...n,
                etcdDataPath: n.etcdDataPath ?? s?.etcdDataPath ?? "/var/lib/etcd",
                slowDisk: n.slowDisk ?? s?.slowDisk ?? false,
            };
        });
    }

    const steps = (node: Required<LabNode>, extra: Partial<FsyncGateStepArgs> = {}): NodeStep => {
        const [step] = fsyncGateSteps({
            node: node.name,
            target: { host: node.address, port: 22, user: "root" },
            dataPath: node.etcdDataPath,
            thresholdMs: THRESHOLD_MS,
            runs: 2,
            ...extra,
        });
        return step;
    };
    const gate = (node: Required<LabNode>, step: NodeStep, action?: ScriptAction) =>
        settle(() => h.runStep(lab, node.name, step, action));
    const ssh = async (node: Required<LabNode>, command: string): Promise<string> => {
        const r = await settle(() => h.sshRun(lab, node.name, command));
        if (r.code !== 0) {
            throw new Error(`${node.name}: ${command}: exit ${r.code}: ${r.stderr}`);
        }
        return r.stdout;
    };
    /** Every entry of the data path (name, mode, size, mtime) and the installed packages. */
    const nodeState = async (node: Required<LabNode>) => ({
        dataPath: await ssh(node, `find ${node.etcdDataPath} -mindepth 1 -printf '%P %m %s %T@\\n' | sort`),
        dataPathMode: await ssh(node, `stat -c '%a %U' ${node.etcdDataPath}`),
        packages: await ssh(node, "dpkg-query -W -f '${Package} ${Version}\\n' | sort | sha256sum"),
    });

    beforeAll(async () => {
        h = (await import(path.join(__dirname, "harness"))) as Harness;
        lab = await h.loadLab();
        const nodes = withDiskFacts(lab.nodes).filter((n) => n.role === "control-plane");
        const n = nodes.find((x) => !x.slowDisk);
        const s = nodes.find((x) => x.slowDisk);
        if (n === undefined || s === undefined) {
            throw new Error("the lab needs a control-plane node with a normal etcd disk and one with a slow one (LAB_SLOW_NODES)");
        }
        normal = n;
        slow = s;
    });

    it("passes on a normal node, with a real p99", async () => {
        const r = await gate(normal, steps(normal));
        expect(r.stderr).toMatch(/passed: fdatasync p99 \d+\.\d\d ms \(worst of 2 runs\) <= 10 ms/);
        expect(r.code).toBe(0);
        const first: FsyncGateResult = parseFsyncGateResult(r.stdout);
        console.log(
            `${normal.name}: fdatasync p99 ${first.worstP99Ms.toFixed(3)} ms (runs: ` +
                `${first.runs.map((x) => (x.p99Ns / 1e6).toFixed(3)).join(", ")} ms) on ${first.path} ` +
                `(${first.device.source}, ${first.device.fstype}), ${first.fioVersion}`,
        );
        expect(first).toMatchObject({ node: normal.name, host: normal.address, path: normal.etcdDataPath, passed: true });
        expect(first.fioSize).toBe("22m");
        expect(first.fioBs).toBe(2300);
        expect(first.device.fstype).toBe("ext4");
        expect(first.runs).toHaveLength(2);
    });

    it("runs again with the same inputs: exit 0, nothing changes on the node", async () => {
        const before = await nodeState(normal);
        const r = await gate(normal, steps(normal));
        expect(r.code).toBe(0);
        expect(r.stderr).not.toMatch(/installing|created|removing/);
        expect(await nodeState(normal)).toEqual(before);
        expect(parseFsyncGateResult(r.stdout).passed).toBe(true);
    });

    it("fails on the slow-disk node, naming node, p99 and threshold, and leaves nothing behind", async () => {
        const before = await nodeState(slow);
        const r = await gate(slow, steps(slow, { runs: 1, fioSize: SLOW_FIO_SIZE }));
        expect(r.code).toBe(3);
        const result = parseFsyncGateResult(r.stdout);
        const message = formatGateFailure(result);
        console.log(`${slow.name}: ${message}`);
        expect(r.stderr.split("\n")).toContain(message);
        expect(message).toContain(`fsync gate failed on node ${slow.name}:`);
        expect(message).toMatch(/fdatasync p99 of \d+\.\d\d ms \(1 run\)/);
        expect(message).toContain(`above the threshold of ${THRESHOLD_MS} ms`);
        expect(message).toContain(`zerotouch:nodes.${slow.name}.fsyncThresholdMs`);
        expect(result.passed).toBe(false);
        expect(result.worstP99Ms).toBeGreaterThan(THRESHOLD_MS);
        const after = await nodeState(slow);
        expect(after.dataPath).toBe(before.dataPath);
        expect(after.dataPathMode).toBe(before.dataPathMode);
    });

    it("has nothing to undo on delete", async () => {
        const r = await gate(normal, steps(normal), "delete");
        expect(r.code).toBe(0);
        expect(lastJsonLine(r.stdout, "fsync gate delete")).toEqual({ action: "delete", node: normal.name, changed: false });
    });
});
