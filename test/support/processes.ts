/**
 * Long-running processes a test starts (an API server, etcd, Argo CD's components, Redis, a web
 * server): each under `timeout` (bounded even if the test process dies without `stop()`), in a
 * process group of its own (so that `stop()` reaches the server under the wrapper too), its output
 * in a log file of its own.
 */
import { ChildProcess, spawn, spawnSync } from "child_process";
import { openSync } from "fs";
import { createServer } from "net";
import * as path from "path";

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as { port: number }).port;
            srv.close(() => resolve(port));
        });
    });
}

export class Processes {
    private readonly started: { name: string; child: ChildProcess; log: string }[] = [];

    constructor(
        /** Where the logs go. */
        readonly logDir: string,
        /** Seconds after which `timeout` stops a process that `stop()` never reached. */
        readonly boundSec = 1800,
    ) {}

    /**
     * Starts `bin args` in the background as `name`; with `netns`, inside that network namespace
     * (`ip netns exec`, which execs the command: the process keeps its pid and group).
     */
    start(name: string, bin: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; netns?: string } = {}): void {
        const log = path.join(this.logDir, `${name}.log`);
        const fd = openSync(log, "a");
        const argv = [...(opts.netns === undefined ? [] : ["ip", "netns", "exec", opts.netns]), bin, ...args];
        const child = spawn("timeout", [String(this.boundSec), ...argv], { stdio: ["ignore", fd, fd], detached: true, env: opts.env ?? process.env, cwd: opts.cwd });
        this.started.push({ name, child, log });
    }

    /** The first process that has exited, if any. */
    exited(): { name: string; code: number | null } | undefined {
        const p = this.started.find((x) => x.child.exitCode !== null || x.child.signalCode !== null);
        return p === undefined ? undefined : { name: p.name, code: p.child.exitCode };
    }

    /** Throws, with its log's end, when a process has exited. */
    assertRunning(): void {
        const dead = this.exited();
        if (dead !== undefined) {
            throw new Error(`${dead.name} exited (${String(dead.code)}):\n${this.logTail(dead.name)}`);
        }
    }

    /** The last lines of a process's log. */
    logTail(name: string, lines = 30): string {
        const p = this.started.find((x) => x.name === name);
        if (p === undefined) {
            return "";
        }
        return spawnSync("tail", ["-n", String(lines), p.log], { encoding: "utf8" }).stdout ?? "";
    }

    /**
     * Stops the processes, newest first, each with its whole process group: SIGTERM, then SIGKILL
     * after a bounded wait, so nothing outlives the tests.
     */
    stop(graceSec = 15): void {
        for (const p of [...this.started].reverse()) {
            signal(p.child, "SIGTERM");
            const deadline = Date.now() + graceSec * 1000;
            while (groupAlive(p.child) && Date.now() < deadline) {
                spawnSync("sleep", ["0.2"]);
            }
            signal(p.child, "SIGKILL");
        }
        this.started.length = 0;
    }
}

function signal(child: ChildProcess, sig: NodeJS.Signals): void {
    if (child.pid === undefined) {
        return;
    }
    try {
        process.kill(-child.pid, sig);
    } catch {
        // the group is gone already
    }
}

function groupAlive(child: ChildProcess): boolean {
    return child.pid !== undefined && spawnSync("pgrep", ["-g", String(child.pid)], { stdio: "ignore" }).status === 0;
}

/** Waits, bounded, until `ready()` is true; throws with `why()` otherwise. Calls `check()` between tries. */
export async function waitFor(what: string, ready: () => boolean | Promise<boolean>, timeoutSec: number, check: () => void = () => undefined, why: () => string = () => ""): Promise<void> {
    const deadline = Date.now() + timeoutSec * 1000;
    while (Date.now() < deadline) {
        if (await ready()) {
            return;
        }
        check();
        await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`${what}: not within ${timeoutSec}s\n${why()}`);
}
