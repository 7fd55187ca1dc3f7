import * as path from "path";
import { z } from "zod";

import { COMMON_LIB, NodeStep } from "../lib/nodeScript";
import { parseResultLine } from "../lib/result";
import { ScriptParams } from "../lib/script";
import { stepArgChecks } from "../lib/stepArgs";

/** The snapshot script (actions create, save, delete); also run as is by the tests and the lab. */
export const SNAPSHOT_SCRIPT = path.join(__dirname, "scripts", "etcd-snapshot.sh");
/** The restore script (actions verify, restore), run by an operator: see docs/etcd-restore.md. */
export const RESTORE_SCRIPT = path.join(__dirname, "scripts", "etcd-restore.sh");

/** What the `create` action installs on the node (the timer runs the installed script). */
export const SNAPSHOT_INSTALLED = {
    script: "/usr/local/lib/zerotouch/etcd-snapshot",
    envFile: "/etc/zerotouch/etcd-snapshot.env",
    service: "zerotouch-etcd-snapshot.service",
    timer: "zerotouch-etcd-snapshot.timer",
} as const;

/** Client TLS files on the node for the snapshot's connection to etcd. */
export interface EtcdSnapshotTls {
    /** CA bundle that verifies etcd's server certificate. */
    readonly caFile: string;
    /** Client certificate (the PKI component's `backup` certificate) and its key. */
    readonly certFile: string;
    readonly keyFile: string;
}

/** What decides a node's snapshots: plain values, so the steps are pure data. */
export interface EtcdSnapshotStepArgs {
    /** Node name (a DNS label); the snapshots' file name prefix. */
    readonly node: string;
    /** etcdctl on the node: /usr/local/bin/etcdctl (release) or /usr/bin/etcdctl (preinstalled). */
    readonly etcdctl: string;
    /** etcd's client URL as seen on the node. Defaults to https://127.0.0.1:2379; the default is applied by the script. */
    readonly endpoint?: string;
    /**
     * Client TLS files on the node. Defaults to /etc/etcd/pki/ca.crt, /etc/etcd/pki/backup.crt and
     * /etc/etcd/pki/backup.key; the defaults are applied by the script.
     */
    readonly tls?: EtcdSnapshotTls;
    /** Directory of the snapshots on the node. Defaults to /var/backups/etcd; the default is applied by the script. */
    readonly dir?: string;
    /** How many snapshots of the node to keep, 1-1000. Defaults to 24; the default is applied by the script. */
    readonly retain?: number;
    /** When snapshots are taken: a systemd OnCalendar expression. Defaults to hourly; the default is applied by the script. */
    readonly schedule?: string;
}

const ENDPOINT = /^https?:\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$/;
const SAFE_PATH = /^(\/[A-Za-z0-9._@+-]+)+$/;
const SCHEDULE = /^[A-Za-z0-9*:,./~-]+( [A-Za-z0-9*:,./~-]+)*$/;
const MAX_RETAIN = 1000;
const PATH_ALLOWED = "allowed: an absolute path of letters, digits and . _ @ + - (no . or .. components)";

const { invalid, checkNode } = stepArgChecks("etcd snapshots");

function isSafePath(p: unknown): p is string {
    return typeof p === "string" && SAFE_PATH.test(p) && !`${p}/`.includes("/./") && !`${p}/`.includes("/../");
}

/**
 * The node's snapshots as steps (one step, `snapshots`): `create` installs a systemd timer that
 * saves a verified snapshot on schedule and keeps the newest `retain`; `delete` removes the timer
 * and keeps the snapshots. Pure: a component and a lab runner both use it. Throws on a value the
 * script would refuse, naming the node, the key, the value and what is allowed.
 */
