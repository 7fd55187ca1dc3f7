import { isIP } from "net";
import * as path from "path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { z } from "zod";

import type { ExtraRule } from "../firewall/rules";
import { COMMON_LIB, NodeStep } from "../lib/nodeScript";
import { parseResultLine } from "../lib/result";
import { ScriptParams } from "../lib/script";
import { DNS_LABEL, DNS_NAME } from "../lib/names";

/**
 * What k3s needs of each node's host firewall: its default pod range (`--cluster-cidr`), from which
 * pods reach the API server and the kubelets, and its default CNI's traffic between nodes
 * (flannel, VXLAN backend, 8472/udp).
 */
export const K3S_FIREWALL: { readonly podCidrs: readonly string[]; readonly rules: readonly ExtraRule[] } = {
    podCidrs: ["10.42.0.0/16"],
    rules: [{ name: "flannel-vxlan", protocol: "udp", ports: 8472, from: "cluster" }],
};

/**
 * k3s as plain data: the pinned releases, the flags of servers and agents, and the steps that
 * install and run them. Pure: the `ControlPlane` component and any runner use the
 * same steps, and the tests hold them to the rules without a node.
 */

const SCRIPTS = path.join(__dirname, "scripts");
/** The scripts; the install script is also run as is by the tests. */
export const K3S_INSTALL_SCRIPT = path.join(SCRIPTS, "k3s-install.sh");
export const K3S_SERVER_SCRIPT = path.join(SCRIPTS, "k3s-server.sh");
export const K3S_AGENT_SCRIPT = path.join(SCRIPTS, "k3s-agent.sh");
export const K3S_KUBECONFIG_SCRIPT = path.join(SCRIPTS, "k3s-kubeconfig.sh");
/** Shell libraries the scripts use, in payload order. */
export const K3S_LIBRARIES: readonly string[] = [COMMON_LIB, path.join(SCRIPTS, "lib", "k3s.sh")];

export type K3sArch = "amd64" | "arm64";

/** A published k3s release: the sha256 of its `k3s` (amd64) and `k3s-arm64` binaries. */
export interface K3sRelease {
    readonly sha256: Readonly<Record<K3sArch, string>>;
}

/**
 * Pinned k3s releases. The checksums are the `k3s` and `k3s-arm64` lines of the release's own
 * `sha256sum-amd64.txt` and `sha256sum-arm64.txt`
 * (https://github.com/k3s-io/k3s/releases/tag/v1.36.4%2Bk3s1); the same values are pinned by
 * several independent public projects. Adding a release: copy both lines from those files.
 */
export const K3S_RELEASES: Readonly<Record<string, K3sRelease>> = {
    "v1.36.4+k3s1": {
        sha256: {
            amd64: "835873f37245fc615f547a2fe2af9402a347875f13fa64a1f136de644955ea3f",
            arm64: "c920706346d5ad4e5cd3c7bf1bb09ce71ebe07fec829e513e40f1caf98aed8bb",
        },
    },
};

/** The version installed when none is given. */
export const DEFAULT_K3S_VERSION = "v1.36.4+k3s1";
/** Where releases are downloaded from when no mirror is given. */
export const K3S_RELEASE_BASE_URL = "https://github.com/k3s-io/k3s/releases/download";
/** Port of the Kubernetes API on the servers. */
export const API_PORT = 6443;

/** Files the server and agent scripts write (lib/k3s.sh: K3S_SECRETS); the flags point at them. */
export const K3S_SECRET_DIR = "/etc/zerotouch/k3s";
export const K3S_FILES = {
    etcdCa: `${K3S_SECRET_DIR}/etcd-ca.crt`,
    etcdCert: `${K3S_SECRET_DIR}/etcd-client.crt`,
    etcdKey: `${K3S_SECRET_DIR}/etcd-client.key`,
    token: `${K3S_SECRET_DIR}/token`,
    agentToken: `${K3S_SECRET_DIR}/agent-token`,
} as const;

/** Node labels for the node's location (well-known Kubernetes topology labels). */
export const REGION_LABEL = "topology.kubernetes.io/region";
export const ZONE_LABEL = "topology.kubernetes.io/zone";

