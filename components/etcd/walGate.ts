import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { z } from "zod";

import { SshTarget } from "../lib/connection";
import { COMMON_LIB, nodeScript, NodeStep } from "../lib/nodeScript";
import { parseResultLine } from "../lib/result";
import { ScriptParams } from "../lib/script";
import {
    checkBuckets,
    ETCD_BACKEND_COMMIT,
    ETCD_WAL_FSYNC,
    EtcdLatencyMetric,
    evaluateLatencyGate,
    Histogram,
    LatencyGateResult,
    parseSampleValue,
} from "./metrics";
import { DNS_LABEL } from "../lib/names";

/** The gate script; also run as is by the tests. */
export const WAL_GATE_SCRIPT = path.join(__dirname, "scripts", "wal-fsync-gate.sh");

/** The quantile the gate decides on. */
export const WAL_GATE_QUANTILE = 0.99;

/** Files on the node that give the gate TLS access to etcd's client URL. */
export interface EtcdClientTls {
    /** CA bundle that verifies etcd's server certificate. */
    readonly caFile?: string;
    /** Client certificate and its key (both or neither). */
    readonly certFile?: string;
    readonly keyFile?: string;
}

/** What decides one gate run: plain values, so the steps are pure data. */
export interface WalGateStepArgs {
    /** Node name (a DNS label); named in the keys, the result and the messages. */
    readonly node: string;
    /** Where the node is reached; its host is a parameter, so a re-pointed node measures again. */
    readonly target: SshTarget;
    /** etcd's client URL as seen on the node, `scheme://host:port`, e.g. `https://127.0.0.1:2379`. */
    readonly endpoint: string;
    /** Client TLS files on the node, for an `https` endpoint. */
    readonly tls?: EtcdClientTls;
    /** etcd's metrics URL on the node. Defaults to http://127.0.0.1:2381/metrics; the default is applied by the script. */
    readonly metricsUrl?: string;
    /** Highest acceptable WAL fsync p99, ms (`zerotouch:etcd.walFsyncThresholdMs`; positive, at most 6 decimals). */
    readonly walThresholdMs: number;
    /** Highest acceptable backend commit p99, ms (`zerotouch:etcd.backendCommitThresholdMs`). */
    readonly commitThresholdMs: number;
    /** Fewest puts of the write load. Defaults to 1000; the default is applied by the script. */
    readonly writes?: number;
    /** Longest the write load runs, s. Defaults to 120; the default is applied by the script. */
    readonly loadSeconds?: number;
    /** Fewest WAL fsyncs the p99 is taken over. Defaults to 500; the default is applied by the script. */
    readonly minSamples?: number;
    /** Fewest backend commits the p99 is taken over. Defaults to 100; the default is applied by the script. */
    readonly minCommitSamples?: number;
}

const NODE_NAME = DNS_LABEL;
const ENDPOINT = /^https?:\/\/[^/\s"\\]+$/;
const URL = /^https?:\/\/[^\s"\\]+$/;

function invalid(node: string, key: string, given: unknown, allowed: string): Error {
    return new Error(`etcd disk gate for node ${node}: ${key} is ${JSON.stringify(given)}; ${allowed}`);
}

function checkThreshold(node: string, key: string, t: number): void {
    if (!Number.isFinite(t) || t <= 0 || t >= 1e6 || Math.round(t * 1e6) / 1e6 !== t) {
        throw invalid(node, key, t, "allowed: a number of ms above 0 and below 1000000, at most 6 decimals");
    }
}

function checkInt(node: string, key: string, n: number | undefined, max: number, what: string): void {
    if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > max)) {
        throw invalid(node, key, n, `allowed: ${what} from 1 to ${max}`);
    }
}

/**
 * The gate as steps (one step, `wal-gate`). Pure: a component and a lab runner both use it.
 * Throws on a value the script would refuse, naming the node, the value and what is allowed.
 */
