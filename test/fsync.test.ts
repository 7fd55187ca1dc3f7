import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { FSYNC_GATE_SCRIPT, fsyncGateSteps, FsyncGateStepArgs, parseFsyncGateResult } from "../components/fsync/fsyncGate";
import { evaluateFioOutputs, fsyncMessageP99Ms, fsyncRefusal, runFsyncGate as runGate } from "./support/fsyncEvaluate";
import { expectInvalid, itChecksParameters, NOT_A_RESULT } from "./support/gateScripts";
import { describeAsRoot } from "./support/host";
import { CP1, expectGateStep } from "./support/nodeSteps";

/**
 * Fixtures in test/fixtures/fio were recorded with fio 3.33 on an ext4 loop device:
 *   normal.json   the gate's fio flags, unthrottled
 *   slow.json     the same, with the writes of fio's cgroup throttled to 40 IOPS (blkio)
 *   nosync.json   the same flags without --fdatasync=1 (no fdatasync latencies)
 *   gate-pass.stdout                    the gate script's stdout, passing (2 runs, 10 ms)
 *   gate-fail.stdout, gate-fail.stderr  the gate script on the throttled disk (10 ms)
 * The gate's decision is the script's own; it is run here on saved fio outputs
 * (ZT_ACTION=evaluate, no fio run).
 */
/** Fixtures and recorded inputs are read as loose JSON; the code under test does the validating. */
type Json = any;

const FIXTURES = path.join(__dirname, "fixtures", "fio");
const fixture = (file: string): string => fs.readFileSync(path.join(FIXTURES, file), "utf8");
const fioJson = (file: string): Json => JSON.parse(fixture(file));

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const firstJob = (doc: unknown): Record<string, Json> => (doc as { jobs: Record<string, Json>[] }).jobs[0];
/** A recorded fio output whose fdatasync p99 is `ns`. */
const withP99 = (ns: number): Json => {
    const doc = fioJson("normal.json");
    firstJob(doc).sync.lat_ns.percentile["99.000000"] = ns;
    return doc;
};

let dir: string;
beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "zt-fsync-eval-"));
});
afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
});
let cases = 0;
const evaluate = (outputs: unknown[], env: Parameters<typeof evaluateFioOutputs>[3] = {}) =>
    evaluateFioOutputs(dir, `case-${cases++}`, outputs, env);

describe("the script's reading of fio's JSON", () => {
    const normal = fioJson("normal.json");
    const slow = fioJson("slow.json");

    it.each([
        ["normal disk", normal, firstJob(normal).sync.lat_ns.percentile["99.000000"]],
        ["throttled disk", slow, firstJob(slow).sync.lat_ns.percentile["99.000000"]],
    ])("reads the fdatasync p99 of a %s", (_name, doc, expected) => {
        expect(evaluate([doc], { thresholdMs: "100000" }).line?.runs[0].p99Ns).toBe(expected);
        expect(Number.isInteger(expected)).toBe(true);
    });

    it("sees the throttled disk as much slower, and only it over the 10 ms default", () => {
        expect(evaluate([normal]).status).toBe(0);
        expect(evaluate([slow]).status).toBe(3);
        expect(evaluate([slow]).line?.runs[0].p99Ns).toBeGreaterThan(10_000_000);
    });

    it("also reads p50, p90 and IOPS", () => {
        const run = evaluate([normal]).line?.runs[0];
        expect(run.p50Ns).toBeLessThanOrEqual(run.p90Ns);
        expect(run.p90Ns).toBeLessThanOrEqual(run.p99Ns);
        expect(run.iops).toBe(firstJob(normal).write.iops);
    });

    const withoutSync = clone(normal);
    delete firstJob(withoutSync).sync;
    const noJobs = { ...clone(normal) as object, jobs: [] };
    const failedJob = clone(normal);
    firstJob(failedJob).error = 5;
    const noP99 = clone(normal);
    delete firstJob(noP99).sync.lat_ns.percentile["99.000000"];
    const noPercentiles = clone(normal);
    delete firstJob(noPercentiles).sync.lat_ns.percentile;
    const stringP99 = clone(normal);
    firstJob(stringP99).sync.lat_ns.percentile["99.000000"] = "1073152";

    it.each<[string, unknown, RegExp]>([
        ["fio run without --fdatasync (recorded)", fioJson("nosync.json"), /no fdatasync latencies: fio must run with --fdatasync=1/],
        ["a job without a sync section", withoutSync, /no fdatasync latencies: fio must run with --fdatasync=1/],
        ["no jobs", noJobs, /fio reported no job/],
        ["a failed job", failedJob, /fio job zerotouch-fsync failed with error 5/],
        ["no 99th percentile", noP99, /no p99 of the fdatasync latency/],
        ["no percentiles at all", noPercentiles, /no fdatasync percentiles/],
        ["a percentile that is not a number", stringP99, /no p99 of the fdatasync latency/],
        ["no jobs key", { "fio version": "fio-3.33" }, /fio run 1 printed no JSON result/],
        ["a string", "fio: no such file", /fio run 1 printed no JSON result/],
        ["null", "null", /fio run 1 printed no JSON result/],
    ])("refuses %s: exit 1, nothing on stdout", (_name, doc, message) => {
        const r = evaluate([doc]);
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(message);
        expect(r.stdout).toBe("");
    });
});

