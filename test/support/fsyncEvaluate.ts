import * as fs from "fs";
import * as path from "path";

import { FSYNC_GATE_SCRIPT } from "../../components/fsync/fsyncGate";
import { Run, runBash } from "./scriptRun";

/** Runs the fsync gate script locally, as the runner does (bash, stdin closed). */
export function runFsyncGate(env: Record<string, string>): Run {
    return runBash([FSYNC_GATE_SCRIPT], { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env }, 300_000);
}

/**
 * The refusal the script printed on stderr, as is (what stops the deployment): the line that
 * starts with "fsync gate failed on node". Throws when there is none.
 */
export function fsyncRefusal(stderr: string): string {
    const line = stderr.split("\n").find((l) => l.startsWith("fsync gate failed on node "));
    if (line === undefined) {
        throw new Error(`the fsync gate printed no refusal: ${stderr}`);
    }
    return line;
}

/** The fdatasync p99 a message names, ms (2 decimals). */
export function fsyncMessageP99Ms(message: string): number {
    const m = /fdatasync p99 (?:of )?(\d+\.\d\d) ms/.exec(message);
    if (m === null) {
        throw new Error(`no p99 in: ${message}`);
    }
    return Number(m[1]);
}

export interface FsyncEvaluated extends Run {
    /** The result line (JSON), when the script printed one. */
    readonly line: Record<string, any> | undefined;
}

/**
 * Decides on fio outputs with the gate script itself (`ZT_ACTION=evaluate`, no fio run): each
 * document (text as is, anything else as JSON) is written to `dir` as one run's output.
 */
export function evaluateFioOutputs(
    dir: string,
    name: string,
    outputs: readonly unknown[],
    env: { node?: string; dataPath?: string; thresholdMs?: string } = {},
): FsyncEvaluated {
    const files = outputs.map((doc, i) => {
        const file = path.join(dir, `${name}-${i + 1}.json`);
        fs.writeFileSync(file, typeof doc === "string" ? doc : JSON.stringify(doc));
        return file;
    });
    const r = runFsyncGate({
        ZT_ACTION: "evaluate",
        ZT_NODE: env.node ?? "cp-1",
        ZT_DATA_PATH: env.dataPath ?? "/var/lib/etcd",
        ZT_THRESHOLD_MS: env.thresholdMs ?? "10",
        ZT_FIO_FILES: files.join(":"),
    });
    const last = r.stdout.trim().split("\n").pop() ?? "";
    return { ...r, line: last.startsWith("{") ? (JSON.parse(last) as Record<string, any>) : undefined };
}
