import * as path from "path";

import { ipToBigInt } from "../lib/cidr";
import { canonicalIp } from "./pki";
import { DNS_LABEL } from "../lib/names";

/**
 * Pure rendering of an etcd member's command line and systemd unit (etcd 3.4 and 3.5). All
 * settings are flags on the command line: no environment file, no config file, so the unit text
 * alone says how the member runs, and its hash says when it changed.
 */

/** The ports a member listens on. */
export interface EtcdPorts {
    /** Client port (TLS, client certificates required). */
    readonly client: number;
    /** Peer port (TLS, peer certificates required). */
    readonly peer: number;
    /** Metrics and health port (plain HTTP, bound to 127.0.0.1 only). */
    readonly metrics: number;
}

/** etcd's well-known ports. */
export const DEFAULT_ETCD_PORTS: EtcdPorts = { client: 2379, peer: 2380, metrics: 2381 };

/** One member as the cluster knows it. */
export interface EtcdClusterMember {
    /** The address peers and clients reach the member on: the node's host (IPv4 or IPv6). */
    readonly address: string;
    /** Ports, where they differ from etcd's (e.g. several members on one host in tests). Defaults to DEFAULT_ETCD_PORTS. */
    readonly ports?: Partial<EtcdPorts>;
}

/** The cluster a member forms or joins. */
export interface EtcdClusterSpec {
    /** Every member of the initial cluster, keyed by node name. */
    readonly members: Readonly<Record<string, EtcdClusterMember>>;
    /** `new` when the members form the cluster together; `existing` when a member joins a running cluster. */
    readonly state: "new" | "existing";
    /** Keeps members of different clusters from talking to each other; the same on every member. */
    readonly token: string;
}

/** The member being rendered. */
export interface EtcdMemberSpec {
    /** Node name; must be a key of the cluster's members. */
    readonly name: string;
    /** The node's etcd data path: the directory the fsync gate measured. */
    readonly dataDir: string;
}

/** Tuning; each value has the default given on its key. */
export interface EtcdFlagOptions {
    /** Directory holding the certificates and keys (file names: see `etcdPkiFiles`). Defaults to /etc/etcd/pki. */
    readonly pkiDir?: string;
    /** Raft heartbeat, ms. Defaults to 100. */
    readonly heartbeatIntervalMs?: number;
    /** Raft election timeout, ms; at least 5 heartbeats. Defaults to 1000. */
    readonly electionTimeoutMs?: number;
    /** Backend quota, bytes: etcd raises a NOSPACE alarm above it. Defaults to 8 GiB. */
    readonly quotaBackendBytes?: number;
    /** History kept by periodic auto-compaction (an etcd duration). Defaults to 1h. */
    readonly autoCompactionRetention?: string;
    /** Applied entries between snapshots. Defaults to 10000. */
    readonly snapshotCount?: number;
}

/** Where the certificates and keys of a member are on its node. */
export interface EtcdPkiFiles {
    readonly caCert: string;
    readonly serverCert: string;
    readonly serverKey: string;
    readonly peerCert: string;
    readonly peerKey: string;
}

/** File names of the member's certificates and keys under `pkiDir`. */
export function etcdPkiFiles(pkiDir: string): EtcdPkiFiles {
    return {
        caCert: path.posix.join(pkiDir, "ca.crt"),
        serverCert: path.posix.join(pkiDir, "server.crt"),
        serverKey: path.posix.join(pkiDir, "server.key"),
        peerCert: path.posix.join(pkiDir, "peer.crt"),
        peerKey: path.posix.join(pkiDir, "peer.key"),
    };
}

/**
 * TLS 1.2 cipher suites etcd may use: ECDHE with AEAD ciphers only (forward secrecy, no CBC).
 * The RSA variants serve a cluster whose certificates are replaced by RSA ones. TLS 1.3 suites
 * are all AEAD and not configurable. The CHACHA20 names are the ones etcd 3.4 knows; 3.5 takes
 * them as aliases.
 */
export const ETCD_CIPHER_SUITES = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
] as const;

const NODE_NAME = DNS_LABEL;
const TOKEN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DURATION = /^[1-9][0-9]{0,5}(ns|us|ms|s|m|h)?$/;
/** Paths go on a command line and into a unit file: plain characters only. */
const SAFE_PATH = /^\/[A-Za-z0-9._/-]*$/;

function fail(member: string, key: string, given: unknown, allowed: string): Error {
    return new Error(`etcd member ${member}: ${key} is ${JSON.stringify(given)}; allowed: ${allowed}`);
}

function checkPath(member: string, key: string, value: string): void {
    if (!SAFE_PATH.test(value) || value === "/" || path.posix.normalize(value) !== value || value.endsWith("/")) {
        throw fail(member, key, value, "a normalized absolute path other than / (letters, digits, '.', '_', '-', '/')");
    }
}

function checkInt(member: string, key: string, value: number, min: number, max: number): void {
    if (!Number.isSafeInteger(value) || value < min || value > max) {
        throw fail(member, key, value, `an integer from ${min} to ${max}`);
    }
}

