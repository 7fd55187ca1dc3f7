import { spawnSync } from "child_process";

/** How a script run ended: its exit status (null when killed) and what it printed. */
export interface Run {
    readonly status: number | null;
    readonly stdout: string;
    readonly stderr: string;
}

/** Runs bash with `args` as the runner does (stdin closed), with only `env`, killed after `timeout` ms. */
export function runBash(args: string[], env: Record<string, string>, timeout: number): Run {
    const r = spawnSync("bash", args, { env, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", timeout });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