const VERSION = /^v1\.[0-9]{1,3}\.[0-9]{1,3}\+k3s[0-9]{1,2}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const NODE_NAME = DNS_LABEL;
const LABEL_VALUE = DNS_LABEL;
const BASE_URL = /^(https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~%+-]+)*|file:\/\/(\/[A-Za-z0-9._~%+-]+)+)$/;
const MIN_READY_SECONDS = 10;
const MAX_READY_SECONDS = 3600;

function invalid(node: string | undefined, key: string, given: unknown, allowed: string): Error {
    const where = node === undefined ? "k3s" : `k3s on node ${node}`;
    return new Error(`${where}: ${key} is ${JSON.stringify(given)}; allowed: ${allowed}`);
}

/** Whether a string is an IP address or a lower-case DNS name. */
function isHost(value: string): boolean {
    return isIP(value) !== 0 || DNS_NAME.test(value);
}

/** `host` as it appears in a URL: IPv6 addresses in brackets. */
export function urlHost(host: string): string {
    return isIP(host) === 6 ? `[${host}]` : host;
}

/** The API server URL for an endpoint: `https://<endpoint>:6443`. Pure. */
export function apiServerUrl(apiEndpoint: string): string {
    if (!isHost(apiEndpoint)) {
        throw invalid(undefined, "apiEndpoint", apiEndpoint, "an IP address or a lower-case DNS name (no scheme, no port)");
    }
    return `https://${urlHost(apiEndpoint)}:${API_PORT}`;
}

/** The download URL of a release binary: `<base>/<version, URL-encoded>/k3s` (or `k3s-arm64`). */
export function k3sBinaryUrl(version: string, arch: K3sArch, releaseBaseUrl: string = K3S_RELEASE_BASE_URL): string {
    return `${releaseBaseUrl}/${encodeURIComponent(version)}/${arch === "amd64" ? "k3s" : "k3s-arm64"}`;
}

// --- install -------------------------------------------------------------------------------

/** Where the binary comes from and which release it must be. */
export interface K3sSourceSpec {
    /**
     * `release` downloads the binary and verifies its sha256 before it is made executable;
     * `preinstalled` only checks that `/usr/local/bin/k3s --version` reports the version.
     */
    readonly source: "release" | "preinstalled";
    /** The k3s release, e.g. `v1.36.4+k3s1`. Defaults to `DEFAULT_K3S_VERSION`. */
    readonly version?: string;
    /**
     * sha256 of the binaries. Required for a version that is not in `K3S_RELEASES`; for a
     * pinned version it must match the table.
     */
    readonly sha256?: Readonly<Record<K3sArch, string>>;
    /**
     * Mirror of the release downloads (`https://…` or `file:///…`, no trailing slash), laid out
     * like GitHub's: `<base>/<version>/k3s`. Defaults to `K3S_RELEASE_BASE_URL`.
     */
    readonly releaseBaseUrl?: string;
    /**
     * Longest wait for a server or agent to become ready, seconds (10–3600). Defaults to 600.
     */
    readonly readyTimeoutSeconds?: number;
}

/** A validated `K3sSourceSpec` with its defaults applied. */
export interface K3sSource {
    readonly source: "release" | "preinstalled";
    readonly version: string;
    readonly sha256: Readonly<Record<K3sArch, string>>;
    readonly releaseBaseUrl: string;
    readonly readyTimeoutSeconds: number;
}

