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

import { planEtcdCluster } from "../../components/etcd/cluster";
import { etcdMemberStep, parseEtcdMemberResult } from "../../components/etcd/member";
import { parseSnapshotResult } from "../../components/etcd/snapshot";
import { parseWalGateResult, walGateSteps } from "../../components/etcd/walGate";
import { hostFirewallPlan } from "../../components/firewall/hostFirewall";
import { parseFsyncGateResult } from "../../components/fsync/fsyncGate";
import { NodeStep, stepPayload } from "../../components/lib/nodeScript";
import { lastJsonLine, remoteRunner } from "../../components/lib/script";
import { parsePreflightResult, PreflightResult } from "../../components/node/facts";
import { formatMs3 } from "../../components/node/latency";
import { ConfigError, parseStackFile, validateConfig } from "../../infra/config";
import { etcdSnapshotSettings, NodePlan, nodeSteps, planNodes } from "../../infra/program";
import { loadOrMakeEtcdPem } from "../support/etcdCerts";

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

/** The latency figures of a preflight, one line per target. */
function latencyLines(f: PreflightResult, indent: string): string[] {
    return f.latency.map(
        (l) =>
            `${indent}latency to ${l.name} ${l.host}:${l.port}: ` +
            (l.medianNs === null || l.worstNs === null ? `no connect in ${l.tries} tries` : `median ${formatMs3(l.medianNs)} ms, worst ${formatMs3(l.worstNs)} ms (${l.connected}/${l.tries})`) +
            (l.thresholdMs === null ? "" : `, threshold ${l.thresholdMs} ms${l.passed ? "" : ": REFUSED"}`),
    );
}

