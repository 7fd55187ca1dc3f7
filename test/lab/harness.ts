/**
 * The lab harness: what lab tests use to reach the nodes that `test/lab/lab.sh up` started.
 *
 * Everything goes over real SSH as root with the lab's key and the host keys pinned
 * (StrictHostKeyChecking=yes against the recorded known_hosts), exactly like the product's
 * `remote.Command`s: `runStep` sends the same payload (`scriptPayload`) to the same fixed
 * runner (`remoteRunner`). Every call is bounded by a timeout and never throws for a non-zero
 * exit: the exit code is in the result.
 *
 * Network safety: probes only go to lab addresses (10.213.0.0/16) or loopback, and commands in
 * namespaces only run in the lab's own (`zt-*`).
 */
import { spawnSync } from "child_process";
import { createHash } from "crypto";
import { readFileSync } from "fs";
import { isIPv4 } from "net";
import { constants } from "os";
import * as path from "path";
import { z } from "zod";

import { NodeStep, stepPayload } from "../../components/lib/nodeScript";
import { remoteRunner, ScriptAction, shellQuote } from "../../components/lib/script";
import { parseStackFile, PlatformConfig, validateConfig } from "../../infra/config";
import { NodePlan, planNodes } from "../../infra/program";

export interface LabNode {
    name: string;
    role: "control-plane" | "worker";
    address: string;
    hostKey: string;
    etcdDataPath: string;
    slowDisk: boolean;
}

export interface LabClient {
    netns: string;
    address: string;
}

export interface Lab {
    keyPath: string;
    knownHostsPath: string;
    vpnCidr: string;
    managementCidr: string;
    nodes: LabNode[];
    clients: { vpn: LabClient; internet: LabClient };
}

export interface RunResult {
    /** Exit code; 124 when the timeout ended the command, 128+n when signal n killed it. */
    code: number;
    stdout: string;
    stderr: string;
    /** Wall-clock seconds the command took. */
    seconds: number;
}

/** A node given as itself or by name (`"lab-cp-1"`). */
export type NodeRef = LabNode | string;

/**
 * Where a probe starts: a network namespace, a node, or by name: `"vpn"`/`"internet"` (the lab
 * clients), a client's namespace (`"zt-vpn"`) or a node name.
 */
export type ProbeSource = { netns: string } | { node: NodeRef } | string;

/** Root of the repository (two levels above this file). */
export const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** The lab stack (`Pulumi.lab.yaml`, as `lab.sh up` writes it) validated as the program does, with the lab's key, and each node's plan. */
export function labStackPlans(lab: Lab): { cfg: PlatformConfig; plans: Map<string, NodePlan> } {
    const text = readFileSync(path.join(REPO_ROOT, "Pulumi.lab.yaml"), "utf8");
    const { raw, secretKeys } = parseStackFile(text, { sshPrivateKey: readFileSync(lab.keyPath, "utf8") });
    const cfg = validateConfig(raw, secretKeys);
    return { cfg, plans: new Map(planNodes(cfg).map((p) => [p.name, p])) };
}

/** The address range the lab owns; no probe leaves it. */
export const LAB_RANGE = "10.213.0.0/16";

/** Default timeouts in seconds. */
export const TIMEOUTS = { ssh: 120, step: 600, netns: 30, probe: 3 } as const;

const ipv4 = z.string().refine((s) => isIPv4(s), { message: "an IPv4 address" });
const clientSchema = z.object({ netns: z.string().regex(/^zt-[a-z0-9-]+$/), address: ipv4 });
const labSchema = z.object({
    keyPath: z.string().min(1),
    knownHostsPath: z.string().min(1),
    vpnCidr: z.string().min(1),
    managementCidr: z.string().min(1),
    nodes: z
        .array(
            z.object({
                name: z.string().regex(/^[a-z0-9-]+$/),
                role: z.enum(["control-plane", "worker"]),
                address: ipv4,
                hostKey: z.string().regex(/^ssh-ed25519 [A-Za-z0-9+/=]+$/),
                etcdDataPath: z.string().startsWith("/"),
                slowDisk: z.boolean(),
            }),
        )
        .min(1),
    clients: z.object({ vpn: clientSchema, internet: clientSchema }),
});

/** Path of the lab's state file: `ZT_LAB_STATE`, else `.lab/state.json` in the repository. */
export function labStatePath(): string {
    return process.env.ZT_LAB_STATE ?? path.join(REPO_ROOT, ".lab", "state.json");
}

/** Reads the state file `lab.sh up` wrote. Throws, saying how to start the lab, when it is missing or malformed. */
export function loadLab(stateFile?: string): Lab {
    const file = stateFile ?? labStatePath();
    let text: string;
    try {
        text = readFileSync(file, "utf8");
    } catch {
        throw new Error(`lab state ${file} not found: start the lab with \`npm run lab:up\` (as root)`);
    }
    const parsed = labSchema.safeParse(JSON.parse(text) as unknown);
    if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
        throw new Error(`lab state ${file} is malformed (${problems}): run \`npm run lab:up\` again`);
    }
    for (const node of parsed.data.nodes) {
        assertLabAddress(node.address, `node ${node.name}`);
    }
    return parsed.data;
}