/** Validates the k3s settings and applies their defaults. Throws naming the key, value and what is allowed. */
export function resolveK3sSource(spec: K3sSourceSpec): K3sSource {
    if (spec.source !== "release" && spec.source !== "preinstalled") {
        throw invalid(undefined, "k3s.source", spec.source, "release or preinstalled");
    }
    const version = spec.version ?? DEFAULT_K3S_VERSION;
    if (!VERSION.test(version)) {
        throw invalid(undefined, "k3s.version", version, "a k3s release such as v1.36.4+k3s1");
    }
    const pinned = K3S_RELEASES[version];
    if (spec.sha256 !== undefined) {
        for (const arch of ["amd64", "arm64"] as const) {
            if (!SHA256.test(spec.sha256[arch] ?? "")) {
                throw invalid(undefined, `k3s.sha256.${arch}`, spec.sha256[arch], "64 lower-case hex digits from the release's sha256sum file");
            }
            if (pinned !== undefined && pinned.sha256[arch] !== spec.sha256[arch]) {
                throw invalid(undefined, `k3s.sha256.${arch}`, spec.sha256[arch], `the published checksum of ${version}, ${pinned.sha256[arch]}`);
            }
        }
    }
    const sha256 = spec.sha256 ?? pinned?.sha256;
    if (sha256 === undefined) {
        throw invalid(
            undefined,
            "k3s.sha256",
            undefined,
            `the sha256 of the k3s and k3s-arm64 binaries of ${version} (its sha256sum-amd64.txt and sha256sum-arm64.txt); pinned releases: ${Object.keys(K3S_RELEASES).join(", ")}`,
        );
    }
    const releaseBaseUrl = spec.releaseBaseUrl ?? K3S_RELEASE_BASE_URL;
    if (!BASE_URL.test(releaseBaseUrl)) {
        throw invalid(undefined, "k3s.releaseBaseUrl", releaseBaseUrl, "an https:// or file:/// URL without a trailing slash, query or credentials");
    }
    const readyTimeoutSeconds = spec.readyTimeoutSeconds ?? 600;
    if (!Number.isInteger(readyTimeoutSeconds) || readyTimeoutSeconds < MIN_READY_SECONDS || readyTimeoutSeconds > MAX_READY_SECONDS) {
        throw invalid(undefined, "k3s.readyTimeoutSeconds", readyTimeoutSeconds, `a whole number of seconds from ${MIN_READY_SECONDS} to ${MAX_READY_SECONDS}`);
    }
    return { source: spec.source, version, sha256, releaseBaseUrl, readyTimeoutSeconds };
}

function checkNodeName(node: string): void {
    if (!NODE_NAME.test(node)) {
        throw invalid(node, "node", node, "a DNS label (lower-case letters, digits, '-', at most 63 characters)");
    }
}

/** The install step (k3s-install.sh) of one node. Pure. */
export function k3sInstallStep(node: string, k3s: K3sSource): NodeStep {
    checkNodeName(node);
    const params: ScriptParams = {
        ZT_NODE: node,
        ZT_K3S_SOURCE: k3s.source,
        ZT_K3S_VERSION: k3s.version,
        ...(k3s.source === "release"
            ? {
                  ZT_K3S_URL_AMD64: k3sBinaryUrl(k3s.version, "amd64", k3s.releaseBaseUrl),
                  ZT_K3S_SHA256_AMD64: k3s.sha256.amd64,
                  ZT_K3S_URL_ARM64: k3sBinaryUrl(k3s.version, "arm64", k3s.releaseBaseUrl),
                  ZT_K3S_SHA256_ARM64: k3s.sha256.arm64,
              }
            : {}),
    };
    return { name: "install", script: K3S_INSTALL_SCRIPT, libraries: K3S_LIBRARIES, params, hasDelete: true, sensitive: false };
}

// --- servers and agents ----------------------------------------------------------------------

/** What decides one node's k3s service: plain values, no secrets. */
export interface K3sNodeSpec {
    /** Node name (a DNS label); also the Kubernetes node name. */
    readonly node: string;
    /** The node's address: `--node-ip`. */
    readonly address: string;
    /** `topology.kubernetes.io/region` (the node's `location.region`). */
    readonly region: string;
    /** `topology.kubernetes.io/zone` (the node's `location.datacenter`). */
    readonly zone: string;
}

/** What every server shares. No server list: a server's flags depend on itself and these only. */
export interface K3sServerShared {
    /** Address or DNS name clients reach the API at (`--tls-san`, kubeconfig server). */
    readonly apiEndpoint: string;
    /** etcd client URLs, `https://host:port`. */
    readonly datastoreEndpoints: readonly string[];
}

