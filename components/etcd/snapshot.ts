import * as path from "path";
import { z } from "zod";

import { COMMON_LIB, NodeStep } from "../lib/nodeScript";
import { parseResultLine } from "../lib/result";
import { ScriptParams } from "../lib/script";
import { stepArgChecks } from "../lib/stepArgs";

/** The snapshot script (actions create, save, delete); also run as is by the tests and the lab. */
export const SNAPSHOT_SCRIPT = path.join(__dirname, "scripts", "etcd-snapshot.sh");
/** The restore script (actions verify, restore, fetch), run by an operator: see docs/etcd-restore.md. */
export const RESTORE_SCRIPT = path.join(__dirname, "scripts", "etcd-restore.sh");
/** The off-node copies' shell library (rclone): used by the snapshot and the restore script. */
export const OFFSITE_LIB = path.join(__dirname, "scripts", "offsite.sh");
/**
 * etcd-restore.sh as a step to send to a node (the operator's procedure, docs/etcd-restore.md),
 * with the libraries it needs ahead of it in the payload: run from a checkout it sources them
 * itself. `sensitive` when `params` carry off-node credentials.
 */
export function etcdRestoreStep(params: ScriptParams, sensitive: boolean): NodeStep {
    return { name: "restore", script: RESTORE_SCRIPT, libraries: [COMMON_LIB, OFFSITE_LIB], hasDelete: false, sensitive, params };
}
/** Where the snapshot step keeps the off-node credentials on the node (0700; files 0600). */
export const OFFSITE_CREDENTIALS_DIR = "/etc/zerotouch/etcd-offsite";

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

/** An S3-compatible bucket the snapshots are copied to. */
export interface EtcdOffsiteS3 {
    readonly type: "s3";
    /** The service's URL, https://host[:port] (http:// only where the script is run by hand, e.g. the lab). */
    readonly endpoint: string;
    readonly region?: string;
    readonly bucket: string;
    /** Key prefix in the bucket. */
    readonly path?: string;
    /** Copies of each node kept in the bucket, 1-1000. */
    readonly retain: number;
}

/** An SFTP target the snapshots are copied to, its host key pinned. */
export interface EtcdOffsiteSftp {
    readonly type: "sftp";
    readonly host: string;
    /** Defaults to 22. */
    readonly port?: number;
    readonly user: string;
    /** The target's public host key, `ssh-ed25519 AAAA…`. */
    readonly hostKey: string;
    /** Directory on the target: absolute, or relative to the user's home. */
    readonly path?: string;
    /** Copies of each node kept on the target, 1-1000. */
    readonly retain: number;
}

/** Where the off-node copies go (`etcd.snapshots.offsite`). */
export type EtcdOffsiteTarget = EtcdOffsiteS3 | EtcdOffsiteSftp;

/** The off-node target's credentials (secret): the SFTP user's private key, or the S3 keys. */
export interface EtcdOffsiteCredentials {
    readonly sshPrivateKey?: string;
    readonly accessKeyId?: string;
    readonly secretAccessKey?: string;
}

/** What the residency policy reads about an off-node target (`triggers[1].zerotouchOffsite`): no secrets. */
export interface EtcdOffsiteFact {
    readonly type: "s3" | "sftp";
    /** The host the copies go to. */
    readonly host: string;
    /** The S3 endpoint URL, or `sftp://host:port`. */
    readonly endpoint: string;
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
    /** Where each verified snapshot is also copied, off the node. None by default. */
    readonly offsite?: EtcdOffsiteTarget;
}

const ENDPOINT = /^https?:\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$/;
const SAFE_PATH = /^(\/[A-Za-z0-9._@+-]+)+$/;
const SCHEDULE = /^[A-Za-z0-9*:,./~-]+( [A-Za-z0-9*:,./~-]+)*$/;
const MAX_RETAIN = 1000;
const PATH_ALLOWED = "allowed: an absolute path of letters, digits and . _ @ + - (no . or .. components)";
const OFFSITE_ENDPOINT = /^https?:\/\/([A-Za-z0-9.-]+)(:[0-9]{1,5})?\/?$/;
const OFFSITE_HOST = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9A-Fa-f:.]+)$/;
const OFFSITE_PATH = /^\/?[A-Za-z0-9._@+-]+(\/[A-Za-z0-9._@+-]+)*$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION = /^[a-z0-9-]{1,32}$/;
const SSH_USER = /^[a-z_][a-z0-9_.-]{0,31}$/;
const HOST_KEY = /^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/]+={0,3}$/;