function report(run: NodeRun): string {
    const { plan } = run;
    const out: string[] = [`${plan.name} (${plan.config.role}, ${plan.target.host})`];
    const indent = " ".repeat(26);
    for (const r of run.runs) {
        const label = (LABELS[r.step] ?? r.step).padEnd(16);
        const took = `${r.seconds.toFixed(1)}s`.padStart(6);
        if (r.code !== 0) {
            out.push(`  ${label} FAILED ${took} (exit ${r.code})`, `${indent}${reasonOf(r)}`);
            if (r.step === "preflight") {
                out.push(...latencyLines(parsePreflightResult(r.stdout, plan.name), indent));
            }
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
                ...latencyLines(f, indent),
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
            "order (connect, preflight, firewall apply, firewall confirm, fsync gate), nodes in parallel.\n" +
            "`pulumi up` on the lab stack needs the Pulumi CLI; with it on PATH, `npm run lab` runs that instead.\n",
    );
    const started = Date.now();
    const runs = await Promise.all(plans.map((p) => runNode(state, p)));
    for (const run of runs) {
        console.log(`${report(run)}\n`);
    }
    const slow = new Set(state.nodes.filter((n) => n.slowDisk).map((n) => n.name));
    const delayed = new Set((process.env.LAB_DELAYED_NODES ?? "").split(/[ ,]+/).filter((n) => n !== ""));
    const failed = runs.filter((r) => r.failedStep !== undefined);
    const expected = failed.filter(
        (r) => (r.failedStep === "fio" && slow.has(r.plan.name)) || (r.failedStep === "preflight" && delayed.has(r.plan.name) && /: latency: /.test(r.runs[r.runs.length - 1].stderr)),
    );
    const unexpected = failed.filter((r) => !expected.includes(r));
    console.log(`node layer finished in ${((Date.now() - started) / 1000).toFixed(1)}s: ${runs.length - failed.length} of ${runs.length} nodes ready`);
    for (const r of expected) {
        console.log(
            r.failedStep === "fio"
                ? `  ${r.plan.name}: refused by the fsync gate, as the lab intends (its etcd disk is throttled to 40 write IOPS)`
                : `  ${r.plan.name}: refused by the latency preflight, as the lab intends (its link is delayed, LAB_DELAYED_NODES)`,
        );
    }
    for (const r of unexpected) {
        console.log(`  ${r.plan.name}: FAILED at ${r.failedStep}`);
    }
    if (unexpected.length > 0) {
        return 1;
    }
    return (await etcdLayer(state, cfg, runs)) ? 0 : 1;
}

/**
 * The etcd layer, as `EtcdCluster` runs it: it starts only when every control-plane node passed
 * its node layer (in the program every member depends on every control-plane gate), so a
 * refused node means no member at all, never a cluster smaller than asked. Then install on
 * every control-plane node, one member after another (member step with its health gate, then
 * the WAL fsync gate), snapshots on each running member. Certificates come from openssl here,
 * of the shape `EtcdPki` issues with @pulumi/tls under the engine, and are kept in .lab/etcd-pki
 * between runs as the engine keeps them in its state.
 */
async function etcdLayer(state: LabState, cfg: ReturnType<typeof validateConfig>, runs: NodeRun[]): Promise<boolean> {
    const byName = new Map(runs.map((r) => [r.plan.name, r]));
    const controlPlanes = runs.filter((r) => r.plan.config.role === "control-plane").map((r) => r.plan);
    const refused = runs.filter((r) => r.plan.config.role === "control-plane" && r.failedStep !== undefined);
    if (refused.length > 0) {
        console.log(
            `\netcd: not started, no member created: ${refused.length} of ${controlPlanes.length} control-plane node(s) refused:`,
        );
        for (const r of refused) {
            const failed = r.runs[r.runs.length - 1];
            console.log(`  ${r.plan.name}: ${LABELS[r.failedStep ?? ""] ?? r.failedStep}: ${reasonOf(failed)}`);
        }
        console.log(
            `  etcd waits for every control-plane node: a cluster of ${controlPlanes.length - refused.length} instead of ${controlPlanes.length} ` +
                "would have less fault tolerance than asked (an even count tolerates no more failures than one member fewer).\n" +
                "  Fix the refused node or replace it in the stack config, or override its threshold (nodes.<node>.fsyncThresholdMs), and run again.",
        );
        return true;
    }
    const plan = planEtcdCluster({
        ...cfg.etcd,
        snapshots: etcdSnapshotSettings(cfg),
        clusterToken: cfg.etcd.clusterToken ?? "zerotouch-lab",
        members: controlPlanes.map((p) => ({
            name: p.name,
            target: p.target,
            address: p.config.host,
            dataDir: p.config.etcdDataPath,
        })),
    });
    console.log(`\netcd (${cfg.etcd.source} ${plan.version}, bootstrap member ${plan.bootstrapMember}; members in order: ${plan.members.map((m) => m.node.name).join(", ")})`);
    const started = Date.now();
    const pem = loadOrMakeEtcdPem(
        path.join(ROOT, ".lab", "etcd-pki"),
        controlPlanes.map((p) => ({ name: p.name, address: p.config.host })),
    ).pem;
    const installs = await Promise.all(
        plan.members.map(async (m) => [m.node.name, await runStep(state, byName.get(m.node.name)!.plan, m.install, 600)] as const),
    );
    const installed = new Map(installs);
    let formed = 0;
    for (const m of plan.members) {
        const name = m.node.name;
        const nodePlan = byName.get(name)!.plan;
        const install = installed.get(name)!;
        if (install.code !== 0) {
            console.log(`  ${name}: install FAILED (exit ${install.code})\n      ${reasonOf(install)}`);
            return false;
        }
        const member = await runStep(state, nodePlan, etcdMemberStep({ ...m.member, pem: pem[name] }), 600);
        if (member.code !== 0) {
            console.log(`  ${name}: member FAILED (exit ${member.code})\n      ${reasonOf(member)}`);
            return false;
        }
        const r = parseEtcdMemberResult(member.stdout);
        formed = r.members;
        console.log(`  ${name}: ${r.state}, member ${r.memberId} of cluster ${r.clusterId}, etcd ${r.version}, ${r.members} member(s) healthy after ${r.waitedSeconds}s`);
        const [walStep] = walGateSteps(m.walGate);
        const wal = await runStep(state, nodePlan, walStep, 600);
        if (wal.code !== 0) {
            console.log(`      WAL fsync gate FAILED (exit ${wal.code})\n      ${reasonOf(wal)}`);
            return false;
        }
        const g = parseWalGateResult(wal.stdout);
        console.log(
            `      WAL fsync p99 ${g.walFsync.p99Ms?.toFixed(2)} ms over ${g.walFsync.samples} fsyncs (threshold ${g.walFsync.thresholdMs} ms)${g.walFsync.estimate ? ", an estimate inside its bucket" : ""}; ` +
                `backend commit p99 ${g.backendCommit.p99Ms?.toFixed(2)} ms over ${g.backendCommit.samples} (threshold ${g.backendCommit.thresholdMs} ms)`,
        );
        const snap = await runStep(state, nodePlan, m.snapshots, 300);
        if (snap.code !== 0) {
            console.log(`      snapshots FAILED (exit ${snap.code})\n      ${reasonOf(snap)}`);
            return false;
        }
        parseSnapshotResult(snap.stdout);
        console.log(`      snapshots: timer ${cfg.etcd.snapshots.schedule}, keeping ${cfg.etcd.snapshots.retain} in ${cfg.etcd.snapshots.dir}`);
    }
    console.log(`etcd layer finished in ${((Date.now() - started) / 1000).toFixed(1)}s: ${formed} member(s) healthy`);
    console.log(
        `\nKubernetes: kubernetes.mode is ${cfg.kubernetes.mode} in the lab stack: the k3s binary cannot be downloaded here ` +
            "(no release downloads); with a reachable mirror (kubernetes.k3s.releaseBaseUrl) mode k3s installs it.",
    );
    return formed > 0;
}

main().then(
    (code) => process.exit(code),
    (err: unknown) => {
        console.error(err instanceof ConfigError ? err.message : err instanceof Error ? err.stack ?? err.message : String(err));
        process.exit(1);
    },
);
