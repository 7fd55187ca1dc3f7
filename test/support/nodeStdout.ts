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
        return withNode("node/preflight-lab.json");
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