function portsOf(name: string, m: EtcdClusterMember): EtcdPorts {
    const ports = { ...DEFAULT_ETCD_PORTS, ...m.ports };
    for (const key of ["client", "peer", "metrics"] as const) {
        checkInt(name, `ports.${key}`, ports[key], 1, 65535);
    }
    if (new Set([ports.client, ports.peer, ports.metrics]).size !== 3) {
        throw fail(name, "ports", ports, "three different ports for client, peer and metrics");
    }
    return ports;
}

/** `host:port` for a URL: IPv6 in brackets, canonical form. */
export function hostPort(address: string, port: number): string {
    const ip = ipToBigInt(address);
    if (ip === undefined) {
        throw new Error(`${JSON.stringify(address)} is not an IP address`);
    }
    const host = canonicalIp(address);
    return ip.family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The cluster's members, validated, sorted by name, with canonical addresses and all ports. */
function clusterMembers(cluster: EtcdClusterSpec): { name: string; address: string; ports: EtcdPorts }[] {
    const names = Object.keys(cluster.members).sort();
    if (names.length === 0) {
        throw new Error("etcd cluster: members is empty; allowed: one or more members keyed by node name");
    }
    const seen = new Map<string, string>();
    return names.map((name) => {
        if (!NODE_NAME.test(name)) {
            throw fail(name, "name", name, "a lower-case DNS label (a-z, 0-9, '-', at most 63 characters)");
        }
        const m = cluster.members[name];
        if (ipToBigInt(m.address) === undefined) {
            throw fail(name, "address", m.address, "an IPv4 or IPv6 address");
        }
        const ports = portsOf(name, m);
        const address = canonicalIp(m.address);
        for (const port of [ports.client, ports.peer]) {
            const key = hostPort(address, port);
            const other = seen.get(key);
            if (other !== undefined) {
                throw fail(name, "address", key, `an address and port no other member uses (member ${other} uses it)`);
            }
            seen.set(key, name);
        }
        return { name, address, ports };
    });
}

/**
 * The command-line flags of one member, in a fixed order, each as `--flag=value`. Pure: the same
 * member, cluster and options always give the same list. Throws on a value etcd or the unit
 * would refuse, naming the member, the key, the value and what is allowed.
 */
export function etcdFlags(member: EtcdMemberSpec, cluster: EtcdClusterSpec, opts: EtcdFlagOptions = {}): string[] {
    const members = clusterMembers(cluster);
    const self = members.find((m) => m.name === member.name);
    if (self === undefined) {
        throw fail(member.name, "name", member.name, `one of the cluster's members (${members.map((m) => m.name).join(", ")})`);
    }
    checkPath(member.name, "dataDir", member.dataDir);
    if (cluster.state !== "new" && cluster.state !== "existing") {
        throw fail(member.name, "state", cluster.state, "new or existing");
    }
    if (!TOKEN.test(cluster.token)) {
        throw fail(member.name, "token", cluster.token, "1 to 128 characters: letters, digits, '.', '_', '-'");
    }
    const pkiDir = opts.pkiDir ?? "/etc/etcd/pki";
    checkPath(member.name, "pkiDir", pkiDir);
    const heartbeat = opts.heartbeatIntervalMs ?? 100;
    checkInt(member.name, "heartbeatIntervalMs", heartbeat, 10, 10000);
    const election = opts.electionTimeoutMs ?? 1000;
    checkInt(member.name, "electionTimeoutMs", election, 5 * heartbeat, 50000);
    const quota = opts.quotaBackendBytes ?? 8 * 1024 ** 3;
    checkInt(member.name, "quotaBackendBytes", quota, 1024 ** 2, 8 * 1024 ** 3);
    const retention = opts.autoCompactionRetention ?? "1h";
    if (!DURATION.test(retention)) {
        throw fail(member.name, "autoCompactionRetention", retention, "a positive etcd duration such as 1h or 30m");
    }
    const snapshotCount = opts.snapshotCount ?? 10000;
    checkInt(member.name, "snapshotCount", snapshotCount, 100, 10_000_000);

    const files = etcdPkiFiles(pkiDir);
    const url = (address: string, port: number) => `https://${hostPort(address, port)}`;
    const clientUrl = url(self.address, self.ports.client);
    const loopbackClientUrl = url("127.0.0.1", self.ports.client);
    const listenClient = clientUrl === loopbackClientUrl ? [clientUrl] : [clientUrl, loopbackClientUrl];
    const peerUrl = url(self.address, self.ports.peer);
    const initialCluster = members.map((m) => `${m.name}=${url(m.address, m.ports.peer)}`).join(",");

    return [
        `--name=${self.name}`,
        `--data-dir=${member.dataDir}`,
        `--listen-client-urls=${listenClient.join(",")}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-state=${cluster.state}`,
        `--initial-cluster-token=${cluster.token}`,
        "--client-cert-auth=true",
        `--trusted-ca-file=${files.caCert}`,
        `--cert-file=${files.serverCert}`,
        `--key-file=${files.serverKey}`,
        "--peer-client-cert-auth=true",
        `--peer-trusted-ca-file=${files.caCert}`,
        `--peer-cert-file=${files.peerCert}`,
        `--peer-key-file=${files.peerKey}`,
        `--cipher-suites=${ETCD_CIPHER_SUITES.join(",")}`,
        `--listen-metrics-urls=http://${hostPort("127.0.0.1", self.ports.metrics)}`,
        `--heartbeat-interval=${heartbeat}`,
        `--election-timeout=${election}`,
        `--quota-backend-bytes=${quota}`,
        "--auto-compaction-mode=periodic",
        `--auto-compaction-retention=${retention}`,
        `--snapshot-count=${snapshotCount}`,
        "--logger=zap",
    ];
}

/** Where etcd comes from: the pinned release (installed by zerotouch) or the OS package. */
export type EtcdSource = "release" | "preinstalled";

/** The etcd binary for each source. */
export const ETCD_BINARY: Readonly<Record<EtcdSource, string>> = {
    release: "/usr/local/bin/etcd",
    preinstalled: "/usr/bin/etcd",
};

export interface EtcdUnitOptions extends EtcdFlagOptions {
    /** Which etcd binary `ExecStart` runs. */
    readonly source: EtcdSource;
    /** The unprivileged user (and group) etcd runs as; it owns the data directory. Defaults to etcd. */
    readonly user?: string;
    /**
     * When set, `--initial-cluster` and `--initial-cluster-state` are left off the command line and
     * etcd reads them (as `ETCD_INITIAL_CLUSTER`, `ETCD_INITIAL_CLUSTER_STATE`) from this file,
     * which the member script writes when the member first starts: who the other members are is
     * known only then (`member add` tells), and etcd ignores both once its data directory exists.
     * The unit then depends on the member alone, so adding a member changes no other member's unit.
     */
    readonly bootstrapEnvFile?: string;
}

/** The flags a bootstrap environment file carries instead of the command line. */
const BOOTSTRAP_FLAGS = ["--initial-cluster=", "--initial-cluster-state="];

/** The unit's name on the node. */
export const ETCD_UNIT_NAME = "etcd.service";

/**
 * Quotes one word of a systemd command line (systemd.service(5), "Command lines"): `%` and `$`
 * are doubled so that no specifier or variable is expanded; a word with blanks, quotes or
 * backslashes is double-quoted with C-style escapes.
 */
export function systemdQuote(word: string): string {
    if (/[\n\r\0]/.test(word)) {
        throw new Error(`a unit's command line cannot hold a line break or NUL: ${JSON.stringify(word)}`);
    }
    const escaped = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
    if (escaped !== "" && !/[\s"'\\;]/.test(escaped)) {
        return escaped;
    }
    return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * The systemd unit of one member. Deterministic: the same input gives the same bytes. etcd runs as
 * `user` (the data directory is made theirs, mode 0700, before each start), tells systemd when it
 * serves (Type=notify), and is restarted whenever it stops.
 *
 * A member of a new cluster is ready only once a quorum of members runs, so the unit's members
 * must be started without waiting on each other (`systemctl start --no-block`), then waited for
 * on their health, bounded.
 */
export function etcdUnit(member: EtcdMemberSpec, cluster: EtcdClusterSpec, opts: EtcdUnitOptions): string {
    const bootstrapEnvFile = opts.bootstrapEnvFile;
    if (bootstrapEnvFile !== undefined) {
        checkPath(member.name, "bootstrapEnvFile", bootstrapEnvFile);
    }
    const flags = etcdFlags(member, cluster, opts).filter(
        (f) => bootstrapEnvFile === undefined || !BOOTSTRAP_FLAGS.some((prefix) => f.startsWith(prefix)),
    );
    const binary = ETCD_BINARY[opts.source];
    if (binary === undefined) {
        throw fail(member.name, "source", opts.source, Object.keys(ETCD_BINARY).join(" or "));
    }
    const user = opts.user ?? "etcd";
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user) || user === "root") {
        throw fail(member.name, "user", user, "an unprivileged Unix user name");
    }
    const exec = [binary, ...flags].map(systemdQuote);
    const lines = [
        "# Rendered by zerotouch; do not edit: the next deployment overwrites it.",
        "[Unit]",
        `Description=etcd member ${member.name}`,
        "Documentation=https://etcd.io/docs/",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        `User=${user}`,
        `Group=${user}`,
        // Optional ('-'): a member with data needs nothing from it (etcd ignores both then).
        ...(bootstrapEnvFile !== undefined ? [`EnvironmentFile=-${bootstrapEnvFile}`] : []),
        // '+' runs this one step with full privileges: the data directory becomes etcd's.
        `ExecStartPre=+/usr/bin/install -d -o ${user} -g ${user} -m 0700 ${systemdQuote(member.dataDir)}`,
        `ExecStart=${exec.join(" \\\n    ")}`,
        "Restart=always",
        "RestartSec=5s",
        "TimeoutStartSec=120s",
        "LimitNOFILE=65536",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=0",
        "NoNewPrivileges=yes",
        "ProtectSystem=full",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ];
    return lines.join("\n");
}