export function walGateSteps(args: WalGateStepArgs): NodeStep[] {
    const { node } = args;
    if (!NODE_NAME.test(node)) {
        throw invalid(node, "node", node, "a node name must be a DNS label (lowercase letters, digits, '-')");
    }
    if (!ENDPOINT.test(args.endpoint)) {
        throw invalid(node, "endpoint", args.endpoint, "allowed: an etcd client URL such as https://127.0.0.1:2379, without a path");
    }
    if (args.metricsUrl !== undefined && !URL.test(args.metricsUrl)) {
        throw invalid(node, "metricsUrl", args.metricsUrl, "allowed: an http(s) URL such as http://127.0.0.1:2381/metrics");
    }
    const tls = args.tls ?? {};
    for (const [key, file] of Object.entries(tls)) {
        if (typeof file !== "string" || !path.posix.isAbsolute(file) || /["\\\n]/.test(file)) {
            throw invalid(node, `tls.${key}`, file, "allowed: an absolute path on the node, without quotes or backslashes");
        }
    }
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
        throw invalid(node, "tls", tls, "allowed: certFile and keyFile together, or neither");
    }
    checkThreshold(node, "walThresholdMs", args.walThresholdMs);
    checkThreshold(node, "commitThresholdMs", args.commitThresholdMs);
    checkInt(node, "writes", args.writes, 100000, "an integer");
    checkInt(node, "loadSeconds", args.loadSeconds, 1800, "a whole number of seconds");
    checkInt(node, "minSamples", args.minSamples, 1000000, "an integer");
    checkInt(node, "minCommitSamples", args.minCommitSamples, 1000000, "an integer");
    const optional = (key: string, value: string | number | undefined): ScriptParams =>
        value === undefined ? {} : { [key]: value };
    const params: ScriptParams = {
        ZT_NODE: node,
        ZT_HOST: args.target.host,
        ZT_ETCD_ENDPOINT: args.endpoint,
        ZT_WAL_THRESHOLD_MS: String(args.walThresholdMs),
        ZT_COMMIT_THRESHOLD_MS: String(args.commitThresholdMs),
        ...optional("ZT_ETCD_CACERT", tls.caFile),
        ...optional("ZT_ETCD_CERT", tls.certFile),
        ...optional("ZT_ETCD_KEY", tls.keyFile),
        ...optional("ZT_METRICS_URL", args.metricsUrl),
        ...optional("ZT_WRITES", args.writes),
        ...optional("ZT_LOAD_SECONDS", args.loadSeconds),
        ...optional("ZT_MIN_SAMPLES", args.minSamples),
        ...optional("ZT_MIN_COMMIT_SAMPLES", args.minCommitSamples),
    };
    return [{ name: "wal-gate", script: WAL_GATE_SCRIPT, params, hasDelete: false, sensitive: false, libraries: [COMMON_LIB] }];
}

const count = z.number().int().nonnegative();

const scrapeSchema = z.strictObject({
    buckets: z.array(z.strictObject({ le: z.string().min(1), count })).min(2),
    sum: z.string().min(1),
    count,
});

const metricSchema = z.strictObject({
    metric: z.enum([ETCD_WAL_FSYNC, ETCD_BACKEND_COMMIT]),
    thresholdMs: z.number().positive(),
    minSamples: z.number().int().positive(),
    before: scrapeSchema,
    after: scrapeSchema,
    samples: count,
    p99Ms: z.number().nonnegative().nullable(),
    bucketMs: z.strictObject({ lowerMs: z.number().nonnegative(), upperMs: z.number().positive().nullable() }).nullable(),
    slowBoundMs: z.number().positive().nullable(),
    slowSamples: count,
    decidedEarly: z.boolean(),
    estimate: z.boolean(),
    verdict: z.enum(["passed", "above-threshold", "too-few-samples"]),
    passed: z.boolean(),
});

const resultSchema = z.strictObject({
    action: z.literal("create"),
    node: z.string().min(1),
    host: z.string().min(1),
    endpoint: z.string().min(1),
    metricsUrl: z.string().min(1),
    keyPrefix: z.string().startsWith("/zerotouch/wal-gate/"),
    writes: z.number().int().positive(),
    written: count,
    rounds: count,
    loadSeconds: z.number().int().positive(),
    loadMs: count,
    cutShort: z.boolean(),
    quantile: z.literal(WAL_GATE_QUANTILE),
    metrics: z.array(metricSchema).length(2),
    passed: z.boolean(),
});

type RawScrape = z.infer<typeof scrapeSchema>;

