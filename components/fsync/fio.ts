import { z } from "zod";

import { parseResultLine, zodIssues } from "../lib/result";

/**
 * Reading fio results and the fsync gate's result line.
 *
 * The gate runs fio the way etcd's guidance does (`--rw=write --ioengine=sync --fdatasync=1
 * --size=22m --bs=2300 --output-format=json`) and decides on the 99th percentile of the
 * fdatasync latency, `.jobs[0].sync.lat_ns.percentile["99.000000"]`, in nanoseconds.
 */

const P50 = "50.000000";
const P90 = "90.000000";
const P99 = "99.000000";

const nanoseconds = z.number().int().nonnegative();

const fioJobSchema = z.object({
    jobname: z.string(),
    error: z.number().int(),
    sync: z
        .object({
            lat_ns: z.object({
                N: z.number().int().nonnegative().optional(),
                percentile: z.record(z.string(), nanoseconds).optional(),
            }),
        })
        .optional(),
    write: z.object({ iops: z.number().nonnegative() }).optional(),
});

const fioOutputSchema = z.object({
    "fio version": z.string().optional(),
    jobs: z.array(fioJobSchema),
});

/** fdatasync latencies of one fio run, in nanoseconds, and its write IOPS. */
export interface FioSyncLatency {
    readonly p50Ns: number;
    readonly p90Ns: number;
    readonly p99Ns: number;
    /** Write operations per second (each followed by an fdatasync). */
    readonly iops: number;
}

/**
 * The fdatasync latencies of the first job of a fio `--output-format=json` document.
 * Throws when the document is not fio JSON, has no job, the job failed, or has no fdatasync
 * latencies (fio run without `--fdatasync=1`).
 */
export function fioSyncLatency(fioJson: unknown): FioSyncLatency {
    const parsed = fioOutputSchema.safeParse(fioJson);
    if (!parsed.success) {
        throw new Error(`fio output is not a fio JSON document: ${zodIssues(parsed.error)}`);
    }
    const job = parsed.data.jobs[0];
    if (job === undefined) {
        throw new Error("fio output has no jobs");
    }
    if (job.error !== 0) {
        throw new Error(`fio job "${job.jobname}" failed with error ${job.error}`);
    }
    if (job.sync === undefined || (job.sync.lat_ns.N ?? 0) === 0) {
        throw new Error(
            `fio job "${job.jobname}" has no fdatasync latencies (sync.lat_ns): fio must run with --fdatasync=1`,
        );
    }
    const percentile = job.sync.lat_ns.percentile ?? {};
    const at = (key: string): number => {
        const value = percentile[key];
        if (value === undefined) {
            throw new Error(`fio job "${job.jobname}" has no ${key} percentile of the fdatasync latency`);
        }
        return value;
    };
    return { p50Ns: at(P50), p90Ns: at(P90), p99Ns: at(P99), iops: job.write?.iops ?? 0 };
}

/** The 99th percentile of the fdatasync latency of a fio JSON document, in nanoseconds. */
export function fioSyncP99Ns(fioJson: unknown): number {
    return fioSyncLatency(fioJson).p99Ns;
}

/** Nanoseconds as milliseconds with 2 decimals, rounded half up (`1073152` → `"1.07"`). */
export function formatMs2(ns: number): string {
    if (!Number.isSafeInteger(ns) || ns < 0) {
        throw new Error(`a latency must be a non-negative integer of nanoseconds, got ${ns}`);
    }
    // Integer arithmetic, the same as the gate script does it, so both print the same figure.
    const hundredths = Math.floor((ns + 5000) / 10000);
    return `${Math.floor(hundredths / 100)}.${String(hundredths % 100).padStart(2, "0")}`;
}

/** Whether a p99 passes the gate; the script decides with the very same comparison. */
export function p99Passes(p99Ns: number, thresholdMs: number): boolean {
    return p99Ns <= thresholdMs * 1000000;
}

const runSchema = z.object({
    p50Ns: nanoseconds,
    p90Ns: nanoseconds,
    p99Ns: nanoseconds,
    iops: z.number().nonnegative(),
    fio: z.unknown(),
});

const resultSchema = z.strictObject({
    action: z.literal("create"),
    node: z.string().min(1),
    host: z.string().min(1),
    path: z.string().startsWith("/"),
    fioVersion: z.string().min(1),
    fioSize: z.string().min(1),
    fioBs: z.number().int().positive(),
    device: z.strictObject({
        source: z.string(),
        fstype: z.string(),
        mount: z.string(),
        rotational: z.boolean().nullable(),
    }),
    thresholdMs: z.number().positive(),
    runs: z.array(runSchema).min(1),
    worstP99Ns: nanoseconds,
    passed: z.boolean(),
});