function checkNode(spec: K3sNodeSpec): void {
    checkNodeName(spec.node);
    if (isIP(spec.address) === 0) {
        throw invalid(spec.node, "address", spec.address, "the node's IPv4 or IPv6 address");
    }
    if (!LABEL_VALUE.test(spec.region)) {
        throw invalid(spec.node, "region", spec.region, "a lower-case label (a-z, 0-9, '-'), the node's location.region");
    }
    if (!LABEL_VALUE.test(spec.zone)) {
        throw invalid(spec.node, "zone", spec.zone, "a lower-case label (a-z, 0-9, '-'), the node's location.datacenter");
    }
}

/** Validates one etcd client URL: `https://<ip or dns name>:<port>`. */
export function checkDatastoreEndpoint(endpoint: string, node?: string): void {
    const m = /^https:\/\/(\[[0-9a-fA-F:.]+\]|[^/:[\]]+):([0-9]{1,5})$/.exec(endpoint);
    const host = m?.[1].replace(/^\[(.*)\]$/, "$1");
    const port = Number(m?.[2]);
    const bracketed = m?.[1].startsWith("[") ?? false;
    if (m === null || host === undefined || !isHost(host) || bracketed !== (isIP(host) === 6) || port < 1 || port > 65535) {
        throw invalid(node, "etcd.endpoints", endpoint, "https://<ip or dns name>:<port> (IPv6 in brackets), e.g. https://10.0.0.1:2379");
    }
}

function checkShared(shared: K3sServerShared, node?: string): void {
    if (!isHost(shared.apiEndpoint)) {
        throw invalid(node, "apiEndpoint", shared.apiEndpoint, "an IP address or a lower-case DNS name (no scheme, no port)");
    }
    if (shared.datastoreEndpoints.length === 0) {
        throw invalid(node, "etcd.endpoints", [], "one or more etcd client URLs");
    }
    for (const e of shared.datastoreEndpoints) {
        checkDatastoreEndpoint(e, node);
    }
    if (new Set(shared.datastoreEndpoints).size !== shared.datastoreEndpoints.length) {
        throw invalid(node, "etcd.endpoints", shared.datastoreEndpoints, "each etcd client URL once");
    }
}

function nodeFlags(spec: K3sNodeSpec): string[] {
    return [
        `--node-name=${spec.node}`,
        `--node-ip=${spec.address}`,
        `--node-label=${REGION_LABEL}=${spec.region}`,
        `--node-label=${ZONE_LABEL}=${spec.zone}`,
    ];
}

/**
 * The arguments of `k3s server` on one node: the node's own name, address and location labels,
 * the API endpoint as TLS SAN, the external etcd over TLS (endpoints, CA, client certificate and
 * key as files), tokens as files, secrets encryption on. There is no `--cluster-init` and no
 * `--disable-etcd`: with `--datastore-endpoint` k3s runs no embedded etcd, and it rejects
 * `--disable-etcd` together with `--datastore-endpoint`. Pure.
 */
export function k3sServerArgs(spec: K3sNodeSpec, shared: K3sServerShared): string[] {
    checkNode(spec);
    checkShared(shared, spec.node);
    return [
        "server",
        ...nodeFlags(spec),
        `--tls-san=${shared.apiEndpoint}`,
        `--datastore-endpoint=${shared.datastoreEndpoints.join(",")}`,
        `--datastore-cafile=${K3S_FILES.etcdCa}`,
        `--datastore-certfile=${K3S_FILES.etcdCert}`,
        `--datastore-keyfile=${K3S_FILES.etcdKey}`,
        `--token-file=${K3S_FILES.token}`,
        `--agent-token-file=${K3S_FILES.agentToken}`,
        "--secrets-encryption",
        "--write-kubeconfig-mode=0600",
    ];
}

/** The arguments of `k3s agent` on one worker: joins through the API endpoint with the agent token. Pure. */
export function k3sAgentArgs(spec: K3sNodeSpec, apiEndpoint: string): string[] {
    checkNode(spec);
    if (!isHost(apiEndpoint)) {
        throw invalid(spec.node, "apiEndpoint", apiEndpoint, "an IP address or a lower-case DNS name (no scheme, no port)");
    }
    return ["agent", `--server=${apiServerUrl(apiEndpoint)}`, ...nodeFlags(spec), `--token-file=${K3S_FILES.agentToken}`];
}

