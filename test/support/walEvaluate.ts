import * as fs from "fs";
import * as path from "path";

import { ETCD_BACKEND_COMMIT, ETCD_WAL_FSYNC, WAL_GATE_SCRIPT } from "../../components/etcd/walGate";
import { formatLe, Histogram, HistogramBucket } from "./prometheus";
import { Run, runBash } from "./scriptRun";

/** etcd's bucket bounds as it writes them (seconds): 0.001 × 2^i, i = 0..13, then +Inf. */
export const ETCD_LE = ["0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256", "0.512", "1.024", "2.048", "4.096", "8.192"];

/** Cumulative buckets from [le, count] pairs; "+Inf" for infinity. */
export const buckets = (...pairs: [number | "+Inf", number][]): HistogramBucket[] =>
    pairs.map(([le, count]) => ({ le: le === "+Inf" ? Infinity : le, count }));

/** A histogram of cumulative buckets, its count that of the last one. */
export const hist = (b: HistogramBucket[], sum = 0): Histogram => ({ buckets: b, count: b[b.length - 1]?.count ?? 0, sum });

/** An etcd-shaped histogram from per-bucket (not cumulative) counts, keyed by upper bound in ms. */
export function etcdHist(perBucketByMs: Partial<Record<number | "inf", number>>, sum = 0.5): Histogram {
    let total = 0;
    const b = ETCD_LE.map((le) => {
        total += perBucketByMs[Math.round(Number(le) * 1000)] ?? 0;
        return { le: Number(le), count: total };
    });
    total += perBucketByMs.inf ?? 0;
    b.push({ le: Infinity, count: total });
    return { buckets: b, count: total, sum };
}

/** No observations at all. */
export const EMPTY = etcdHist({});

/** A scrape in etcd's format with both histograms, among other families. */
export function promText(wal: Histogram, commit: Histogram): string {
    const histogram = (name: string, h: Histogram): string[] => [
        `# HELP ${name} The latency distributions.`,
        `# TYPE ${name} histogram`,
        ...h.buckets.map((b) => `${name}_bucket{le="${formatLe(b.le)}"} ${b.count}`),
        `${name}_sum ${h.sum}`,
        `${name}_count ${h.count}`,
    ];
    return [
        "# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.",
        "# TYPE etcd_server_has_leader gauge",
        "etcd_server_has_leader 1",
        ...histogram("etcd_debugging_disk_backend_commit_write_duration_seconds", etcdHist({ 1: 7 })),
        ...histogram(ETCD_BACKEND_COMMIT, commit),
        ...histogram(ETCD_WAL_FSYNC, wal),
        'etcd_server_version{server_version="3.4.23"} 1',
        "",
    ].join("\n");
}

/** Runs the gate script locally, as the runner does (bash, stdin closed), bounded. */
export function runWalGate(env: Record<string, string>): Run {
    return runBash([WAL_GATE_SCRIPT], { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env }, 60_000);
}

/**
 * The message the script printed on stderr for one metric: as printed (a passed metric's with
 * the script's log prefix, a failed one's as is, since it is what stops the deployment) and
 * without the prefix. Throws when there is none.
 */
export function gateMessage(stderr: string, metricName: string): { readonly message: string; readonly stderrLine: string } {
    const stderrLine = stderr.split("\n").find((l) => /^(wal-fsync-gate: )?etcd disk gate /.test(l) && l.includes(` ${metricName} `));
    if (stderrLine === undefined) {
        throw new Error(`the script printed no message for ${metricName}: ${stderr}`);
    }
    return { message: stderrLine.replace(/^wal-fsync-gate: /, ""), stderrLine };
}

/** The p99 a message names, ms (2 decimals). */
export function messageP99Ms(message: string): number {
    const m = /p99 of (\d+\.\d\d) ms/.exec(message);
    if (m === null) {
        throw new Error(`no p99 in: ${message}`);
    }
    return Number(m[1]);
}

/** Two scrapes, as text, and what the gate is given besides. */
export interface EvaluateCase {
    readonly before: string;
    readonly after: string;
    readonly node?: string;
    readonly walThresholdMs?: string;
    readonly commitThresholdMs?: string;
    readonly minSamples?: number;
    readonly minCommitSamples?: number;
}

/** One metric as the script reported it, with its message as printed and without the log prefix. */
export interface EvaluatedMetric extends Record<string, any> {
    readonly message: string;
    readonly stderrLine: string;
}

export interface Evaluated extends Run {
    /** The result line (JSON), when the script printed one. */
    readonly line: Record<string, any> | undefined;
    /** A metric of the result line with its message from stderr. */
    metric(name: string): EvaluatedMetric;
}

/**
 * Decides on two scrapes with the gate script itself (`ZT_ACTION=evaluate`, no etcd), the
 * scrapes written to `dir` under `name`.
 */
export function evaluateScrapes(dir: string, name: string, c: EvaluateCase): Evaluated {
    const beforeFile = path.join(dir, `${name}-before.prom`);
    const afterFile = path.join(dir, `${name}-after.prom`);
    fs.writeFileSync(beforeFile, c.before);
    fs.writeFileSync(afterFile, c.after);
    const r = runWalGate({
        ZT_ACTION: "evaluate",
        ZT_NODE: c.node ?? "cp-1",
        ZT_BEFORE_FILE: beforeFile,
        ZT_AFTER_FILE: afterFile,
        ZT_WAL_THRESHOLD_MS: c.walThresholdMs ?? "10",
        ZT_COMMIT_THRESHOLD_MS: c.commitThresholdMs ?? "25",
        ZT_MIN_SAMPLES: String(c.minSamples ?? 500),
        ZT_MIN_COMMIT_SAMPLES: String(c.minCommitSamples ?? 100),
    });
    const last = r.stdout.trim().split("\n").pop() ?? "";
    const line = last.startsWith("{") ? (JSON.parse(last) as Record<string, any>) : undefined;
    const metric = (metricName: string): EvaluatedMetric => {
        const found = (line?.metrics as Record<string, any>[] | undefined)?.find((m) => m.metric === metricName);
        if (found === undefined) {
            throw new Error(`the script reported no ${metricName}: ${r.stdout}${r.stderr}`);
        }
        return { ...found, ...gateMessage(r.stderr, metricName) };
    };
    return { ...r, line, metric };
}

/** Both metrics' scrapes: [before, after] of each. */
export interface HistogramCase extends Omit<EvaluateCase, "before" | "after"> {
    readonly wal: [Histogram, Histogram];
    readonly commit: [Histogram, Histogram];
}

/** `evaluateScrapes` on histograms, written as etcd writes them. */
export function evaluateHistograms(dir: string, name: string, c: HistogramCase): Evaluated {
    return evaluateScrapes(dir, name, { ...c, before: promText(c.wal[0], c.commit[0]), after: promText(c.wal[1], c.commit[1]) });
}