const { invalid, checkNode } = stepArgChecks("etcd snapshots");

function isSafePath(p: unknown): p is string {
    return typeof p === "string" && SAFE_PATH.test(p) && !`${p}/`.includes("/./") && !`${p}/`.includes("/../");
}

/** The off-node target's facts for the residency policy: its type, host and endpoint. */
export function offsiteFact(target: EtcdOffsiteTarget): EtcdOffsiteFact {
    if (target.type === "s3") {
        const m = OFFSITE_ENDPOINT.exec(target.endpoint);
        return { type: "s3", host: (m?.[1] ?? "").toLowerCase(), endpoint: target.endpoint };
    }
    return { type: "sftp", host: target.host.toLowerCase(), endpoint: `sftp://${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port ?? 22}` };
}

/** Throws on an off-node value the scripts would refuse, naming node, key, value and what is allowed. */
function checkOffsite(node: string, t: EtcdOffsiteTarget): void {
    const bad = (key: string, given: unknown, allowed: string): never => {
        throw invalid(node, `offsite.${key}`, given, `allowed: ${allowed}`);
    };
    const { type } = t as { type: unknown };
    if (type !== "s3" && type !== "sftp") {
        bad("type", type, "s3 or sftp");
    }
    if (!Number.isInteger(t.retain) || t.retain < 1 || t.retain > MAX_RETAIN) {
        bad("retain", t.retain, `an integer from 1 to ${MAX_RETAIN}`);
    }
    if (t.path !== undefined && (!OFFSITE_PATH.test(t.path) || `/${t.path}/`.includes("/./") || `/${t.path}/`.includes("/../"))) {
        bad("path", t.path, "a path of letters, digits and . _ @ + - (no . or .. components)");
    }
    if (t.type === "s3") {
        if (!OFFSITE_ENDPOINT.test(t.endpoint)) {
            bad("endpoint", t.endpoint, "the S3 service's URL scheme://host[:port] without a path");
        }
        if (!BUCKET.test(t.bucket)) {
            bad("bucket", t.bucket, "an S3 bucket name (3-63 of a-z 0-9 . -)");
        }
        if (t.region !== undefined && !REGION.test(t.region)) {
            bad("region", t.region, "a region name (a-z, 0-9, -)");
        }
        return;
    }
    if (!OFFSITE_HOST.test(t.host)) {
        bad("host", t.host, "a host name or IP address");
    }
    if (t.port !== undefined && (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535)) {
        bad("port", t.port, "an integer from 1 to 65535");
    }
    if (!SSH_USER.test(t.user)) {
        bad("user", t.user, "a user name");
    }
    if (!HOST_KEY.test(t.hostKey)) {
        bad("hostKey", t.hostKey, "the target's public host key as `ssh-ed25519 AAAA…` (key type and base64)");
    }
}

/** The off-node target as script parameters (no credentials). */
function offsiteParams(t: EtcdOffsiteTarget): ScriptParams {
    const common = { ZT_OFFSITE_TYPE: t.type, ZT_OFFSITE_RETAIN: t.retain, ...(t.path !== undefined ? { ZT_OFFSITE_PATH: t.path } : {}) };
    if (t.type === "s3") {
        return { ...common, ZT_OFFSITE_ENDPOINT: t.endpoint, ZT_OFFSITE_BUCKET: t.bucket, ...(t.region !== undefined ? { ZT_OFFSITE_REGION: t.region } : {}) };
    }
    return { ...common, ZT_OFFSITE_HOST: t.host, ZT_OFFSITE_PORT: t.port ?? 22, ZT_OFFSITE_USER: t.user, ZT_OFFSITE_HOST_KEY: t.hostKey };
}

/**
 * The credentials of an off-node target as the script's parameters (secret: the step carrying them
 * must be a `secretNodeScript`). Throws, without showing a value, when the target's type needs a
 * credential that is missing or one of another type is given.
 */