export function etcdSnapshotSteps(args: EtcdSnapshotStepArgs): NodeStep[] {
    const { node } = args;
    checkNode(node);
    if (!isSafePath(args.etcdctl)) {
        throw invalid(node, "etcdctl", args.etcdctl, `${PATH_ALLOWED}, such as /usr/local/bin/etcdctl or /usr/bin/etcdctl`);
    }
    if (args.endpoint !== undefined && !ENDPOINT.test(args.endpoint)) {
        throw invalid(node, "endpoint", args.endpoint, "allowed: an etcd client URL scheme://host:port such as https://127.0.0.1:2379, without a path");
    }
    if (args.tls !== undefined) {
        for (const key of ["caFile", "certFile", "keyFile"] as const) {
            if (!isSafePath(args.tls[key])) {
                throw invalid(node, `tls.${key}`, args.tls[key], PATH_ALLOWED);
            }
        }
    }
    if (args.dir !== undefined && !isSafePath(args.dir)) {
        throw invalid(node, "dir", args.dir, PATH_ALLOWED);
    }
    if (args.retain !== undefined && (!Number.isInteger(args.retain) || args.retain < 1 || args.retain > MAX_RETAIN)) {
        throw invalid(node, "retain", args.retain, `allowed: an integer from 1 to ${MAX_RETAIN}`);
    }
    if (args.schedule !== undefined && (!SCHEDULE.test(args.schedule) || args.schedule.length > 100)) {
        throw invalid(
            node,
            "schedule",
            args.schedule,
            "allowed: a systemd OnCalendar expression (letters, digits, * : , . / ~ - and single spaces, at most 100 characters) such as hourly or *-*-* 00/6:00:00",
        );
    }
    const optional = (key: string, value: string | number | undefined): ScriptParams =>
        value === undefined ? {} : { [key]: value };
    const params: ScriptParams = {
        ZT_NODE: node,
        ZT_ETCDCTL: args.etcdctl,
        ...optional("ZT_ENDPOINT", args.endpoint),
        ...optional("ZT_CACERT", args.tls?.caFile),
        ...optional("ZT_CERT", args.tls?.certFile),
        ...optional("ZT_KEY", args.tls?.keyFile),
        ...optional("ZT_SNAPSHOT_DIR", args.dir),
        ...optional("ZT_RETAIN", args.retain),
        ...optional("ZT_SCHEDULE", args.schedule),
    };
    return [{ name: "snapshots", script: SNAPSHOT_SCRIPT, params, hasDelete: true, sensitive: false, libraries: [COMMON_LIB] }];
}

const count = z.number().int().nonnegative();
const absolute = z.string().startsWith("/");

const createSchema = z.strictObject({
    action: z.literal("create"),
    node: z.string().min(1),
    changed: z.boolean(),
    schedule: z.string().min(1),
    snapshotDir: absolute,
    retain: z.number().int().min(1).max(MAX_RETAIN),
    timer: z.literal(SNAPSHOT_INSTALLED.timer),
});

const saveSchema = z.strictObject({
    action: z.literal("save"),
    node: z.string().min(1),
    file: absolute.endsWith(".db"),
    size: z.number().int().positive(),
    hash: count,
    revision: count,
    totalKeys: count,
    retain: z.number().int().min(1).max(MAX_RETAIN),
    kept: z.number().int().positive(),
    removed: z.array(absolute),
});

const deleteSchema = z.strictObject({
    action: z.literal("delete"),
    node: z.string().min(1),
    changed: z.boolean(),
    snapshotDir: absolute,
    snapshotsKept: count,
});

const resultSchema = z.discriminatedUnion("action", [createSchema, saveSchema, deleteSchema]);

/** A result of the snapshot script, by action. */
export type SnapshotResult = z.infer<typeof resultSchema>;
export type SnapshotSaveResult = z.infer<typeof saveSchema>;

/**
 * Parses the snapshot script's stdout (its last line is the JSON result) for any action. A save
 * must keep at most `retain` snapshots, and name the new one after the node.
 */
export function parseSnapshotResult(stdout: string): SnapshotResult {
    const what = "etcd snapshot";
    const r = parseResultLine(resultSchema, stdout, what);
    if (r.action === "save") {
        if (r.kept > r.retain) {
            throw new Error(`${what} on node ${r.node}: kept ${r.kept} snapshots, more than retain (${r.retain})`);
        }
        if (!path.posix.basename(r.file).startsWith(`${r.node}-`) || r.removed.includes(r.file)) {
            throw new Error(`${what} on node ${r.node}: the new snapshot ${r.file} is not the node's, or was removed`);
        }
    }
    return r;
}

const restoreSchema = z.strictObject({
    action: z.literal("restore"),
    snapshot: z.string().min(1),
    size: z.number().int().positive(),
    hash: count,
    revision: count,
    totalKeys: count,
    name: z.string().min(1),
    initialCluster: z.string().min(1),
    initialAdvertisePeerUrls: z.string().min(1),
    initialClusterToken: z.string().min(1),
    dataDir: absolute,
    user: z.string().min(1).nullable(),
    tool: z.enum(["etcdctl", "etcdutl"]),
});

/** A result of the restore script's `restore` action. */
export type RestoreResult = z.infer<typeof restoreSchema>;

/** Parses the restore script's stdout (its last line is the JSON result of a restore). */
export function parseRestoreResult(stdout: string): RestoreResult {
    return parseResultLine(restoreSchema, stdout, "etcd restore");
}