/** The gate's result, every figure recomputed from the raw bucket counts of both scrapes. */
export interface WalGateResult {
    readonly node: string;
    readonly host: string;
    /** etcd client URL the write load went to. */
    readonly endpoint: string;
    readonly metricsUrl: string;
    /** Where the write load's keys were (deleted afterwards). */
    readonly keyPrefix: string;
    /** Fewest puts asked for, and puts made. */
    readonly writes: number;
    readonly written: number;
    /** The bound of the write load, s, its duration, ms, and whether the bound stopped it. */
    readonly loadSeconds: number;
    readonly loadMs: number;
    readonly cutShort: boolean;
    readonly walFsync: LatencyGateResult;
    readonly backendCommit: LatencyGateResult;
    readonly passed: boolean;
}

function histogramOf(what: string, raw: RawScrape): Histogram {
    const buckets = raw.buckets.map((b) => ({ le: parseSampleValue(b.le), count: b.count }));
    checkBuckets(what, buckets);
    const inf = buckets[buckets.length - 1].count;
    if (raw.count !== inf) {
        throw new Error(`${what}: count is ${raw.count} but the +Inf bucket has ${inf}`);
    }
    return { buckets, count: raw.count, sum: parseSampleValue(raw.sum) };
}

/** Equal, or both null, or numbers within a relative 1e-9 (awk prints them with 17 digits). */
function same(a: number | null, b: number | null): boolean {
    if (a === null || b === null) {
        return a === b;
    }
    return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
}

/**
 * Parses the gate script's stdout (its last line is the JSON result). For both metrics the
 * difference of the two scrapes, the p99, its bucket, the estimate flag and the verdict are
 * recomputed from the raw bucket counts and must equal the script's; so must the overall verdict.
 */
export function parseWalGateResult(stdout: string): WalGateResult {
    const what = "etcd disk gate";
    const r = parseResultLine(resultSchema, stdout, what);
    const mismatch = (field: string, script: unknown, computed: unknown): Error =>
        new Error(
            `${what} on node ${r.node}: the script reports ${field} ${JSON.stringify(script)} ` +
                `but the raw buckets give ${JSON.stringify(computed)}`,
        );
    const recompute = (metric: EtcdLatencyMetric): LatencyGateResult => {
        const index = r.metrics.findIndex((m) => m.metric === metric);
        const m = r.metrics[index];
        if (m === undefined || r.metrics.filter((x) => x.metric === metric).length !== 1) {
            throw new Error(`${what} on node ${r.node}: the result must hold ${metric} once`);
        }
        const at = `metrics[${index}]`;
        const computed = evaluateLatencyGate({
            node: r.node,
            metric,
            before: histogramOf(`${at}.before`, m.before),
            after: histogramOf(`${at}.after`, m.after),
            quantile: r.quantile,
            thresholdMs: m.thresholdMs,
            minSamples: m.minSamples,
        });
        const checks: [string, boolean, unknown, unknown][] = [
            ["samples", m.samples === computed.samples, m.samples, computed.samples],
            ["p99Ms", same(m.p99Ms, computed.quantileMs), m.p99Ms, computed.quantileMs],
            [
                "bucketMs",
                same(m.bucketMs?.lowerMs ?? null, computed.bucketMs?.lowerMs ?? null) &&
                    same(m.bucketMs?.upperMs ?? null, computed.bucketMs?.upperMs ?? null) &&
                    (m.bucketMs === null) === (computed.bucketMs === null),
                m.bucketMs,
                computed.bucketMs,
            ],
            ["slowBoundMs", same(m.slowBoundMs, computed.slowBoundMs), m.slowBoundMs, computed.slowBoundMs],
            ["slowSamples", m.slowSamples === computed.slowSamples, m.slowSamples, computed.slowSamples],
            ["decidedEarly", m.decidedEarly === computed.decidedEarly, m.decidedEarly, computed.decidedEarly],
            ["estimate", m.estimate === computed.estimate, m.estimate, computed.estimate],
            ["verdict", m.verdict === computed.verdict, m.verdict, computed.verdict],
            ["passed", m.passed === computed.passed, m.passed, computed.passed],
        ];
        for (const [field, ok, script, fromBuckets] of checks) {
            if (!ok) {
                throw mismatch(`${at}.${field}`, script, fromBuckets);
            }
        }
        return computed;
    };
    const walFsync = recompute(ETCD_WAL_FSYNC);
    const backendCommit = recompute(ETCD_BACKEND_COMMIT);
    const passed = walFsync.passed && backendCommit.passed;
    if (r.passed !== passed) {
        throw mismatch("passed", r.passed, passed);
    }
    return {
        node: r.node,
        host: r.host,
        endpoint: r.endpoint,
        metricsUrl: r.metricsUrl,
        keyPrefix: r.keyPrefix,
        writes: r.writes,
        written: r.written,
        loadSeconds: r.loadSeconds,
        loadMs: r.loadMs,
        cutShort: r.cutShort,
        walFsync,
        backendCommit,
        passed,
    };
}