describe("the p99 in ms and the threshold", () => {
    it.each([
        [0, "0.00"],
        [4999, "0.00"],
        [5000, "0.01"],
        [1_073_152, "1.07"],
        [1_125_000, "1.13"],
        [9_995_000, "10.00"],
        [10_000_000, "10.00"],
        [123_456_789, "123.46"],
    ])("%d ns is %s ms", (ns, text) => {
        const r = evaluate([withP99(ns)], { thresholdMs: "100000" });
        expect(r.status).toBe(0);
        expect(r.stderr).toContain(`passed: fdatasync p99 ${text} ms (1 run) <= 100000 ms on /var/lib/etcd`);
    });

    it.each([
        [10_000_000, "10", true],
        [10_000_001, "10", false],
        [1000, "0.001", true],
        [1001, "0.001", false],
    ])("p99 %d ns against %s ms passes: %s", (ns, ms, passes) => {
        const r = evaluate([withP99(ns)], { thresholdMs: ms });
        expect(r.line?.passed).toBe(passes);
        expect(r.status).toBe(passes ? 0 : 3);
    });

    it("decides on the worst run", () => {
        const r = evaluate([withP99(1_000_000), withP99(12_000_000), withP99(2_000_000)]);
        expect(r.line).toMatchObject({ worstP99Ns: 12_000_000, passed: false });
        expect(fsyncRefusal(r.stderr)).toContain("fdatasync p99 of 12.00 ms (worst of 3 runs)");
    });
});

describe("parseFsyncGateResult", () => {
    const passStdout = fixture("gate-pass.stdout");
    const failStdout = fixture("gate-fail.stdout");

    it("reads a passing gate, the script's figures as it printed them", () => {
        const r = parseFsyncGateResult(passStdout);
        const raw = JSON.parse(passStdout.trim().split("\n").pop() ?? "");
        expect(r.passed).toBe(true);
        expect(r.node).toBe(raw.node);
        expect(r.fioVersion).toBe("fio-3.33");
        expect(r.thresholdMs).toBe(10);
        expect(r.runs).toHaveLength(2);
        const p99s = raw.runs.map((run: { fio: unknown }) => firstJob(run.fio).sync.lat_ns.percentile["99.000000"]);
        expect(r.runs.map((run) => run.p99Ns)).toEqual(p99s);
        expect(r.worstP99Ns).toBe(Math.max(...p99s));
        expect(r.worstP99Ms).toBe(r.worstP99Ns / 1e6);
        expect(r.device.fstype).toBe("ext4");
        expect(r.device.source).toMatch(/^\/dev\/loop\d+$/);
    });

    it("reads a failed gate", () => {
        const r = parseFsyncGateResult(failStdout);
        expect(r.passed).toBe(false);
        expect(r.worstP99Ms).toBeGreaterThan(r.thresholdMs);
    });

    it("takes the last line, after any other output", () => {
        expect(parseFsyncGateResult(`progress\n{"not":"it"}\n${passStdout}\n\n`).passed).toBe(true);
    });

    const tamper = (edit: (r: Record<string, Json>) => void): string => {
        const r = JSON.parse(passStdout.trim());
        edit(r);
        return JSON.stringify(r);
    };

    it.each<[string, string, RegExp]>([
        ["an unknown key", tamper((r) => (r.extra = 1)), /unexpected result line.*extra/],
        ["no runs", tamper((r) => (r.runs = [])), /unexpected result line: runs/],
        ["a p99 that is not whole ns", tamper((r) => (r.runs[0].p99Ns = 1.5)), /unexpected result line: runs\.0\.p99Ns/],
        ["an evaluation's result", '{"action":"evaluate","node":"n1","path":"/var/lib/etcd"}', /unexpected result line/],
        ...NOT_A_RESULT("fio"),
    ])("refuses %s", (_name, stdout, message) => {
        expect(() => parseFsyncGateResult(stdout)).toThrow(message);
    });
});