/** Where the measured data path lives. */
export interface FsyncDevice {
    /** Mount source (`findmnt -o SOURCE`), e.g. `/dev/vda1`. */
    readonly source: string;
    /** Filesystem type, e.g. `ext4`. */
    readonly fstype: string;
    /** Mount point holding the data path. */
    readonly mount: string;
    /** Whether the kernel reports the block device as rotational; `null` when not a block device. */
    readonly rotational: boolean | null;
}

/** One fio run of the gate, figures taken from fio's own JSON. */
export type FsyncGateRun = FioSyncLatency;

/** The fsync gate's result, every figure recomputed from fio's raw per-run JSON. */
export interface FsyncGateResult {
    readonly node: string;
    readonly host: string;
    /** The etcd data path measured. */
    readonly path: string;
    /** e.g. `fio-3.33`. */
    readonly fioVersion: string;
    readonly fioSize: string;
    readonly fioBs: number;
    readonly device: FsyncDevice;
    readonly thresholdMs: number;
    readonly runs: readonly FsyncGateRun[];
    /** Worst p99 over the runs, ns. */
    readonly worstP99Ns: number;
    /** Worst p99 over the runs, ms. */
    readonly worstP99Ms: number;
    readonly passed: boolean;
}

/**
 * Parses the gate script's stdout (its last line is the JSON result). Per-run figures, the
 * worst p99 and the verdict are recomputed from fio's raw JSON and must equal the script's.
 */
export function parseFsyncGateResult(stdout: string): FsyncGateResult {
    const what = "fsync gate";
    const r = parseResultLine(resultSchema, stdout, what);
    const mismatch = (field: string, script: unknown, computed: unknown): Error =>
        new Error(
            `${what} on node ${r.node}: the script reports ${field} ${JSON.stringify(script)} ` +
                `but fio's figures give ${JSON.stringify(computed)}`,
        );
    const runs = r.runs.map((run, i): FsyncGateRun => {
        const fromFio = fioSyncLatency(run.fio);
        for (const key of ["p50Ns", "p90Ns", "p99Ns", "iops"] as const) {
            if (run[key] !== fromFio[key]) {
                throw mismatch(`runs[${i}].${key}`, run[key], fromFio[key]);
            }
        }
        const version = (run.fio as { "fio version"?: unknown })["fio version"];
        if (version !== r.fioVersion) {
            throw mismatch(`runs[${i}] fio version`, r.fioVersion, version);
        }
        return fromFio;
    });
    const worstP99Ns = Math.max(...runs.map((run) => run.p99Ns));
    if (r.worstP99Ns !== worstP99Ns) {
        throw mismatch("worstP99Ns", r.worstP99Ns, worstP99Ns);
    }
    const passed = p99Passes(worstP99Ns, r.thresholdMs);
    if (r.passed !== passed) {
        throw mismatch("passed", r.passed, passed);
    }
    return {
        node: r.node,
        host: r.host,
        path: r.path,
        fioVersion: r.fioVersion,
        fioSize: r.fioSize,
        fioBs: r.fioBs,
        device: r.device,
        thresholdMs: r.thresholdMs,
        runs,
        worstP99Ns,
        worstP99Ms: worstP99Ns / 1e6,
        passed,
    };
}

/** What the failure message is made of. */
export type FsyncGateFailureFacts = Pick<FsyncGateResult, "node" | "path" | "thresholdMs" | "worstP99Ns" | "runs">;

/**
 * The message of a failed gate: node, measured p99, threshold, and how to override. The gate
 * script prints exactly this text on stderr when it stops the deployment (the tests hold both
 * to the same wording).
 */
export function formatGateFailure(facts: FsyncGateFailureFacts): string {
    const { node } = facts;
    const measured = facts.runs.length === 1 ? "(1 run)" : `(worst of ${facts.runs.length} runs)`;
    return (
        `fsync gate failed on node ${node}: fio measured an fdatasync p99 of ${formatMs2(facts.worstP99Ns)} ms ` +
        `${measured} on ${facts.path}, above the threshold of ${String(facts.thresholdMs)} ms. ` +
        "etcd needs fast, durable writes; the better fix is to put the etcd data on a faster NVMe disk. " +
        "To accept this disk anyway, raise the threshold for this node: " +
        `pulumi config set --path 'zerotouch:nodes.${node}.fsyncThresholdMs' <ms>, ` +
        "or for all nodes: pulumi config set --path 'zerotouch:fsyncGate.thresholdMs' <ms>"
    );
}