/**
 * The message of a failed gate: one line per failed metric (node, metric, measured p99, sample
 * count, threshold, and how to override). The script prints exactly these lines on stderr.
 */
export function formatWalGateFailure(result: Pick<WalGateResult, "walFsync" | "backendCommit">): string {
    return [result.walFsync, result.backendCommit]
        .filter((m) => !m.passed)
        .map((m) => m.message)
        .join("\n");
}

export interface WalGateArgs extends WalGateStepArgs {
    /** SSH connection to the node (see `sshConnection`); the private key stays secret. */
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /** What must finish first: at least etcd running on the node and answering. */
    readonly dependsOn: pulumi.Input<pulumi.Input<pulumi.Resource>[]> | pulumi.Input<pulumi.Resource>;
}

/** The type token the gate had before it was called WalGate (kept for aliases). */
export const FORMER_WAL_GATE_TYPE = "zerotouch:etcd:WalFsyncGate";

/**
 * Proves from etcd's own metrics that the node's disk keeps up once etcd runs on it: a bounded
 * write load, and the p99 of etcd's WAL fsync and backend commit latencies over it, each
 * against its threshold. Fails the deployment above a threshold or with too few samples. It
 * measures again only when the node, its host, the endpoint, a threshold, the load or the
 * script change.
 */
export class WalGate extends pulumi.ComponentResource {
    /** WAL fsync p99 over the write load, ms. */
    public readonly walFsyncP99Ms: pulumi.Output<number>;
    /** Backend commit p99 over the write load, ms. */
    public readonly backendCommitP99Ms: pulumi.Output<number>;
    /** The full result, recomputed from the raw bucket counts. */
    public readonly result: pulumi.Output<WalGateResult>;
    /** The measurement; what relies on a healthy etcd depends on it. */
    public readonly command: command.remote.Command;

    constructor(name: string, args: WalGateArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        const [step] = walGateSteps(args);
        // Aliases keep a stack deployed under the former type token (and its command's former
        // name, `<name>-wal-gate`) from measuring again or replacing anything.
        super("zerotouch:etcd:WalGate", name, {}, { ...opts, aliases: [...(opts?.aliases ?? []), { type: FORMER_WAL_GATE_TYPE }] });
        this.command = nodeScript(`${name}-gate`, step, args.connection, args.target, {
            parent: this,
            dependsOn: args.dependsOn,
            aliases: [{ name: `${name}-${step.name}`, parent: pulumi.createUrn(name, FORMER_WAL_GATE_TYPE, opts?.parent) }],
        });
        this.result = this.command.stdout.apply((stdout) => {
            const result = parseWalGateResult(stdout);
            if (!result.passed) {
                // The script exits 3 on a failed gate, so this only guards against a broken script.
                throw new Error(formatWalGateFailure(result));
            }
            return result;
        });
        const p99 = (m: LatencyGateResult): number => {
            if (m.quantileMs === null) {
                throw new Error(`etcd disk gate on node ${m.node}: ${m.metric} has no p99`);
            }
            return m.quantileMs;
        };
        this.walFsyncP99Ms = this.result.apply((r) => p99(r.walFsync));
        this.backendCommitP99Ms = this.result.apply((r) => p99(r.backendCommit));
        this.registerOutputs({
            walFsyncP99Ms: this.walFsyncP99Ms,
            backendCommitP99Ms: this.backendCommitP99Ms,
            result: this.result,
            command: this.command,
        });
    }
}