/** The secrets a server needs, resolved (the step is built inside an Output). */
export interface K3sServerSecrets {
    readonly token: string;
    readonly agentToken: string;
    readonly etcdCaPem: string;
    readonly etcdCertPem: string;
    readonly etcdKeyPem: string;
}

const TOKEN = /^[A-Za-z0-9._~+/=-]{16,256}$/;
const PEM = /^-----BEGIN [A-Z0-9 ]+-----\r?\n[\s\S]+-----END [A-Z0-9 ]+-----\s*$/;

/** Checks secrets' shape; messages name the key, never the value. */
function checkSecret(node: string, key: string, value: string, kind: "token" | "pem"): void {
    const ok = kind === "token" ? TOKEN.test(value) : PEM.test(value);
    if (!ok) {
        const allowed = kind === "token" ? "16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = -" : "a PEM block (-----BEGIN …----- … -----END …-----)";
        throw new Error(`k3s on node ${node}: ${key} is not valid (value not shown); allowed: ${allowed}`);
    }
}

/**
 * A node's k3s run step (server or agent): the node, k3s' version, its flags and ready
 * timeout, then `secrets`; deleted with the node, and sensitive (its payload holds tokens).
 */
function k3sRunStep(name: string, script: string, node: string, args: string[], k3s: K3sSource, secrets: ScriptParams): NodeStep {
    return {
        name,
        script,
        libraries: K3S_LIBRARIES,
        params: {
            ZT_NODE: node,
            ZT_K3S_VERSION: k3s.version,
            ZT_K3S_ARGS: args,
            ZT_READY_TIMEOUT_SECONDS: k3s.readyTimeoutSeconds,
            ...secrets,
        },
        hasDelete: true,
        sensitive: true,
    };
}

/**
 * The server step (k3s-server.sh) of one node, from plain specs and resolved secrets. Its
 * payload holds the node's own flags, the shared endpoint, datastore and tokens, and nothing
 * about other servers, so adding a server leaves the others' steps unchanged. Pure.
 */
export function k3sServerStep(spec: K3sNodeSpec, shared: K3sServerShared, k3s: K3sSource, secrets: K3sServerSecrets): NodeStep {
    const args = k3sServerArgs(spec, shared);
    checkSecret(spec.node, "token", secrets.token, "token");
    checkSecret(spec.node, "agentToken", secrets.agentToken, "token");
    checkSecret(spec.node, "etcd.caCertPem", secrets.etcdCaPem, "pem");
    checkSecret(spec.node, "etcd.certPem", secrets.etcdCertPem, "pem");
    checkSecret(spec.node, "etcd.keyPem", secrets.etcdKeyPem, "pem");
    return k3sRunStep("server", K3S_SERVER_SCRIPT, spec.node, args, k3s, {
        ZT_ETCD_CA_PEM: secrets.etcdCaPem,
        ZT_ETCD_CERT_PEM: secrets.etcdCertPem,
        ZT_ETCD_KEY_PEM: secrets.etcdKeyPem,
        ZT_K3S_TOKEN: secrets.token,
        ZT_K3S_AGENT_TOKEN: secrets.agentToken,
    });
}

/** The agent step (k3s-agent.sh) of one worker. Pure. */
export function k3sAgentStep(spec: K3sNodeSpec, apiEndpoint: string, k3s: K3sSource, agentToken: string): NodeStep {
    const args = k3sAgentArgs(spec, apiEndpoint);
    checkSecret(spec.node, "agentToken", agentToken, "token");
    return k3sRunStep("agent", K3S_AGENT_SCRIPT, spec.node, args, k3s, { ZT_K3S_AGENT_TOKEN: agentToken });
}

/** The step (k3s-kubeconfig.sh) that reads the admin kubeconfig back from a server. Sensitive. Pure. */
export function k3sKubeconfigStep(node: string, k3s: K3sSource): NodeStep {
    checkNodeName(node);
    return {
        name: "kubeconfig",
        script: K3S_KUBECONFIG_SCRIPT,
        libraries: K3S_LIBRARIES,
        params: { ZT_NODE: node, ZT_K3S_VERSION: k3s.version },
        hasDelete: false,
        sensitive: true,
    };
}

