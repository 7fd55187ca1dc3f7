import { readFileSync } from "fs";
import * as path from "path";

/**
 * Canned stdout for the node scripts under mocks, taken from recorded real runs and adjusted
 * to the node the command is for (its `ZT_NODE` parameter).
 */
const FIXTURES = path.join(__dirname, "..", "fixtures");

function fixture(rel: string): string {
    return readFileSync(path.join(FIXTURES, rel), "utf8");
}

/** Reads a `ZT_*` parameter back out of a command's stdin payload. */
export function paramOf(stdin: string, key: string): string | undefined {
    const m = new RegExp(`^export ${key}='([^']*)'$`, "m").exec(stdin);
    return m?.[1];
}

function lastLine(text: string): string {
    const lines = text.trim().split("\n");
    return lines[lines.length - 1];
}

/**
 * The recorded preflight, for this node and with the latency figures of the targets this
 * command measures (its `ZT_LATENCY_TARGETS`), judged by its threshold as the node would.
 */
function preflightStdout(stdin: string, node: string): string {
    const obj = JSON.parse(lastLine(fixture("node/preflight-lab.json"))) as { latency: Record<string, unknown>[] } & Record<string, unknown>;
    const recorded = new Map(obj.latency.map((r) => [r.name as string, r]));
    const maxNs = paramOf(stdin, "ZT_MAX_LATENCY_NS") ?? "";
    const maxMs = paramOf(stdin, "ZT_MAX_LATENCY_MS") ?? "";
    const latency = (paramOf(stdin, "ZT_LATENCY_TARGETS") ?? "")
        .split("\n")
        .filter((l) => l !== "")
        .map((line) => {
            const [name, host, port] = line.split(" ");
            const r = recorded.get(name)!;
            const passed = maxNs === "" || (r.medianNs as number) <= Number(maxNs);
            return { ...r, host, port: Number(port), thresholdMs: maxMs === "" ? null : Number(maxMs), passed };
        });
    return JSON.stringify({ ...obj, node, latency });
}

export interface NodeStdoutOptions {
    /** Nodes whose preflight reports failure. */
    readonly failPreflight?: readonly string[];
}

export function nodeStdout(type: string, name: string, inputs: Record<string, any>, _opts: NodeStdoutOptions = {}): string | undefined {
    if (type !== "command:remote:Command") {
        return undefined;
    }
    const stdin = String(inputs.stdin ?? "");
    const node = paramOf(stdin, "ZT_NODE") ?? name;
    const withNode = (rel: string) => {
        const obj = JSON.parse(lastLine(fixture(rel))) as Record<string, unknown>;
        return JSON.stringify({ ...obj, node });
    };
    if (name.endsWith("-connect")) {
        return withNode("node/connect.json");
    }
    if (name.endsWith("-preflight")) {
        return preflightStdout(stdin, node);
    }
    if (name.endsWith("-fio")) {
        return withNode("fio/gate-pass.stdout");
    }
    if (name.endsWith("-apply")) {
        return withNode("firewall/apply.stdout");
    }
    if (name.endsWith("-confirm")) {
        return withNode("firewall/confirm.stdout");
    }
    if (name.endsWith("-member")) {
        return withNode(paramOf(stdin, "ZT_BOOTSTRAP") === "true" ? "etcd/member-bootstrapped.stdout" : "etcd/member-joined.stdout");
    }
    if (name.endsWith("-wal-gate")) {
        return withNode("etcd/gate-normal.stdout");
    }
    if (name.endsWith("-kubeconfig")) {
        return withNode("k8s/kubeconfig.stdout");
    }
    return "{}";
}