/** The node of that name; throws listing the lab's nodes when there is none. */
export function labNode(lab: Lab, ref: NodeRef): LabNode {
    if (typeof ref !== "string") {
        return ref;
    }
    const node = lab.nodes.find((n) => n.name === ref);
    if (node === undefined) {
        throw new Error(`no lab node ${JSON.stringify(ref)}; the lab has ${lab.nodes.map((n) => n.name).join(", ")}`);
    }
    return node;
}

/** Control-plane nodes first in name order, then workers. */
export function nodesByRole(lab: Lab, role: LabNode["role"]): LabNode[] {
    return lab.nodes.filter((n) => n.role === role);
}

function ipv4ToInt(address: string): number {
    return address.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

/** Whether an IPv4 address lies in a CIDR. */
export function inCidr(address: string, cidr: string): boolean {
    const [base, bitsText] = cidr.split("/");
    const bits = Number(bitsText ?? "32");
    if (!isIPv4(address) || !isIPv4(base) || !Number.isInteger(bits) || bits < 0 || bits > 32) {
        return false;
    }
    const size = 2 ** (32 - bits);
    return Math.floor(ipv4ToInt(address) / size) === Math.floor(ipv4ToInt(base) / size);
}

/** Throws unless the address is a lab address or loopback: tests send traffic nowhere else. */
export function assertLabAddress(address: string, what = "address"): void {
    if (!inCidr(address, LAB_RANGE) && !inCidr(address, "127.0.0.0/8")) {
        throw new Error(`${what} ${JSON.stringify(address)} is outside the lab range ${LAB_RANGE}: lab tests send traffic only to the lab`);
    }
}

function run(command: string, argv: readonly string[], input: string | NodeJS.ArrayBufferView, timeoutSec: number): RunResult {
    const started = process.hrtime.bigint();
    const r = spawnSync(command, argv, {
        input,
        encoding: "utf8",
        timeout: Math.round(timeoutSec * 1000),
        killSignal: "SIGKILL",
        maxBuffer: 256 * 1024 * 1024,
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const stdout = r.stdout ?? "";
    let stderr = r.stderr ?? "";
    const error: NodeJS.ErrnoException | undefined = r.error;
    if (error?.code === "ETIMEDOUT") {
        stderr += `\n[harness] ${command} timed out after ${timeoutSec}s`;
        return { code: 124, stdout, stderr, seconds };
    }
    if (error !== undefined) {
        throw new Error(`${command}: ${error.message}`);
    }
    if (r.status === null) {
        const signal = r.signal ?? "SIGKILL";
        return { code: 128 + (constants.signals[signal] ?? 9), stdout, stderr, seconds };
    }
    return { code: r.status, stdout, stderr, seconds };
}

/** ssh options: lab key only, pinned host key, no user or system ssh config, bounded dial. */
export function sshArgs(lab: Lab, ref: NodeRef): string[] {
    const node = labNode(lab, ref);
    return [
        "-F", "/dev/null",
        "-i", lab.keyPath,
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", `UserKnownHostsFile=${lab.knownHostsPath}`,
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "UpdateHostKeys=no",
        "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=6",
        "-o", "LogLevel=ERROR",
        "-p", "22",
        `root@${node.address}`,
    ];
}

/** Runs a command line on a node over SSH; `stdin` is sent as its standard input (empty when absent). */
export function sshRun(lab: Lab, node: NodeRef, remoteCommand: string, stdin?: string, timeoutSec: number = TIMEOUTS.ssh): RunResult {
    return run("ssh", [...sshArgs(lab, node), remoteCommand], stdin ?? "", timeoutSec);
}

/**
 * Runs a product step on a node the way `nodeScript` does: the fixed runner as the command line,
 * the parameter preamble and script as stdin, `ZT_ACTION` set to the action.
 */
export function runStep(
    lab: Lab,
    node: NodeRef,
    step: NodeStep,
    action: ScriptAction = "create",
    timeoutSec: number = TIMEOUTS.step,
): RunResult {
    const payload = stepPayload(step);
    return sshRun(lab, node, remoteRunner("root", action), payload.stdin, timeoutSec);
}

/**
 * Copies a local file to a node over SSH (written beside the target, then renamed into place),
 * unless the node already has a file with the same sha256 there. Returns whether it copied.
 */
export function copyToNode(lab: Lab, node: NodeRef, localFile: string, remotePath: string, mode = "0755", timeoutSec = 300): boolean {
    const content = new Uint8Array(readFileSync(localFile));
    const sha = createHash("sha256").update(content).digest("hex");
    const q = shellQuote(remotePath);
    if (sshRun(lab, node, `echo '${sha}  '${q} | sha256sum --check --status`).code === 0) {
        return false;
    }
    const r = run("ssh", [...sshArgs(lab, node), `mkdir -p "$(dirname ${q})" && cat >${q}.part && chmod ${mode} ${q}.part && mv -f ${q}.part ${q}`], content, timeoutSec);
    if (r.code !== 0) {
        throw new Error(`copying ${localFile} to ${labNode(lab, node).name}:${remotePath}: exit ${r.code}: ${r.stderr}`);
    }
    return true;
}

/** Runs argv inside one of the lab's network namespaces (`ip netns exec`), on the host; `stdin` is its standard input. */
export function netnsRun(netns: string, argv: string[], timeoutSec: number = TIMEOUTS.netns, stdin = ""): RunResult {
    if (!/^zt-[a-z0-9-]+$/.test(netns)) {
        throw new Error(`netns ${JSON.stringify(netns)} is not a lab namespace (zt-*)`);
    }
    if (argv.length === 0) {
        throw new Error("netnsRun: empty argv");
    }
    return run("ip", ["netns", "exec", netns, ...argv], stdin, timeoutSec);
}

function probeSource(lab: Lab, from: ProbeSource): { netns: string } | { node: LabNode } {
    if (typeof from !== "string") {
        return "netns" in from ? from : { node: labNode(lab, from.node) };
    }
    if (from === "vpn" || from === "internet") {
        return { netns: lab.clients[from].netns };
    }
    const client = Object.values(lab.clients).find((c) => c.netns === from);
    return client !== undefined ? { netns: client.netns } : { node: labNode(lab, from) };
}

/**
 * Whether a TCP connection from `from` to address:port is accepted within `timeoutSec`
 * (bash's /dev/tcp under `timeout`, so a dropped SYN counts as closed). Throws when the probe
 * cannot be run at all, e.g. SSH to the source node fails.
 */
export function tcpProbe(from: ProbeSource, lab: Lab, address: string, port: number, timeoutSec: number = TIMEOUTS.probe): boolean {
    assertLabAddress(address, "probe target");
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new Error(`probe port ${port} is not a TCP port`);
    }
    const connect = 'exec 3<>"/dev/tcp/$1/$2"';
    const source = probeSource(lab, from);
    if ("netns" in source) {
        const r = netnsRun(source.netns, ["timeout", String(timeoutSec), "bash", "-c", connect, "probe", address, String(port)], timeoutSec + 10);
        return r.code === 0;
    }
    const command = ["timeout", String(timeoutSec), "bash", "-c", shellQuote(connect), "probe", address, String(port)].join(" ");
    const r = sshRun(lab, source.node, command, undefined, timeoutSec + 30);
    if (r.code === 255) {
        throw new Error(`tcpProbe from ${source.node.name}: ssh failed: ${r.stderr.trim()}`);
    }
    return r.code === 0;
}

/** p99 of fdatasync latency in milliseconds from fio's JSON output (`--output-format=json`). */
export function fioSyncP99Ms(fioJson: string): number {
    const doc = JSON.parse(fioJson) as { jobs?: { sync?: { lat_ns?: { percentile?: Record<string, number> } } }[] };
    const p99 = doc.jobs?.[0]?.sync?.lat_ns?.percentile?.["99.000000"];
    if (typeof p99 !== "number") {
        throw new Error("fio output has no jobs[0].sync.lat_ns.percentile[\"99.000000\"] (was --fdatasync=1 given?)");
    }
    return p99 / 1e6;
}

/**
 * A Python program binding TCP listeners on an address (argv[1]) for ports (argv[2:]), ports
 * something already listens on left to their owner; it ends itself after an hour. Probes tell a
 * port that answers (a listener, or closed: reachable) from one the firewall drops.
 */
export const LISTENER = `
import select, signal, socket, sys
signal.alarm(3600)
socks = []
for p in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((sys.argv[1], int(p)))
    except OSError as e:
        print("port %s: %s (left to its owner)" % (p, e), flush=True)
        continue
    s.listen(128)
    socks.append(s)
while socks:
    for s in select.select(socks, [], [])[0]:
        c, _ = s.accept()
        c.close()
`;

const LISTENER_UNIT = "zt-lab-listen";

/** Starts listeners on a node's address for the ports (a transient unit); throws if it cannot. */
export function startListeners(lab: Lab, node: NodeRef, ports: readonly number[]): void {
    const n = labNode(lab, node);
    const script = Buffer.from(LISTENER).toString("base64");
    const r = sshRun(
        lab,
        n,
        `systemctl stop ${LISTENER_UNIT} 2>/dev/null || true; echo ${script} | base64 -d >/run/${LISTENER_UNIT}.py && ` +
            `systemd-run --quiet --collect --unit=${LISTENER_UNIT} python3 /run/${LISTENER_UNIT}.py ${n.address} ${ports.join(" ")}`,
    );
    if (r.code !== 0) {
        throw new Error(`listeners on ${n.name}: exit ${r.code}: ${r.stderr}`);
    }
}

/** Stops the listeners `startListeners` started. */
export function stopListeners(lab: Lab, node: NodeRef): void {
    sshRun(lab, labNode(lab, node), `systemctl stop ${LISTENER_UNIT} 2>/dev/null; rm -f /run/${LISTENER_UNIT}.py`);
}
