/**
 * The main job on the lab without the Pulumi engine: runs the program's node layer, i.e. the
 * very steps `infra/program.ts` turns into commands (same scripts, same parameters, same
 * order per node, nodes in parallel), over real SSH against the lab's nodes, and prints per
 * node the preflight facts, the measured fsync p99 and the firewall state.
 *
 * Usage: ts-node test/lab/nodeLayer.ts [stack file, default Pulumi.lab.yaml]
 */
import { spawn } from "child_process";
import { readFileSync } from "fs";
import * as path from "path";

import { hostFirewallPlan } from "../../components/firewall/hostFirewall";
import { parseFsyncGateResult } from "../../components/fsync/fio";
import { NodeStep, stepPayload } from "../../components/lib/nodeScript";
import { lastJsonLine, remoteRunner } from "../../components/lib/script";
import { parsePreflightResult } from "../../components/node/facts";
import { ConfigError, parseStackFile, validateConfig } from "../../infra/config";
import { NodePlan, nodeSteps, planNodes } from "../../infra/program";

const ROOT = path.join(__dirname, "..", "..");

interface LabState {
    keyPath: string;
    knownHostsPath: string;
    nodes: { name: string; slowDisk: boolean }[];
}

interface StepRun {
    step: string;
    code: number;
    stdout: string;
    stderr: string;
    seconds: number;
}

interface NodeRun {
    plan: NodePlan;
    runs: StepRun[];
    failedStep?: string;
}

/** Runs one step over SSH with the pinned host key; resolves with its exit code and output. */
function runStep(state: LabState, plan: NodePlan, step: NodeStep, timeoutSec: number): Promise<StepRun> {
    const payload = stepPayload(step);
    const args = [
        "-i", state.keyPath,
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", `UserKnownHostsFile=${state.knownHostsPath}`,
        "-o", "ConnectTimeout=10",
        "-p", String(plan.target.port),
        `${plan.target.user}@${plan.target.host}`,
        remoteRunner(plan.target.user, "create"),
    ];
    const started = Date.now();
    return new Promise((resolve) => {
        const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        const timer = setTimeout(() => child.kill("SIGKILL"), timeoutSec * 1000);
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("close", (code) => {
            clearTimeout(timer);
            resolve({ step: step.name, code: code ?? 124, stdout, stderr, seconds: (Date.now() - started) / 1000 });
        });
        child.stdin.end(payload.stdin);
    });
}

/** A node's chain: each step after the one before; the chain stops at the first failure. */
async function runNode(state: LabState, plan: NodePlan): Promise<NodeRun> {
    const run: NodeRun = { plan, runs: [] };
    for (const step of nodeSteps(plan)) {
        const result = await runStep(state, plan, step, 600);
        run.runs.push(result);
        if (result.code !== 0) {
            run.failedStep = step.name;
            break;
        }
    }
    return run;
}

function reasonOf(result: StepRun): string {
    const lines = result.stderr.split("\n").filter((l) => /zerotouch|failed|error/i.test(l));
    return (lines.length > 0 ? lines : result.stderr.trim().split("\n").slice(-3)).join("\n      ");
}

const LABELS: Record<string, string> = {
    connect: "connect",
    preflight: "preflight",
    fio: "fsync gate",
    apply: "firewall apply",
    confirm: "firewall confirm",
};

