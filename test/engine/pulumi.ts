/**
 * The real Pulumi engine for the engine tests: the CLI, language host and plugins built into the
 * toolchain cache (ZT_TOOLCHAIN_BIN, set by `npm run test:engine`), first on PATH, so that the
 * plugins are used as ambient plugins; a file backend and a passphrase secrets provider under a
 * state folder of the test's own, and a PULUMI_HOME there too (nothing of the user's is read or
 * written). Every run is bounded and never throws for a non-zero exit.
 */
import { spawnSync } from "child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";
import { parse, stringify } from "yaml";

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

/** The lab stack's config file, written by `lab.sh up` for the running lab. */
export const LAB_STACK_FILE = path.join(REPO_ROOT, "Pulumi.lab.yaml");

/**
 * Writes `Pulumi.<stack>.yaml` from the lab stack's config (Pulumi.lab.yaml, which is left alone):
 * its config without its secret values, keeping only `nodes` when given, with `edit` applied.
 * What the stack itself has already set in that file (its secrets provider's salt, its secret
 * values) is kept. Returns the file's path.
 */
export function writeLabStackFile(stack: string, opts: { nodes?: readonly string[]; edit?: (config: Record<string, any>) => void } = {}): string {
    const isSecret = (v: unknown): boolean => typeof v === "object" && v !== null && "secure" in v;
    const { config } = parse(readFileSync(LAB_STACK_FILE, "utf8")) as { config: Record<string, any> };
    for (const key of Object.keys(config).filter((k) => isSecret(config[k]))) {
        delete config[key];
    }
    if (opts.nodes !== undefined) {
        const unknown = opts.nodes.filter((n) => !(n in config["zerotouch:nodes"]));
        if (unknown.length > 0) {
            throw new Error(`${LAB_STACK_FILE} has no node ${unknown.join(", ")}`);
        }
        config["zerotouch:nodes"] = Object.fromEntries(opts.nodes.map((n) => [n, config["zerotouch:nodes"][n]]));
    }
    opts.edit?.(config);
    const target = path.join(REPO_ROOT, `Pulumi.${stack}.yaml`);
    const own = (existsSync(target) ? parse(readFileSync(target, "utf8")) ?? {} : {}) as { config?: Record<string, unknown> } & Record<string, unknown>;
    const ownSecrets = Object.fromEntries(Object.entries(own.config ?? {}).filter(([, v]) => isSecret(v)));
    const file = { ...own, config: { ...config, ...ownSecrets } };
    writeFileSync(target, `# Written from Pulumi.lab.yaml for the engine's lab runs; rewritten on every run.\n${stringify(file, { lineWidth: 0 })}`);
    return target;
}

/**
 * The engine runs' fsync threshold: the lab's disks are files on the build machine's shared disk,
 * where fio's p99 reaches 8 ms under the load of a full CI run; 50 ms, as the lab's WAL threshold
 * (a throttled disk measures about 100 ms and is still refused).
 */
export function raiseFsyncThreshold(config: Record<string, any>): void {
    config["zerotouch:fsyncGate"] = { ...config["zerotouch:fsyncGate"], thresholdMs: 50 };
}

/**
 * The EEA policy config for the lab (policy/config.eea.json with the lab's VPN range and the pod
 * range as the allowed sources of management ports, and the host serving the lab's manifests
 * repository, the management address, as an allowed endpoint), changed by `edit`, written into
 * `dir`. Returns its path.
 */
export function labPolicyConfig(
    lab: { vpnCidr: string; managementCidr: string },
    dir: string,
    edit: (config: Record<string, Record<string, any>>) => void = () => undefined,
): string {
    const eea = JSON.parse(readFileSync(path.join(REPO_ROOT, "policy", "config.eea.json"), "utf8")) as Record<string, Record<string, any>>;
    eea["firewall-management-ports"].allowedSourceCidrs = [lab.vpnCidr, "10.42.0.0/16"];
    eea["endpoint-hosts-allowed"].allowedHosts = [...(eea["endpoint-hosts-allowed"].allowedHosts as string[]), lab.managementCidr.split("/")[0]];
    edit(eea);
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `policy.${Math.random().toString(36).slice(2, 8)}.json`);
    writeFileSync(file, JSON.stringify(eea, null, 2));
    return file;
}