export function offsiteCredentialParams(node: string, target: EtcdOffsiteTarget, c: EtcdOffsiteCredentials): ScriptParams {
    const missing = (what: string): Error => new Error(`etcd snapshots for node ${node}: offsite type ${target.type} needs ${what} (not shown)`);
    if (target.type === "sftp") {
        if (c.sshPrivateKey === undefined || !c.sshPrivateKey.startsWith("-----BEGIN")) {
            throw missing("the SFTP user's private key (OpenSSH or PEM)");
        }
        if (c.accessKeyId !== undefined || c.secretAccessKey !== undefined) {
            throw new Error(`etcd snapshots for node ${node}: offsite type sftp takes no S3 keys`);
        }
        return { ZT_OFFSITE_SSH_KEY: c.sshPrivateKey };
    }
    const printable = /^[!-~]{1,256}$/;
    if (c.accessKeyId === undefined || !printable.test(c.accessKeyId) || c.secretAccessKey === undefined || !printable.test(c.secretAccessKey)) {
        throw missing("the S3 access key id and secret access key (printable, no spaces)");
    }
    if (c.sshPrivateKey !== undefined) {
        throw new Error(`etcd snapshots for node ${node}: offsite type s3 takes no SSH private key`);
    }
    return { ZT_OFFSITE_ACCESS_KEY_ID: c.accessKeyId, ZT_OFFSITE_SECRET_ACCESS_KEY: c.secretAccessKey };
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
    if (args.offsite !== undefined) {
        checkOffsite(node, args.offsite);
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
        ...(args.offsite !== undefined ? offsiteParams(args.offsite) : {}),
    };
    if (args.offsite === undefined) {
        return [{ name: "snapshots", script: SNAPSHOT_SCRIPT, params, hasDelete: true, sensitive: false, libraries: [COMMON_LIB, OFFSITE_LIB] }];
    }
    // With off-node copies the step carries their credentials (offsiteCredentialParams): secret.
    return [
        {
            name: "snapshots",
            script: SNAPSHOT_SCRIPT,
            params,
            hasDelete: true,
            sensitive: true,
            libraries: [COMMON_LIB, OFFSITE_LIB],
            meta: { zerotouchOffsite: offsiteFact(args.offsite) },
        },
    ];
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
    offsite: z.enum(["s3", "sftp"]).nullable(),
});

const offsiteCopySchema = z.strictObject({
    type: z.enum(["s3", "sftp"]),
    target: z.string(),
    file: z.string().endsWith(".db"),
    size: z.number().int().positive(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    copyMs: count,
    verifyMs: count,
    retain: z.number().int().min(1).max(MAX_RETAIN),
    kept: z.number().int().positive(),
    removed: z.array(z.string()),
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
    /** The off-node copy, verified; null without off-node copies. */
    offsite: offsiteCopySchema.nullable(),
});

const deleteSchema = z.strictObject({
    action: z.literal("delete"),
    node: z.string().min(1),
    changed: z.boolean(),
    snapshotDir: absolute,
    snapshotsKept: count,
    /** Set when a newer payload of the step owns the timer: this (replaced) payload's delete did nothing. */
    owner: z.literal("newer").optional(),
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
        const o = r.offsite;
        if (o !== null && (o.file !== path.posix.basename(r.file) || o.size !== r.size || o.kept > o.retain || o.removed.includes(o.file))) {
            throw new Error(`${what} on node ${r.node}: the off-node copy ${o.file} (${o.size} bytes, ${o.kept} kept of ${o.retain}) is not the new snapshot's, or was removed`);
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
    /** The off-node copy the snapshot was fetched from first; null for a local file. */
    offsite: z.strictObject({ type: z.enum(["s3", "sftp"]), target: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).nullable(),
});

/** A result of the restore script's `restore` action. */
export type RestoreResult = z.infer<typeof restoreSchema>;

/** Parses the restore script's stdout (its last line is the JSON result of a restore). */
export function parseRestoreResult(stdout: string): RestoreResult {
    return parseResultLine(restoreSchema, stdout, "etcd restore");
}