function report(run: NodeRun): string {
    const { plan } = run;
    const out: string[] = [`${plan.name} (${plan.config.role}, ${plan.target.host})`];
    const indent = " ".repeat(26);
    for (const r of run.runs) {
        const label = (LABELS[r.step] ?? r.step).padEnd(16);
        const took = `${r.seconds.toFixed(1)}s`.padStart(6);
        if (r.code !== 0) {
            out.push(`  ${label} FAILED ${took} (exit ${r.code})`, `${indent}${reasonOf(r)}`);
            continue;
        }
        if (r.step === "connect") {
            const c = lastJsonLine(r.stdout, "connect") as { hostname: string; bootState: string };
            out.push(`  ${label} ok ${took}  hostname ${c.hostname}, boot ${c.bootState}`);
        } else if (r.step === "preflight") {
            const f = parsePreflightResult(r.stdout, plan.name);
            out.push(
                `  ${label} ok ${took}  ${f.virtualization}, ${f.os.prettyName}, kernel ${f.kernel}, ${f.cpus} CPUs, ${f.memoryMiB} MiB`,
                `${indent}etcd disk: ${f.etcdDisk.description}`,
            );
        } else if (r.step === "fio") {
            const g = parseFsyncGateResult(r.stdout);
            const runs = g.runs.map((x) => (x.p99Ns / 1e6).toFixed(2)).join(", ");
            out.push(`  ${label} ok ${took}  fio fdatasync p99 ${g.worstP99Ms.toFixed(2)} ms (runs: ${runs} ms), threshold ${g.thresholdMs} ms`);
        } else {
            const j = lastJsonLine(r.stdout, r.step) as Record<string, unknown>;
            const fields = ["changed", "rollbackArmed", "confirmed"].filter((k) => k in j).map((k) => `${k} ${String(j[k])}`);
            out.push(`  ${label} ok ${took}  ${fields.join(", ")}; ruleset ${String(j.hash).slice(0, 12)}`);
            if (r.step === "confirm") {
                const open = hostFirewallPlan(plan.firewall).openPorts.map((p) => `${p.ports}/${p.protocol} from ${p.from.join("+")}`);
                out.push(`${indent}inbound open: ${open.join("; ")}; all else dropped`);
            }
        }
    }
    return out.join("\n");
}

async function main(): Promise<number> {
    const stackFile = path.resolve(process.argv[2] ?? path.join(ROOT, "Pulumi.lab.yaml"));
    const state = JSON.parse(readFileSync(path.join(ROOT, ".lab", "state.json"), "utf8")) as LabState;
    const key = readFileSync(state.keyPath, "utf8");
    const { raw, secretKeys } = parseStackFile(readFileSync(stackFile, "utf8"), { sshPrivateKey: key });
    const cfg = validateConfig(raw, secretKeys);
    const plans = planNodes(cfg);

    console.log(`zerotouch node layer on the lab (${plans.length} nodes, ${path.basename(stackFile)})`);
    console.log(
        "The Pulumi CLI is not on PATH: running the program's node-layer steps directly over SSH, in the program's\n" +
            "order (connect, preflight, fsync gate, firewall apply, firewall confirm), nodes in parallel.\n" +
            "`pulumi up` on the lab stack needs the Pulumi CLI; with it on PATH, `npm run lab` runs that instead.\n",
    );
    const started = Date.now();
    const runs = await Promise.all(plans.map((p) => runNode(state, p)));
    for (const run of runs) {
        console.log(`${report(run)}\n`);
    }
    const slow = new Set(state.nodes.filter((n) => n.slowDisk).map((n) => n.name));
    const failed = runs.filter((r) => r.failedStep !== undefined);
    const expected = failed.filter((r) => r.failedStep === "fio" && slow.has(r.plan.name));
    const unexpected = failed.filter((r) => !expected.includes(r));
    console.log(`node layer finished in ${((Date.now() - started) / 1000).toFixed(1)}s: ${runs.length - failed.length} of ${runs.length} nodes ready`);
    for (const r of expected) {
        console.log(`  ${r.plan.name}: refused by the fsync gate, as the lab intends (its etcd disk is throttled to 40 write IOPS)`);
    }
    for (const r of unexpected) {
        console.log(`  ${r.plan.name}: FAILED at ${r.failedStep}`);
    }
    return unexpected.length > 0 ? 1 : 0;
}

main().then(
    (code) => process.exit(code),
    (err: unknown) => {
        console.error(err instanceof ConfigError ? err.message : err instanceof Error ? err.stack ?? err.message : String(err));
        process.exit(1);
    },
);