// --- kubeconfig ------------------------------------------------------------------------------

const kubeconfigResult = z.object({ node: z.string(), action: z.literal("create"), kubeconfig: z.string().min(1) });

/** The kubeconfig in the kubeconfig step's result line. The error never contains the kubeconfig. */
export function parseKubeconfigResult(stdout: string): string {
    let parsed: z.infer<typeof kubeconfigResult>;
    try {
        parsed = parseResultLine(kubeconfigResult, stdout, "k3s kubeconfig");
    } catch {
        throw new Error("k3s kubeconfig: the step's output is not the expected result line (output not shown: it may hold credentials)");
    }
    return parsed.kubeconfig;
}

interface KubeconfigDoc {
    clusters?: { name?: string; cluster?: { server?: unknown } }[];
    contexts?: { name?: string; context?: { cluster?: string } }[];
    "current-context"?: string;
}

function parseKubeconfigDoc(kubeconfig: string, what: string): KubeconfigDoc {
    let doc: unknown;
    try {
        doc = parseYaml(kubeconfig);
    } catch {
        throw new Error(`${what}: the kubeconfig is not valid YAML (content not shown)`);
    }
    const d = doc as KubeconfigDoc | null;
    if (d === null || typeof d !== "object" || !Array.isArray(d.clusters) || d.clusters.length === 0) {
        throw new Error(`${what}: the kubeconfig has no clusters (content not shown)`);
    }
    return d;
}

/**
 * Points every cluster of a kubeconfig at `https://<apiEndpoint>:6443` (k3s writes
 * `https://127.0.0.1:6443`). Everything else is kept. Pure.
 */
export function rewriteKubeconfigServer(kubeconfig: string, apiEndpoint: string): string {
    const server = apiServerUrl(apiEndpoint);
    const doc = parseKubeconfigDoc(kubeconfig, "k3s kubeconfig");
    for (const c of doc.clusters ?? []) {
        if (c.cluster === undefined || typeof c.cluster !== "object") {
            throw new Error(`k3s kubeconfig: cluster ${JSON.stringify(c.name)} has no cluster section`);
        }
        c.cluster.server = server;
    }
    return stringifyYaml(doc);
}

/** Where a kubeconfig points: its current context's cluster (or its only cluster). */
export interface KubeconfigServer {
    /** The server URL, e.g. `https://203.0.113.10:6443`. */
    readonly url: string;
    /** Its host, IPv6 without brackets. */
    readonly host: string;
}

/** Reads the API server a kubeconfig points at. Pure. Errors never contain the kubeconfig. */
export function kubeconfigServer(kubeconfig: string): KubeconfigServer {
    const what = "existing cluster";
    const doc = parseKubeconfigDoc(kubeconfig, what);
    const clusters = doc.clusters ?? [];
    let clusterName: string | undefined;
    if (doc["current-context"] !== undefined && doc["current-context"] !== "") {
        const ctx = (doc.contexts ?? []).find((c) => c.name === doc["current-context"]);
        if (ctx === undefined) {
            throw new Error(`${what}: the kubeconfig's current-context ${JSON.stringify(doc["current-context"])} is not among its contexts`);
        }
        clusterName = ctx.context?.cluster;
    } else if (clusters.length !== 1) {
        throw new Error(`${what}: the kubeconfig has ${clusters.length} clusters and no current-context`);
    }
    const cluster = clusterName === undefined ? clusters[0] : clusters.find((c) => c.name === clusterName);
    const url = cluster?.cluster?.server;
    if (typeof url !== "string") {
        throw new Error(`${what}: the kubeconfig's cluster ${JSON.stringify(clusterName ?? cluster?.name)} has no server`);
    }
    let parsed: URL;
    try {
        parsed = new URL(url);
    } catch {
        throw new Error(`${what}: the kubeconfig's server ${JSON.stringify(url)} is not a URL`);
    }
    if (parsed.protocol !== "https:") {
        throw new Error(`${what}: the kubeconfig's server ${JSON.stringify(url)} is not https`);
    }
    return { url, host: parsed.hostname.replace(/^\[(.*)\]$/, "$1") };
}