describe("the refusal", () => {
    it("names the node, the p99, the threshold and both overrides, and advises a faster disk", () => {
        const r = evaluate([withP99(1_000_000), withP99(104_333_312), withP99(9_000_000)], { node: "cp-2" });
        expect(r.status).toBe(3);
        expect(fsyncRefusal(r.stderr)).toBe(
            "fsync gate failed on node cp-2: fio measured an fdatasync p99 of 104.33 ms (worst of 3 runs) on " +
                "/var/lib/etcd, above the threshold of 10 ms. etcd needs fast, durable writes; the better fix is " +
                "to put the etcd data on a faster NVMe disk. To accept this disk anyway, raise the threshold for " +
                "this node: pulumi config set --path 'zerotouch:nodes.cp-2.fsyncThresholdMs' <ms>, or for all " +
                "nodes: pulumi config set --path 'zerotouch:fsyncGate.thresholdMs' <ms>",
        );
        expect(r.line).toMatchObject({ action: "evaluate", node: "cp-2", path: "/var/lib/etcd", thresholdMs: 10, passed: false });
    });

    it("says '1 run' for a single run", () => {
        expect(fsyncRefusal(evaluate([fioJson("slow.json")]).stderr)).toContain(" ms (1 run) on ");
    });

    it("is what the script printed when it stopped the deployment on the throttled disk (recorded)", () => {
        const failed = parseFsyncGateResult(fixture("gate-fail.stdout"));
        const refusal = fsyncRefusal(fixture("gate-fail.stderr"));
        expect(refusal).toContain(`fsync gate failed on node ${failed.node}: fio measured an fdatasync p99 of `);
        expect(fsyncMessageP99Ms(refusal)).toBeCloseTo(failed.worstP99Ms, 2);
    });
});

