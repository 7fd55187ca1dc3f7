import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { z } from "zod";

import { SshTarget } from "../lib/connection";
import { GATE_LIBRARIES, nodeScript, NodeStep } from "../lib/nodeScript";
import { isThresholdMs, THRESHOLD_MS_ALLOWED } from "../lib/ranges";
import { parseResultLine } from "../lib/result";
import { ScriptParams } from "../lib/script";
import { stepArgChecks } from "../lib/stepArgs";

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

const ENDPOINT = /^https?:\/\/[^/\s"\\]+$/;
const URL = /^https?:\/\/[^\s"\\]+$/;

const { invalid, checkNode } = stepArgChecks("etcd disk gate");

/** The gate takes the thresholds the config allows (THRESHOLD_MS): one range for both. */
function checkThreshold(node: string, key: string, t: number): void {
    if (!isThresholdMs(t)) {
        throw invalid(node, key, t, THRESHOLD_MS_ALLOWED);
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
    checkNode(node);
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
    return [{ name: "wal-gate", script: WAL_GATE_SCRIPT, params, hasDelete: false, sensitive: false, libraries: GATE_LIBRARIES }];
}

/** etcd's disk latency histograms the gate decides on. */
export const ETCD_WAL_FSYNC = "etcd_disk_wal_fsync_duration_seconds";
export const ETCD_BACKEND_COMMIT = "etcd_disk_backend_commit_duration_seconds";

const count = z.number().int().nonnegative();

/** One metric as the script decided it; the raw bucket counts of its scrapes are not read. */
const metricSchema = z.object({
    metric: z.enum([ETCD_WAL_FSYNC, ETCD_BACKEND_COMMIT]),
    thresholdMs: z.number().positive(),
    minSamples: z.number().int().positive(),
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

/**
 * One metric's figures and verdict, as the gate script decided them: the window's sample
 * count, the p99 (`null` without samples) and the bucket it fell in, the samples above the
 * bucket that holds the threshold, whether it was decided before the minimum sample count,
 * and whether the p99 is an estimate the verdict hangs on.
 */
export type WalGateMetric = z.infer<typeof metricSchema>;

/** The gate's result as the script printed it (the script decides; this only reads). */
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
    readonly walFsync: WalGateMetric;
    readonly backendCommit: WalGateMetric;
    readonly passed: boolean;
}

/**
 * Reads the gate script's stdout (its last line is the JSON result). The verdicts and their
 * messages are the script's (wal-fsync-gate.sh); this checks the shape, that each metric is
 * there once and that the overall verdict is theirs.
 */
export function parseWalGateResult(stdout: string): WalGateResult {
    const what = "etcd disk gate";
    const r = parseResultLine(resultSchema, stdout, what);
    const metric = (name: string): WalGateMetric => {
        const found = r.metrics.filter((m) => m.metric === name);
        if (found.length !== 1) {
            throw new Error(`${what} on node ${r.node}: the result must hold ${name} once`);
        }
        return found[0];
    };
    const walFsync = metric(ETCD_WAL_FSYNC);
    const backendCommit = metric(ETCD_BACKEND_COMMIT);
    if (r.passed !== (walFsync.passed && backendCommit.passed)) {
        throw new Error(`${what} on node ${r.node}: the result says passed ${String(r.passed)}, its metrics say otherwise`);
    }
    const { node, host, endpoint, metricsUrl, keyPrefix, writes, written, loadSeconds, loadMs, cutShort, passed } = r;
    return { node, host, endpoint, metricsUrl, keyPrefix, writes, written, loadSeconds, loadMs, cutShort, walFsync, backendCommit, passed };
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
    /** The full result, as the script decided it. */
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
                // The script exits 3 on a failed gate (its messages on stderr stop the
                // deployment), so this only guards against a broken script.
                throw new Error(`etcd disk gate on node ${result.node}: the script exited 0 on a failed gate`);
            }
            return result;
        });
        const p99 = (m: WalGateMetric): number => {
            if (m.p99Ms === null) {
                throw new Error(`etcd disk gate on node ${args.node}: ${m.metric} has no p99`);
            }
            return m.p99Ms;
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
