import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { z } from "zod";

import { SshTarget } from "../lib/connection";
import { GATE_LIBRARIES, NodeStep, nodeScript } from "../lib/nodeScript";
import { isThresholdMs, THRESHOLD_MS_ALLOWED } from "../lib/ranges";
import { ScriptParams } from "../lib/script";
import { stepArgChecks } from "../lib/stepArgs";
import { parseResultLine } from "../lib/result";

/** The gate script; also run as is by the lab tests. */
export const FSYNC_GATE_SCRIPT = path.join(__dirname, "scripts", "fsync-gate.sh");

/** What decides one gate run: plain values, so the steps are pure data. */
export interface FsyncGateStepArgs {
    /** Node name (a DNS label); named in the result and in the failure message. */
    readonly node: string;
    /** Where the node is reached; its host is a parameter, so a re-pointed node measures again. */
    readonly target: SshTarget;
    /** etcd data directory to measure; created (mode 0700) when missing. */
    readonly dataPath: string;
    /** Highest acceptable fdatasync p99, ms (positive, at most 6 decimals: whole nanoseconds). */
    readonly thresholdMs: number;
    /** fio runs; the gate decides on the worst p99 (1–10). */
    readonly runs: number;
    /** fio `--size`. Defaults to 22m (etcd guidance); the default is applied by the script. */
    readonly fioSize?: string;
    /** fio `--bs`, bytes. Defaults to 2300 (etcd guidance); the default is applied by the script. */
    readonly fioBlockSize?: number;
    /**
     * Longest a run writes (fio `--runtime`) before stopping short of the size: bounds the wait
     * on a slow disk. Defaults to 120; the default is applied by the script.
     */
    readonly maxSecondsPerRun?: number;
}

export interface FsyncGateArgs extends FsyncGateStepArgs {
    /** SSH connection to the node (see `sshConnection`); the private key stays secret. */
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /** What must finish first, at least the node's preflight. */
    readonly dependsOn: pulumi.Input<pulumi.Input<pulumi.Resource>[]> | pulumi.Input<pulumi.Resource>;
}

const FIO_SIZE = /^[1-9][0-9]{0,5}[kKmMgG]?$/;

const { invalid, checkNode } = stepArgChecks("fsync gate");

/**
 * The gate as steps (one step, `fio`). Pure: the component and the lab runner both use it.
 * Throws on a value the script would refuse, naming the node, the value and what is allowed.
 */
export function fsyncGateSteps(args: FsyncGateStepArgs): NodeStep[] {
    const { node } = args;
    checkNode(node);
    const p = args.dataPath;
    if (!path.posix.isAbsolute(p) || path.posix.normalize(p) !== p || p.endsWith("/") || p.includes("\n")) {
        throw invalid(node, "dataPath", args.dataPath, "allowed: a normalized absolute path other than /");
    }
    const t = args.thresholdMs;
    if (!isThresholdMs(t)) {
        throw invalid(node, "thresholdMs", t, THRESHOLD_MS_ALLOWED);
    }
    if (!Number.isInteger(args.runs) || args.runs < 1 || args.runs > 10) {
        throw invalid(node, "runs", args.runs, "allowed: an integer from 1 to 10");
    }
    if (args.fioSize !== undefined && !FIO_SIZE.test(args.fioSize)) {
        throw invalid(node, "fioSize", args.fioSize, "allowed: a fio size such as 22m");
    }
    const bs = args.fioBlockSize;
    if (bs !== undefined && (!Number.isInteger(bs) || bs < 1 || bs > 9999999)) {
        throw invalid(node, "fioBlockSize", bs, "allowed: a positive integer of bytes");
    }
    const max = args.maxSecondsPerRun;
    if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > 1800)) {
        throw invalid(node, "maxSecondsPerRun", max, "allowed: a whole number of seconds from 1 to 1800");
    }
    const params: ScriptParams = {
        ZT_NODE: node,
        ZT_HOST: args.target.host,
        ZT_DATA_PATH: args.dataPath,
        ZT_THRESHOLD_MS: String(t),
        ZT_RUNS: args.runs,
        ...(args.fioSize !== undefined ? { ZT_FIO_SIZE: args.fioSize } : {}),
        ...(bs !== undefined ? { ZT_FIO_BS: bs } : {}),
        ...(max !== undefined ? { ZT_FIO_MAX_SECONDS: max } : {}),
    };
    return [{ name: "fio", script: FSYNC_GATE_SCRIPT, params, hasDelete: false, sensitive: false, libraries: GATE_LIBRARIES }];
}

const nanoseconds = z.number().int().nonnegative();

/** One fio run's figures as the script read them from fio's JSON (which the reader leaves out). */
const runSchema = z.object({
    p50Ns: nanoseconds,
    p90Ns: nanoseconds,
    p99Ns: nanoseconds,
    iops: z.number().nonnegative(),
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

/** The fsync gate's result as the script printed it (the script decides; this only reads). */
export type FsyncGateResult = z.infer<typeof resultSchema> & {
    /** Worst p99 over the runs, ms. */
    readonly worstP99Ms: number;
};

/**
 * Reads the gate script's stdout (its last line is the JSON result): where it measured, the
 * fdatasync p50/p90/p99 (ns) and write IOPS of each fio run, the worst p99 and the verdict,
 * all as fsync-gate.sh decided them.
 */
export function parseFsyncGateResult(stdout: string): FsyncGateResult {
    const r = parseResultLine(resultSchema, stdout, "fsync gate");
    return { ...r, worstP99Ms: r.worstP99Ns / 1e6 };
}

/**
 * Refuses a disk too slow for etcd: runs fio on the etcd data path of a node and fails the
 * deployment when the worst fdatasync p99 exceeds the threshold. Anything installed on the
 * node afterwards depends on `command`. It measures again only when the node, its host, the
 * data path, the threshold, the runs or the script change.
 */
export class FsyncGate extends pulumi.ComponentResource {
    /** Worst fdatasync p99 over the runs, ms. */
    public readonly p99Ms: pulumi.Output<number>;
    /** fdatasync p99 of each run, ms. */
    public readonly runsP99Ms: pulumi.Output<number[]>;
    /** The full result, as the script decided it. */
    public readonly result: pulumi.Output<FsyncGateResult>;
    /** The measurement; what is installed on the node later depends on it. */
    public readonly command: command.remote.Command;

    constructor(name: string, args: FsyncGateArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        const [step] = fsyncGateSteps(args);
        super("zerotouch:fsync:FsyncGate", name, {}, opts);
        this.command = nodeScript(`${name}-${step.name}`, step, args.connection, args.target, {
            parent: this,
            dependsOn: args.dependsOn,
        });
        this.result = this.command.stdout.apply((stdout) => {
            const result = parseFsyncGateResult(stdout);
            if (!result.passed) {
                // The script exits 3 on a failed gate (its message on stderr stops the
                // deployment), so this only guards against a broken script.
                throw new Error(`fsync gate on node ${result.node}: the script exited 0 on a failed gate`);
            }
            return result;
        });
        this.p99Ms = this.result.apply((r) => r.worstP99Ms);
        this.runsP99Ms = this.result.apply((r) => r.runs.map((run) => run.p99Ns / 1e6));
        this.registerOutputs({
            p99Ms: this.p99Ms,
            runsP99Ms: this.runsP99Ms,
            result: this.result,
            command: this.command,
        });
    }
}