describe("fsyncGateSteps", () => {
    const base: FsyncGateStepArgs = { ...CP1, dataPath: "/var/lib/etcd", thresholdMs: 10, runs: 3 };

    it("is one step, fio, measuring only (no delete), not sensitive", () => {
        expectGateStep(fsyncGateSteps(base), "fio", FSYNC_GATE_SCRIPT, { ZT_DATA_PATH: "/var/lib/etcd", ZT_THRESHOLD_MS: "10", ZT_RUNS: 3 });
    });

    it("passes fio size and block size only when given (the script holds the defaults)", () => {
        const [step] = fsyncGateSteps({ ...base, fioSize: "4m", fioBlockSize: 4096, thresholdMs: 2.5 });
        expect(step.params).toMatchObject({ ZT_FIO_SIZE: "4m", ZT_FIO_BS: 4096, ZT_THRESHOLD_MS: "2.5" });
    });

    it.each<[string, Partial<FsyncGateStepArgs>, RegExp]>([
        ["an upper-case node name", { node: "CP_1" }, /node CP_1: node is "CP_1"; a node name must be a DNS label/],
        ["a relative data path", { dataPath: "var/lib/etcd" }, /node cp-1: dataPath is "var\/lib\/etcd"/],
        ["the root as data path", { dataPath: "/" }, /dataPath is "\/"/],
        ["a data path with ..", { dataPath: "/var/lib/../etcd" }, /dataPath/],
        ["a data path with a trailing /", { dataPath: "/var/lib/etcd/" }, /dataPath/],
        ["a zero threshold", { thresholdMs: 0 }, /thresholdMs is 0; allowed/],
        ["a threshold finer than a nanosecond", { thresholdMs: 0.0000001 }, /thresholdMs is 1e-7; .*at most 6 decimals/],
        ["an infinite threshold", { thresholdMs: Infinity }, /thresholdMs/],
        ["zero runs", { runs: 0 }, /runs is 0; allowed: an integer from 1 to 10/],
        ["11 runs", { runs: 11 }, /runs is 11/],
        ["a fractional run count", { runs: 1.5 }, /runs is 1.5/],
        ["a bad fio size", { fioSize: "22 MB" }, /fioSize is "22 MB"/],
        ["a bad block size", { fioBlockSize: -1 }, /fioBlockSize is -1/],
    ])("refuses %s, naming the node", (_name, change, message) => {
        expect(() => fsyncGateSteps({ ...base, ...change })).toThrow(message);
    });
});

