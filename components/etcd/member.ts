import * as path from "path";
import { z } from "zod";

import { COMMON_LIB, NodeStep } from "../lib/nodeScript";
import { parseResultLine } from "../lib/result";
import { DEFAULT_ETCD_PORTS, ETCD_BINARY, ETCD_UNIT_NAME, EtcdSource, etcdUnit, hostPort } from "./render";

/** The member script; also run as is by the lab tests. */
export const MEMBER_SCRIPT = path.join(__dirname, "scripts", "etcd-member.sh");

/** Where a member's files are on its node. */
export const ETCD_PKI_DIR = "/etc/etcd/pki";
export const ETCD_BOOTSTRAP_ENV = "/etc/etcd/bootstrap.env";
/** The client certificate the node's own tools (health gate, snapshots, disk gate) use. */
export const NODE_CLIENT_TLS = {
    caFile: `${ETCD_PKI_DIR}/ca.crt`,
    certFile: `${ETCD_PKI_DIR}/backup.crt`,
    keyFile: `${ETCD_PKI_DIR}/backup.key`,
} as const;
/** The client URL tools on a member's node use. */
export const LOCAL_CLIENT_URL = `https://${hostPort("127.0.0.1", DEFAULT_ETCD_PORTS.client)}`;

/** etcdctl next to the etcd binary of a source. */
export function etcdctlPath(source: EtcdSource): string {
    return path.posix.join(path.posix.dirname(ETCD_BINARY[source]), "etcdctl");
}

/** PEM texts a member's step writes to its node. The keys are secrets: the step is sensitive. */
export interface EtcdMemberPem {
    readonly caCert: string;
    readonly serverCert: string;
    readonly serverKey: string;
    readonly peerCert: string;
    readonly peerKey: string;
    /** The node tools' client certificate (`backup`) and key. */
    readonly clientCert: string;
    readonly clientKey: string;
}

/** What decides one member's step. Nothing in it names the other members but the bootstrap one. */
export interface EtcdMemberStepArgs {
    /** Node name (DNS label). */
    readonly node: string;
    /** The node's address: peer and advertised client URLs are built from it. */
    readonly address: string;
    /** etcd's data directory (the path the fsync gate measured). */
    readonly dataDir: string;
    readonly source: EtcdSource;
    /** Keeps members of different clusters apart; the same on every member. */
    readonly clusterToken: string;
    /** Whether this member forms the cluster; the others join through `joinEndpoint`. */
    readonly bootstrap: boolean;
    /** The bootstrap member's client URL (for a joining member). */
    readonly joinEndpoint?: string;
    /** Longest wait for the member and the cluster to be healthy, s. */
    readonly healthTimeoutSeconds: number;
    readonly quotaBackendBytes: number;
    readonly wipeDataOnDelete: boolean;
    readonly pem: EtcdMemberPem;
}

/** The client URL of a member at an address. */
export function clientUrl(address: string): string {
    return `https://${hostPort(address, DEFAULT_ETCD_PORTS.client)}`;
}

/** The peer URL of a member at an address. */
export function peerUrl(address: string): string {
    return `https://${hostPort(address, DEFAULT_ETCD_PORTS.peer)}`;
}

/**
 * The member's step (`member`, with a delete). Pure. Its unit depends on the member alone (the
 * initial cluster is written at first start), so adding a member leaves the others' steps as
 * they were.
 */
export function etcdMemberStep(args: EtcdMemberStepArgs): NodeStep {
    if (!args.bootstrap && args.joinEndpoint === undefined) {
        throw new Error(`etcd member ${args.node}: a member that does not form the cluster needs joinEndpoint`);
    }
    const unit = etcdUnit(
        { name: args.node, dataDir: args.dataDir },
        { members: { [args.node]: { address: args.address } }, state: "new", token: args.clusterToken },
        {
            source: args.source,
            pkiDir: ETCD_PKI_DIR,
            quotaBackendBytes: args.quotaBackendBytes,
            bootstrapEnvFile: ETCD_BOOTSTRAP_ENV,
        },
    );
    return {
        name: "member",
        script: MEMBER_SCRIPT,
        libraries: [COMMON_LIB],
        hasDelete: true,
        sensitive: true,
        params: {
            ZT_NODE: args.node,
            ZT_ETCD: ETCD_BINARY[args.source],
            ZT_ETCDCTL: etcdctlPath(args.source),
            ZT_USER: "etcd",
            ZT_DATA_DIR: args.dataDir,
            ZT_PKI_DIR: ETCD_PKI_DIR,
            ZT_UNIT_NAME: ETCD_UNIT_NAME,
            ZT_UNIT: unit,
            ZT_ENV_FILE: ETCD_BOOTSTRAP_ENV,
            ZT_PEER_URL: peerUrl(args.address),
            ZT_CLIENT_URL: clientUrl(args.address),
            ZT_LOCAL_ENDPOINT: LOCAL_CLIENT_URL,
            ZT_BOOTSTRAP: args.bootstrap,
            ...(args.joinEndpoint !== undefined && !args.bootstrap ? { ZT_JOIN_ENDPOINT: args.joinEndpoint } : {}),
            ZT_HEALTH_TIMEOUT: args.healthTimeoutSeconds,
            ZT_WIPE_DATA_ON_DELETE: args.wipeDataOnDelete,
            ZT_CA_CERT: args.pem.caCert,
            ZT_SERVER_CERT: args.pem.serverCert,
            ZT_SERVER_KEY: args.pem.serverKey,
            ZT_PEER_CERT: args.pem.peerCert,
            ZT_PEER_KEY: args.pem.peerKey,
            ZT_CLIENT_CERT: args.pem.clientCert,
            ZT_CLIENT_KEY: args.pem.clientKey,
        },
    };
}

const memberResultSchema = z.strictObject({
    action: z.literal("create"),
    node: z.string().min(1),
    state: z.enum(["bootstrapped", "joined", "existing"]),
    changed: z.boolean(),
    restarted: z.boolean(),
    healthy: z.literal(true),
    waitedSeconds: z.number().int().nonnegative(),
    memberId: z.string().regex(/^[0-9a-f]+$/),
    clusterId: z.string().regex(/^[0-9]+$/),
    members: z.number().int().positive(),
    version: z.string().min(1),
});

export type EtcdMemberResult = z.infer<typeof memberResultSchema>;

/** Parses the member script's result line (create). */
export function parseEtcdMemberResult(stdout: string): EtcdMemberResult {
    return parseResultLine(memberResultSchema, stdout, "etcd member");
}
