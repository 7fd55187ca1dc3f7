/**
 * The real Pulumi engine for the engine tests: the CLI, language host and plugins built into the
 * toolchain cache (ZT_TOOLCHAIN_BIN, set by `npm run test:engine`), first on PATH, so that the
 * plugins are used as ambient plugins; a file backend and a passphrase secrets provider under a
 * state folder of the test's own, and a PULUMI_HOME there too (nothing of the user's is read or
 * written). Every run is bounded and never throws for a non-zero exit.
 */
import { spawnSync } from "child_process";
import { mkdirSync } from "fs";
import * as path from "path";

import { toolchainDir } from "../support/toolchain";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");

export interface PulumiRun {
    code: number;
    stdout: string;
    stderr: string;
    seconds: number;
}


export class PulumiCli {
    readonly home: string;

    constructor(
        /** Where the file backend keeps its state (`file://<stateDir>`). */
        readonly stateDir: string,
        readonly passphrase = "zerotouch-lab",
        readonly bin = toolchainDir("npm run test:engine"),
    ) {
        this.home = path.join(stateDir, ".pulumi-home");
        mkdirSync(this.home, { recursive: true });
    }

    env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
        return {
            ...process.env,
            PATH: `${this.bin}:${process.env.PATH ?? ""}`,
            PULUMI_HOME: this.home,
            PULUMI_BACKEND_URL: `file://${this.stateDir}`,
            PULUMI_CONFIG_PASSPHRASE: this.passphrase,
            PULUMI_SKIP_UPDATE_CHECK: "true",
            PULUMI_SKIP_CONFIRMATIONS: "true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
            ...extra,
        };
    }

    /** Runs `pulumi <args>` in `cwd` (the repository by default). */
    run(args: readonly string[], opts: { cwd?: string; input?: string; timeoutSec?: number; env?: Record<string, string> } = {}): PulumiRun {
        const started = process.hrtime.bigint();
        const r = spawnSync(path.join(this.bin, "pulumi"), ["--non-interactive", ...args], {
            cwd: opts.cwd ?? REPO_ROOT,
            env: this.env(opts.env),
            input: opts.input ?? "",
            encoding: "utf8",
            timeout: (opts.timeoutSec ?? 1800) * 1000,
            killSignal: "SIGKILL",
            maxBuffer: 256 * 1024 * 1024,
        });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        return { code: r.status ?? 124, stdout: r.stdout ?? "", stderr: `${r.stderr ?? ""}${r.error ? `\n${String(r.error)}` : ""}`, seconds };
    }

    /** `run` that must exit 0; throws with the end of its output otherwise. */
    must(args: readonly string[], opts: Parameters<PulumiCli["run"]>[1] = {}): PulumiRun {
        const r = this.run(args, opts);
        if (r.code !== 0) {
            throw new Error(`pulumi ${args.join(" ")}: exit ${r.code}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
        }
        return r;
    }

    /** The stack's outputs (secrets in clear only with `showSecrets`). */
    outputs(stack: string, showSecrets = false, cwd?: string): Record<string, unknown> {
        const r = this.must(["stack", "output", "--stack", stack, "--json", ...(showSecrets ? ["--show-secrets"] : [])], { cwd });
        return JSON.parse(r.stdout) as Record<string, unknown>;
    }
}