/** Every entry under a directory with its mode, size and mtime, to compare before/after. */
function snapshot(dir: string): string[] {
    const out: string[] = [];
    const walk = (d: string): void => {
        for (const entry of fs.readdirSync(d).sort()) {
            const p = path.join(d, entry);
            const st = fs.lstatSync(p);
            out.push(`${path.relative(dir, p)} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
            if (st.isDirectory()) {
                walk(p);
            }
        }
    };
    walk(dir);
    return out;
}

describe("fsync-gate.sh, checks that need neither root nor fio", () => {
    const valid = { ZT_DATA_PATH: "/nonexistent/zerotouch-fsync-test", ZT_THRESHOLD_MS: "10", ZT_RUNS: "1", ZT_FIO_SIZE: "1m" };
    itChecksParameters(runGate, valid, [
        ["a relative data path", { ZT_DATA_PATH: "etcd" }, /ZT_DATA_PATH must be an absolute path/],
        ["the root as data path", { ZT_DATA_PATH: "/" }, /ZT_DATA_PATH must be a normalized/],
        ["a data path with ..", { ZT_DATA_PATH: "/var/../etcd" }, /ZT_DATA_PATH must be a normalized/],
        ["a zero threshold", { ZT_THRESHOLD_MS: "0.000" }, /ZT_THRESHOLD_MS must be a positive number/],
        ["an exponent threshold", { ZT_THRESHOLD_MS: "1e-3" }, /ZT_THRESHOLD_MS/],
        ["a threshold finer than a nanosecond", { ZT_THRESHOLD_MS: "0.0000001" }, /at most 6 decimals/],
        ["11 runs", { ZT_RUNS: "11" }, /ZT_RUNS must be an integer from 1 to 10/],
        ["a bad fio size", { ZT_FIO_SIZE: "22 MB" }, /ZT_FIO_SIZE/],
        ["a bad block size", { ZT_FIO_BS: "2k" }, /ZT_FIO_BS/],
    ], () => expect(fs.existsSync(valid.ZT_DATA_PATH)).toBe(false));
});


describe("fsync-gate.sh evaluate, its own parameters", () => {
    it.each<[string, string]>([
        ["no file", ""],
        ["a file that does not exist", "/nonexistent/fio.json"],
    ])("refuses %s with exit 2", (_name, files) => {
        const r = runGate({ ZT_ACTION: "evaluate", ZT_NODE: "cp-1", ZT_DATA_PATH: "/var/lib/etcd", ZT_THRESHOLD_MS: "10", ZT_FIO_FILES: files });
        expectInvalid(r, /ZT_FIO_FILES must (name at least one file|be readable files)/);
    });
});

describeAsRoot("fsync-gate.sh, run locally with fio", () => {
    let root: string;
    let dataPath: string;
    const env = (extra: Record<string, string>): Record<string, string> => ({
        ZT_ACTION: "create",
        ZT_NODE: "local-1",
        ZT_HOST: "127.0.0.1",
        ZT_DATA_PATH: dataPath,
        ...extra,
    });

    beforeAll(() => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "zt-fsync-"));
        dataPath = path.join(root, "var", "lib", "etcd");
    });
    afterAll(() => {
        fs.rmSync(root, { recursive: true, force: true });
    });

    it("passes with a high threshold, creates the missing data path 0700 and leaves it empty", () => {
        const r = runGate(env({ ZT_THRESHOLD_MS: "100000", ZT_RUNS: "2", ZT_FIO_SIZE: "2m" }));
        expect(r.stderr).toMatch(/passed: fdatasync p99 \d+\.\d\d ms \(worst of 2 runs\) <= 100000 ms/);
        expect(r.status).toBe(0);
        const result = parseFsyncGateResult(r.stdout);
        expect(result).toMatchObject({ node: "local-1", host: "127.0.0.1", path: dataPath, passed: true, fioSize: "2m", fioBs: 2300 });
        expect(result.runs).toHaveLength(2);
        expect(result.fioVersion).toMatch(/^fio-/);
        expect(fs.statSync(dataPath).mode & 0o777).toBe(0o700);
        expect(fs.readdirSync(dataPath)).toEqual([]);
    });

    it("runs again with the same inputs: exit 0, data path unchanged, other content untouched", () => {
        fs.mkdirSync(path.join(dataPath, "member", "snap"), { recursive: true });
        fs.writeFileSync(path.join(dataPath, "member", "snap", "db"), "etcd data\n", { mode: 0o600 });
        const before = snapshot(dataPath);
        const r = runGate(env({ ZT_THRESHOLD_MS: "100000", ZT_RUNS: "1", ZT_FIO_SIZE: "1m" }));
        expect(r.status).toBe(0);
        expect(r.stderr).not.toMatch(/created|installing/);
        expect(snapshot(dataPath)).toEqual(before);
        expect(fs.readFileSync(path.join(dataPath, "member", "snap", "db"), "utf8")).toBe("etcd data\n");
    });

    it("fails with a tiny threshold: exit 3, the refusal on stderr, the result still on stdout", () => {
        const before = snapshot(dataPath);
        // Written with trailing zeros on purpose: the script spells it as JavaScript does.
        const r = runGate(env({ ZT_THRESHOLD_MS: "0.001000", ZT_RUNS: "1", ZT_FIO_SIZE: "1m" }));
        expect(r.status).toBe(3);
        const result = parseFsyncGateResult(r.stdout);
        expect(result.passed).toBe(false);
        const message = fsyncRefusal(r.stderr);
        expect(message).toMatch(/^fsync gate failed on node local-1: fio measured an fdatasync p99 of \d+\.\d\d ms \(1 run\) on .* above the threshold of 0\.001 ms\. /);
        expect(message).toContain(` (1 run) on ${dataPath}, above`);
        expect(Math.abs(fsyncMessageP99Ms(message) - result.worstP99Ms)).toBeLessThanOrEqual(0.005 + 1e-9);
        expect(snapshot(dataPath)).toEqual(before);
    });

    it("removes the scratch directory a killed run left behind, and nothing else", () => {
        const stale = path.join(dataPath, ".zerotouch-fsync.killed01");
        fs.mkdirSync(stale);
        fs.writeFileSync(path.join(stale, "zerotouch-fsync.0.0"), "x");
        const r = runGate(env({ ZT_THRESHOLD_MS: "100000", ZT_RUNS: "1", ZT_FIO_SIZE: "1m" }));
        expect(r.status).toBe(0);
        expect(fs.existsSync(stale)).toBe(false);
        expect(fs.readdirSync(dataPath)).toEqual(["member"]);
    });
});
