import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { readFileSync } from "fs";
import * as path from "path";

import { parseCidr } from "../lib/cidr";
import { isReconciliationSeconds, RECONCILIATION_SECONDS } from "../lib/ranges";
import { checkDnsLabel, checkRepoUrl, DEFAULT_ARGOCD_NAMESPACE } from "./applications";
import { stringify as stringifyYaml } from "yaml";

import { ChartValuesIndex, formatKeyPath, unreadValues } from "./chartValues";

/**
 * The pinned chart: argo-helm's `argo-cd` 10.1.1, whose appVersion is Argo CD v3.4.4. It is the
 * newest chart whose tarball could be rendered and checked here (`npm run test:k8s` renders it
 * with the program's values and checks what it reads); a pin that cannot be checked is how keys
 * the chart ignores went unnoticed before. Its CRDs are the ones the Application tests use.
 */
export const ARGOCD_CHART = {
    repo: "https://argoproj.github.io/argo-helm",
    chart: "argo-cd",
    version: "10.1.1",
    appVersion: "v3.4.4",
} as const;

let valuesIndex: ChartValuesIndex | undefined;

/**
 * Which values keys the pinned chart reads: derived from its tarball (`indexChart` in
 * test/support/chart.ts), and compared with it by the tests. An override key outside it is
 * refused. Read on first use (only the override guard needs it), then kept.
 */
export function argoCdValuesIndex(): ChartValuesIndex {
    valuesIndex ??= JSON.parse(readFileSync(path.join(__dirname, "charts", `argo-cd-${ARGOCD_CHART.version}.values-index.json`), "utf8")) as ChartValuesIndex;
    return valuesIndex;
}

/**
 * The Helm post-renderer every Argo CD container passes through: it sets DATA_RESIDENCY_MODE on
 * the containers no values key reaches (the repo-server's `copyutil` and dex's init containers).
 */
export const POST_RENDER_SCRIPT = path.join(__dirname, "post-render.mjs");

/** The Secret the chart's workloads read Redis' password from (`auth`); the program makes it. */
export const REDIS_SECRET = { name: "argocd-redis", key: "auth" } as const;

/** The variable every workload the platform deploys carries (see the residency policy pack). */
export const DATA_RESIDENCY_ENV = { name: "DATA_RESIDENCY_MODE", value: "strict_eea" } as const;

/** The images the chart runs, by registry and repository (the chart's defaults, named explicitly). */
export const ARGOCD_IMAGES = {
    argocd: "quay.io/argoproj/argocd",
    dex: "ghcr.io/dexidp/dex",
    redis: "public.ecr.aws/docker/library/redis",
    redisExporter: "ghcr.io/oliver006/redis_exporter",
} as const;

/** The Helm release name: the chart names its objects `argocd-server`, `argocd-repo-server`, … */
export const ARGOCD_RELEASE = "argocd";
/** The chart's API server Service and its plain-HTTP port (`server.insecure`). */
export const ARGOCD_SERVER_SERVICE = "argocd-server";
export const ARGOCD_SERVER_HTTP_PORT = 80;
/** Argo CD's webhook endpoint. */
export const WEBHOOK_PATH = "/api/webhook";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A chart values override from config: deep-merged over the computed values (objects merge, anything else replaces). */
export type ArgoCdValuesOverride = JsonObject;

export interface ResourceList {
    readonly cpu: string;
    readonly memory: string;
}
export interface Resources {
    readonly requests: ResourceList;
    readonly limits: ResourceList;
}

/**
 * Where each component's resources go in the chart's values. Everything that runs gets requests
 * and limits, including init containers, the Redis secret init job and the components the
 * defaults leave off (dex, commit server, Redis exporter), so switching one on cannot start it
 * unbounded.
 */
export const RESOURCE_PATHS = {
    controller: ["controller"],
    repoServer: ["repoServer"],
    copyutil: ["repoServer", "copyutil"],
    server: ["server"],
    applicationSet: ["applicationSet"],
    notifications: ["notifications"],
    dex: ["dex"],
    dexInit: ["dex", "initImage"],
    redis: ["redis"],
    redisExporter: ["redis", "exporter"],
    redisSecretInit: ["redisSecretInit"],
    commitServer: ["commitServer"],
} as const satisfies Record<string, readonly string[]>;
export type ArgoCdComponent = keyof typeof RESOURCE_PATHS;

/** How big the cluster is, by node count: `small` 1–2 nodes, `medium` 3–9, `large` 10 or more. */
export type SizeTier = "small" | "medium" | "large";

export interface ArgoCdSizing {
    readonly tier: SizeTier;
    readonly serverReplicas: number;
    readonly repoServerReplicas: number;
    readonly controllerReplicas: number;
    readonly statusProcessors: number;
    readonly operationProcessors: number;
    /** Concurrent manifest generations per repo-server (bounds its memory). */
    readonly repoParallelism: number;
    readonly resources: Readonly<Record<ArgoCdComponent, Resources>>;
}

const r = (reqCpu: string, reqMem: string, limCpu: string, limMem: string): Resources => ({
    requests: { cpu: reqCpu, memory: reqMem },
    limits: { cpu: limCpu, memory: limMem },
});

const SMALL_RESOURCES: Record<ArgoCdComponent, Resources> = {
    controller: r("250m", "512Mi", "1", "1Gi"),
    repoServer: r("100m", "256Mi", "1", "1Gi"),
    copyutil: r("10m", "32Mi", "100m", "256Mi"),
    server: r("50m", "128Mi", "500m", "256Mi"),
    applicationSet: r("25m", "64Mi", "250m", "256Mi"),
    notifications: r("25m", "64Mi", "250m", "128Mi"),
    dex: r("10m", "32Mi", "100m", "128Mi"),
    dexInit: r("10m", "32Mi", "100m", "256Mi"),
    redis: r("50m", "64Mi", "250m", "256Mi"),
    redisExporter: r("10m", "32Mi", "100m", "64Mi"),
    redisSecretInit: r("10m", "32Mi", "100m", "64Mi"),
    commitServer: r("25m", "64Mi", "250m", "256Mi"),
};

/**
 * Sizing rule, by node count (all nodes, servers and workers) and managed clusters:
 * - small (1–2 nodes): one API server, one repo-server; Argo CD's default processors (20 status,
 *   10 operation); controller 250m/512Mi requested, 1 CPU/1Gi limit.
 * - medium (3–9 nodes): two API servers and two repo-servers (spread by the chart's soft pod
 *   anti-affinity, with a PodDisruptionBudget), controller 500m/1Gi → 2 CPU/2Gi, repo-server
 *   limit 2Gi, Redis a little larger.
 * - large (10+ nodes): three repo-servers, processors 50/25 (the figures Argo CD's HA guide gives
 *   for about 1000 Applications), controller 1/2Gi → 4 CPU/4Gi.
 * - The application controller shards by destination cluster, never within one: `controller.replicas`
 *   is the number of clusters Argo CD manages (1: this one), sharded with the stable `legacy`
 *   algorithm; a larger single cluster gets a larger controller, not more replicas.
 */
export function argoCdSizing(nodeCount: number, clusters: number): ArgoCdSizing {
    if (!Number.isInteger(nodeCount) || nodeCount < 1) {
        throw new Error(`ArgoCd: nodeCount is ${JSON.stringify(nodeCount)}; allowed: a whole number of nodes, 1 or more`);
    }
    if (!Number.isInteger(clusters) || clusters < 1 || clusters > 50) {
        throw new Error(`ArgoCd: clusters is ${JSON.stringify(clusters)}; allowed: a whole number from 1 to 50 (one controller shard per managed cluster)`);
    }
    if (nodeCount < 3) {
        return { tier: "small", serverReplicas: 1, repoServerReplicas: 1, controllerReplicas: clusters, statusProcessors: 20, operationProcessors: 10, repoParallelism: 2, resources: SMALL_RESOURCES };
    }
    if (nodeCount < 10) {
        return {
            tier: "medium",
            serverReplicas: 2,
            repoServerReplicas: 2,
            controllerReplicas: clusters,
            statusProcessors: 20,
            operationProcessors: 10,
            repoParallelism: 4,
            resources: {
                ...SMALL_RESOURCES,
                controller: r("500m", "1Gi", "2", "2Gi"),
                repoServer: r("200m", "512Mi", "1", "2Gi"),
                redis: r("100m", "128Mi", "500m", "512Mi"),
            },
        };
    }
    return {
        tier: "large",
        serverReplicas: 2,
        repoServerReplicas: 3,
        controllerReplicas: clusters,
        statusProcessors: 50,
        operationProcessors: 25,
        repoParallelism: 6,
        resources: {
            ...SMALL_RESOURCES,
            controller: r("1", "2Gi", "4", "4Gi"),
            repoServer: r("250m", "512Mi", "2", "2Gi"),
            server: r("100m", "256Mi", "1", "512Mi"),
            redis: r("100m", "256Mi", "1", "1Gi"),
        },
    };
}

/**
 * Argo CD's single sign-on, without its secret: Dex in front of GitLab (`gitlab`, GitLab being the
 * identity source here), or a generic OpenID Connect issuer (`oidc`). The client secret lives in
 * `argocd-secret` under SSO_SECRET_KEYS[provider], which the config refers to as `$<key>`.
 */
export interface ArgoCdSso {
    readonly provider: "gitlab" | "oidc";
    /** The GitLab instance (gitlab) or the OIDC issuer (oidc), https. */
    readonly issuer: string;
    readonly clientId: string;
    /** The ID token claim with the user's groups. Defaults to "groups". */
    readonly groupsClaim?: string;
}

/** Where each provider's client secret goes in `argocd-secret`. */
export const SSO_SECRET_KEYS = { gitlab: "dex.gitlab.clientSecret", oidc: "oidc.clientSecret" } as const;

/** What `argoCdValues` needs: plain data, no secret. */
export interface ArgoCdValuesSpec {
    /** UI/API hostname: `global.domain` and the URL Argo CD knows itself by. */
    readonly hostname: string;
    /** Single sign-on; without it no one logs in to Argo CD (the local admin is off). */
    readonly sso?: ArgoCdSso;
    /** SSO group mapped to `role:admin` (break-glass); needs `sso`. */
    readonly breakGlassGroup?: string;
    /** Further `p,`/`g,` lines for `policy.csv`. */
    readonly extraPolicyLines: readonly string[];
    readonly reconciliationSeconds: number;
    readonly nodeCount: number;
    readonly clusters: number;
    readonly override?: ArgoCdValuesOverride;
}

/** Paths (key lists) an override may neither set nor replace a parent of. */
export const PROTECTED_VALUES: readonly (readonly string[])[] = [
    // The local admin user stays off; access goes through SSO groups and RBAC.
    ["configs", "cm", "admin.enabled"],
    ["configs", "cm", "users.anonymous.enabled"],
    ["configs", "cm", "url"],
    // Single sign-on and who it lets in: only through sso and breakGlassGroup.
    ["configs", "cm", "dex.config"],
    ["configs", "cm", "oidc.config"],
    ["dex", "enabled"],
    ["global", "domain"],
    // TLS ends at Traefik; the API server answers plain HTTP behind it, and never without auth.
    ["configs", "params", "server.insecure"],
    ["configs", "params", "server.disable.auth"],
    // Default read-only, break-glass group, scopes: only through breakGlassGroup/extraPolicyLines.
    ["configs", "rbac"],
    // Credentials only travel as secret inputs, never in plain config.
    ["configs", "secret"],
    // Redis' password Secret comes from the program (the chart's pre-install hook Job would make
    // it, and hooks do not run under helm.v4.Chart).
    ["redisSecretInit", "enabled"],
    // Every workload carries the data-residency mode.
    ["global", "env"],
    ["configs", "repositories"],
    ["configs", "credentialTemplates"],
    // Exposure: only the component's own VPN-restricted route and the public webhook path.
    ["server", "ingress"],
    ["server", "ingressGrpc"],
    ["server", "route"],
    ["server", "httproute"],
    ["server", "grpcroute"],
    ["server", "service", "type"],
    ["applicationSet", "ingress"],
    ["applicationSet", "httproute"],
    // The routes point at the Service `argocd-server`, port 80: names and port stay as the chart renders them.
    ["nameOverride"],
    ["fullnameOverride"],
    ["server", "name"],
    ["server", "service", "servicePortHttp"],
];
/** Keys under `configs.cm` an override may not add: local accounts (`accounts.<name>`). */
const PROTECTED_CM_PREFIX = "accounts.";
const SECRET_SUBTREES = [["configs", "secret"], ["configs", "repositories"], ["configs", "credentialTemplates"]];

/** `configs.cm."admin.enabled"`: dotted, keys with dots quoted. */
export function formatPath(path: readonly string[]): string {
    return path.map((k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k))).join(".");
}

function isObject(value: unknown): value is JsonObject {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

function startsWith(path: readonly string[], prefix: readonly string[]): boolean {
    return prefix.length <= path.length && prefix.every((k, i) => path[i] === k);
}

/** Every leaf of `value` (a non-object, an array or an empty object) with its path. */
function leaves(value: JsonValue, path: string[] = []): { path: string[]; value: JsonValue }[] {
    if (isObject(value) && Object.keys(value).length > 0) {
        return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
    }
    return [{ path, value }];
}

/**
 * Throws at the first override entry that touches a protected value or that the pinned chart
 * does not read (Helm would drop it without a word), naming it.
 */
export function checkArgoCdOverride(override: ArgoCdValuesOverride): void {
    if (!isObject(override)) {
        throw new Error(`ArgoCd: values is ${JSON.stringify(override)}; allowed: an object of chart values`);
    }
    const [unread] = unreadValues(argoCdValuesIndex(), override);
    if (unread !== undefined) {
        throw new Error(
            `ArgoCd: values override sets ${formatKeyPath(unread)}, which the argo-cd chart ${ARGOCD_CHART.version} does not read (Helm would ignore it); ` +
                "allowed: keys of the chart's values.yaml or read by its templates",
        );
    }
    // An empty override sets nothing.
    for (const leaf of leaves(override).filter((l) => l.path.length > 0)) {
        const shown = SECRET_SUBTREES.some((s) => startsWith(leaf.path, s)) ? "(value not shown)" : JSON.stringify(leaf.value);
        const hit = PROTECTED_VALUES.find((p) => startsWith(leaf.path, p) || startsWith(p, leaf.path));
        if (hit !== undefined) {
            throw new Error(
                `ArgoCd: values override sets ${formatPath(leaf.path)} to ${shown}; allowed: any chart value except ${formatPath(hit)} ` +
                    "(security-relevant: set by the component; see PROTECTED_VALUES)",
            );
        }
        if (leaf.path.length >= 3 && leaf.path[0] === "configs" && leaf.path[1] === "cm" && leaf.path[2].startsWith(PROTECTED_CM_PREFIX)) {
            throw new Error(`ArgoCd: values override sets ${formatPath(leaf.path)} to ${shown}; allowed: no local accounts (configs.cm."accounts.*"), users come from SSO groups`);
        }
    }
}

/** Deep merge: objects merge key by key; anything else in `over` replaces. Pure. */
export function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
    const out: JsonObject = { ...base };
    for (const [k, v] of Object.entries(over)) {
        const b = out[k];
        out[k] = isObject(b) && isObject(v) ? deepMerge(b, v) : v;
    }
    return out;
}

function get(values: JsonValue, path: readonly string[]): JsonValue | undefined {
    let cur: JsonValue | undefined = values;
    for (const k of path) {
        cur = isObject(cur) ? cur[k] : undefined;
    }
    return cur;
}

const POLICY_LINE = /^[pg],[^\n\r]*$/;
const GROUP = /^[^\s,#"]+$/;

/** The settings every values object carries, checked once. */
function checkValuesSpec(spec: ArgoCdValuesSpec): void {
    if (spec.breakGlassGroup !== undefined && (typeof spec.breakGlassGroup !== "string" || !GROUP.test(spec.breakGlassGroup))) {
        throw new Error(`ArgoCd: breakGlassGroup is ${JSON.stringify(spec.breakGlassGroup)}; allowed: an SSO group name without whitespace, ',', '#' or '"', e.g. platform/argocd-breakglass`);
    }
    if (spec.breakGlassGroup !== undefined && spec.sso === undefined) {
        throw new Error(`ArgoCd: breakGlassGroup is ${JSON.stringify(spec.breakGlassGroup)} but no sso is configured; allowed: a break-glass group only with sso (no one could log in as it otherwise)`);
    }
    if (spec.sso !== undefined) {
        const { provider, issuer, clientId, groupsClaim } = spec.sso;
        if (provider !== "gitlab" && provider !== "oidc") {
            throw new Error(`ArgoCd: sso.provider is ${JSON.stringify(provider)}; allowed: gitlab or oidc`);
        }
        if (typeof issuer !== "string" || !/^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~%+-]+)*\/?$/.test(issuer)) {
            throw new Error(`ArgoCd: sso.issuer is ${JSON.stringify(issuer)}; allowed: an https:// URL of the identity provider`);
        }
        if (typeof clientId !== "string" || !/^[A-Za-z0-9._:-]{1,200}$/.test(clientId)) {
            throw new Error(`ArgoCd: sso.clientId is ${JSON.stringify(clientId)}; allowed: letters, digits, '.', '_', ':', '-'`);
        }
        if (groupsClaim !== undefined && !/^[A-Za-z0-9_.:-]{1,64}$/.test(groupsClaim)) {
            throw new Error(`ArgoCd: sso.groupsClaim is ${JSON.stringify(groupsClaim)}; allowed: a claim name`);
        }
    }
    for (const line of spec.extraPolicyLines) {
        if (typeof line !== "string" || !POLICY_LINE.test(line)) {
            throw new Error(`ArgoCd: extraPolicyLines entry is ${JSON.stringify(line)}; allowed: one policy.csv line starting with "p," or "g,"`);
        }
    }
    const s = spec.reconciliationSeconds;
    if (!isReconciliationSeconds(s)) {
        throw new Error(
            `ArgoCd: reconciliationSeconds is ${JSON.stringify(s)}; allowed: a whole number of seconds from ${RECONCILIATION_SECONDS.min} to ${RECONCILIATION_SECONDS.max}`,
        );
    }
}

/**
 * The chart's values. Pure. The override is deep-merged over the computed values after being
 * checked against PROTECTED_VALUES; the result must still give every component requests and limits.
 */
export function argoCdValues(spec: ArgoCdValuesSpec): JsonObject {
    checkValuesSpec(spec);
    const sizing = argoCdSizing(spec.nodeCount, spec.clusters);
    const res = sizing.resources;
    const policyCsv = [...(spec.breakGlassGroup !== undefined ? [`g, ${spec.breakGlassGroup}, role:admin`] : []), ...spec.extraPolicyLines].join("\n") + "\n";
    const sso = ssoValues(spec.sso);
    const resources = (c: ArgoCdComponent): JsonObject => ({
        requests: { ...res[c].requests },
        limits: { ...res[c].limits },
    });
    const pdb = (replicas: number): JsonObject => ({ enabled: replicas > 1, minAvailable: 1 });

    const computed: JsonObject = {
        // Images named explicitly, so the registries they come from are visible in the values.
        // global.env reaches the main container of every component (the chart concatenates it with
        // each component's own env); the init containers no key reaches get it from the post-renderer.
        global: {
            domain: spec.hostname,
            image: { repository: ARGOCD_IMAGES.argocd, tag: ARGOCD_CHART.appVersion },
            env: [{ name: DATA_RESIDENCY_ENV.name, value: DATA_RESIDENCY_ENV.value }],
        },
        configs: {
            cm: {
                url: `https://${spec.hostname}`,
                "admin.enabled": "false",
                "users.anonymous.enabled": "false",
                "exec.enabled": "false",
                "timeout.reconciliation": `${spec.reconciliationSeconds}s`,
                ...sso.cm,
            },
            params: {
                "server.insecure": "true",
                "server.disable.auth": "false",
                "controller.status.processors": String(sizing.statusProcessors),
                "controller.operation.processors": String(sizing.operationProcessors),
                "controller.sharding.algorithm": "legacy",
                "reposerver.parallelism.limit": String(sizing.repoParallelism),
            },
            rbac: {
                "policy.default": "role:readonly",
                "policy.csv": policyCsv,
                scopes: `[${spec.sso?.groupsClaim ?? "groups"}]`,
            },
            // The webhook secret goes in by a secret SecretPatch after the chart (see ArgoCd), so
            // the values hold no secret and stay known at preview.
            secret: { createSecret: true },
        },
        controller: { replicas: sizing.controllerReplicas, resources: resources("controller") },
        repoServer: {
            replicas: sizing.repoServerReplicas,
            resources: resources("repoServer"),
            copyutil: { resources: resources("copyutil") },
            pdb: pdb(sizing.repoServerReplicas),
        },
        server: {
            replicas: sizing.serverReplicas,
            resources: resources("server"),
            service: { type: "ClusterIP" },
            ingress: { enabled: false },
            ingressGrpc: { enabled: false },
            pdb: pdb(sizing.serverReplicas),
        },
        applicationSet: { replicas: 1, resources: resources("applicationSet") },
        notifications: { resources: resources("notifications") },
        // Dex runs only for GitLab sign-on (sso.provider gitlab); it is sized either way.
        dex: { enabled: sso.dex, resources: resources("dex"), image: { repository: ARGOCD_IMAGES.dex }, initImage: { resources: resources("dexInit") } },
        redis: {
            resources: resources("redis"),
            image: { repository: ARGOCD_IMAGES.redis },
            exporter: { resources: resources("redisExporter"), image: { repository: ARGOCD_IMAGES.redisExporter } },
        },
        // The chart makes Redis' password Secret only in a pre-install hook Job, which
        // helm.v4.Chart does not run: the program makes the Secret (REDIS_SECRET) instead.
        redisSecretInit: { enabled: false, resources: resources("redisSecretInit") },
        commitServer: { resources: resources("commitServer") },
    };
    if (spec.override === undefined) {
        return computed;
    }
    checkArgoCdOverride(spec.override);
    const merged = deepMerge(computed, spec.override);
    for (const [component, path] of Object.entries(RESOURCE_PATHS)) {
        for (const kind of ["requests", "limits"]) {
            for (const name of ["cpu", "memory"]) {
                const v = get(merged, [...path, "resources", kind, name]);
                if (typeof v !== "string" && typeof v !== "number") {
                    throw new Error(
                        `ArgoCd: values override leaves ${formatPath([...path, "resources", kind, name])} (${component}) as ${JSON.stringify(v ?? null)}; allowed: a quantity, e.g. "100m" or "256Mi" (every component keeps requests and limits)`,
                    );
                }
            }
        }
    }
    return merged;
}

/**
 * The SSO part of the values: Dex's GitLab connector (`dex.config`) or Argo CD's own OIDC client
 * (`oidc.config`), each referring to its client secret in argocd-secret by `$<key>`, never
 * holding it. Groups come from the ID token's groups claim; RBAC maps them (`scopes`).
 */
function ssoValues(sso: ArgoCdSso | undefined): { cm: JsonObject; dex: boolean } {
    if (sso === undefined) {
        return { cm: {}, dex: false };
    }
    if (sso.provider === "gitlab") {
        const dexConfig = {
            connectors: [
                {
                    type: "gitlab",
                    id: "gitlab",
                    name: "GitLab",
                    config: { baseURL: sso.issuer.replace(/\/$/, ""), clientID: sso.clientId, clientSecret: `$${SSO_SECRET_KEYS.gitlab}`, useLoginAsID: false },
                },
            ],
        };
        return { cm: { "dex.config": stringifyYaml(dexConfig) }, dex: true };
    }
    const claim = sso.groupsClaim ?? "groups";
    const oidcConfig = {
        name: "SSO",
        issuer: sso.issuer,
        clientID: sso.clientId,
        clientSecret: `$${SSO_SECRET_KEYS.oidc}`,
        requestedScopes: ["openid", "profile", "email", claim],
        requestedIDTokenClaims: { [claim]: { essential: true } },
    };
    return { cm: { "oidc.config": stringifyYaml(oidcConfig) }, dex: false };
}

/** A hostname: lowercase DNS labels, at least two, no trailing dot. */
function checkHostname(key: string, value: string): void {
    const labels = typeof value === "string" ? value.split(".") : [];
    const ok = typeof value === "string" && value.length <= 253 && labels.length >= 2 && labels.every((l) => /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(l));
    if (!ok) {
        throw new Error(`ArgoCd: ${key} is ${JSON.stringify(value)}; allowed: a lowercase DNS name with at least two labels, e.g. argocd.example.com`);
    }
}

/** The manifests repository Argo CD reads with a GitLab deploy token. */
export interface ArgoCdRepository {
    /** https URL of the repository, e.g. `https://gitlab.example.com/platform/manifests.git`. */
    readonly url: string;
    /** The deploy token's username, e.g. `gitlab+deploy-token-12`. */
    readonly username: pulumi.Input<string>;
    /** The deploy token (read_repository). Kept secret. */
    readonly password: pulumi.Input<string>;
}

export interface ArgoCdArgs {
    /** Namespace Argo CD is installed into (created here). Defaults to DEFAULT_ARGOCD_NAMESPACE. */
    readonly namespace?: string;
    /** UI/API hostname, reachable only from `vpnCidr`. */
    readonly hostname: string;
    /** Public hostname for `/api/webhook` only. Must differ from `hostname`. */
    readonly webhookHostname: string;
    /** The VPN's address range: the only sources Traefik lets through to the UI/API. */
    readonly vpnCidr: string;
    /** Single sign-on; its client secret is `ssoClientSecret`. Defaults to none (no one logs in). */
    readonly sso?: ArgoCdSso;
    /** The SSO client's secret, patched into argocd-secret. Required with `sso`. Kept secret. */
    readonly ssoClientSecret?: pulumi.Input<string>;
    /**
     * SSO group mapped to `role:admin` (break-glass); needs `sso`. Everyone else is
     * `role:readonly`. When SSO is down, the holder of the cluster's admin kubeconfig works
     * through the Kubernetes API (`argocd --core`, `kubectl -n argocd …`), which needs no Argo CD
     * login. Defaults to none.
     */
    readonly breakGlassGroup?: string;
    /**
     * Where the pinned chart comes from: a Helm repository or OCI registry mirroring it, or a
     * local tarball (air-gapped installs). Defaults to ARGOCD_CHART.repo.
     */
    readonly chartSource?: ArgoCdChartSource;
    /** Further `policy.csv` lines (`p, …` / `g, …`). Defaults to none. */
    readonly extraPolicyLines?: readonly string[];
    /** Periodic refresh, seconds (`timeout.reconciliation`), within RECONCILIATION_SECONDS. Defaults to 180. */
    readonly reconciliationSeconds?: number;
    /** Nodes in the cluster (servers and workers): sizes repo-server, API server and controller (see argoCdSizing). */
    readonly nodeCount: number;
    /** Clusters Argo CD deploys to: controller shards. Defaults to 1. */
    readonly clusters?: number;
    /** Shared secret GitLab sends as `X-Gitlab-Token`; Argo CD rejects webhooks without it. Kept secret. */
    readonly gitlabWebhookSecret: pulumi.Input<string>;
    readonly repository: ArgoCdRepository;
    /** Ingress class. Defaults to "traefik" (k3s's bundled Traefik). */
    readonly ingressClassName?: string;
    /** TLS Secrets in the namespace for each hostname. Defaults to Traefik's default certificate. */
    readonly tlsSecretNames?: { readonly ui?: string; readonly webhook?: string };
    /** Chart values override from config; PROTECTED_VALUES cannot be overridden. Defaults to none. */
    readonly values?: ArgoCdValuesOverride;
}


/** A mirror of the pinned chart: `repo` (https:// Helm repository or oci:// registry path) or `path` (a local .tgz). */
export type ArgoCdChartSource = { readonly repo: string } | { readonly path: string };

/** The chart inputs of `helm.v4.Chart` for a source. Pure. */
export function argoCdChartInputs(source: ArgoCdChartSource | undefined): { chart: string; version: string; repositoryOpts?: { repo: string } } {
    const version = ARGOCD_CHART.version;
    if (source === undefined) {
        return { chart: ARGOCD_CHART.chart, version, repositoryOpts: { repo: ARGOCD_CHART.repo } };
    }
    if ("path" in source) {
        if (!/^\/[A-Za-z0-9._/-]*\.tgz$/.test(source.path) || source.path.split("/").includes("..")) {
            throw new Error(`ArgoCd: chartSource.path is ${JSON.stringify(source.path)}; allowed: an absolute path to the argo-cd ${version} chart's .tgz`);
        }
        return { chart: source.path, version };
    }
    const repo = source.repo.replace(/\/+$/, "");
    if (repo.startsWith("oci://")) {
        return { chart: `${repo}/${ARGOCD_CHART.chart}`, version };
    }
    if (!repo.startsWith("https://")) {
        throw new Error(`ArgoCd: chartSource.repo is ${JSON.stringify(source.repo)}; allowed: an https:// Helm repository or an oci:// registry path`);
    }
    return { chart: ARGOCD_CHART.chart, version, repositoryOpts: { repo } };
}

/** The plain part of the args, checked: what the constructor uses before registering anything. */
export interface ArgoCdPlan {
    readonly namespace: string;
    readonly ingressClassName: string;
    readonly vpnCidr: string;
    /** The chart's values (no secret in them). */
    readonly values: JsonObject;
    readonly valuesSpec: ArgoCdValuesSpec;
}

/** Validates the args and computes the values without the secret. Pure. */
export function planArgoCd(args: ArgoCdArgs): ArgoCdPlan {
    const namespace = args.namespace ?? DEFAULT_ARGOCD_NAMESPACE;
    checkDnsLabel("ArgoCd: namespace", namespace);
    checkHostname("hostname", args.hostname);
    checkHostname("webhookHostname", args.webhookHostname);
    if (args.webhookHostname === args.hostname) {
        throw new Error(`ArgoCd: webhookHostname is ${JSON.stringify(args.webhookHostname)}; allowed: a hostname other than hostname (the UI host is VPN-only, the webhook host public)`);
    }
    const cidr = parseCidr(typeof args.vpnCidr === "string" ? args.vpnCidr : "");
    if (!cidr.ok) {
        throw new Error(`ArgoCd: vpnCidr is ${JSON.stringify(args.vpnCidr)} (${cidr.reason}); allowed: the VPN's network as a CIDR, e.g. 10.8.0.0/24`);
    }
    if (cidr.cidr.prefix === 0) {
        throw new Error(`ArgoCd: vpnCidr is ${JSON.stringify(args.vpnCidr)}; allowed: a CIDR narrower than /0 (the UI must not be open to everyone)`);
    }
    checkRepoUrl("ArgoCd: repository.url", args.repository.url);
    if (typeof args.repository.username === "string" && !/^[^\s:]+$/.test(args.repository.username)) {
        throw new Error(`ArgoCd: repository.username is ${JSON.stringify(args.repository.username)}; allowed: the deploy token's username, e.g. gitlab+deploy-token-12`);
    }
    const ingressClassName = args.ingressClassName ?? "traefik";
    checkDnsLabel("ArgoCd: ingressClassName", ingressClassName);
    for (const [key, secretName] of Object.entries(args.tlsSecretNames ?? {})) {
        if (secretName !== undefined) {
            checkDnsLabel(`ArgoCd: tlsSecretNames.${key}`, secretName);
        }
    }
    if (typeof args.gitlabWebhookSecret === "string" && args.gitlabWebhookSecret.length < 20) {
        throw new Error("ArgoCd: gitlabWebhookSecret is too short (value not shown); allowed: at least 20 characters, e.g. a generated random string");
    }
    if ((args.sso === undefined) !== (args.ssoClientSecret === undefined)) {
        throw new Error("ArgoCd: sso and ssoClientSecret go together; allowed: both (single sign-on) or neither");
    }
    argoCdChartInputs(args.chartSource);
    const valuesSpec: ArgoCdValuesSpec = {
        hostname: args.hostname,
        ...(args.sso !== undefined ? { sso: args.sso } : {}),
        ...(args.breakGlassGroup !== undefined ? { breakGlassGroup: args.breakGlassGroup } : {}),
        extraPolicyLines: args.extraPolicyLines ?? [],
        reconciliationSeconds: args.reconciliationSeconds ?? RECONCILIATION_SECONDS.default,
        nodeCount: args.nodeCount,
        clusters: args.clusters ?? 1,
        ...(args.values !== undefined ? { override: args.values } : {}),
    };
    return { namespace, ingressClassName, vpnCidr: cidr.cidr.text, values: argoCdValues(valuesSpec), valuesSpec };
}

/** Traefik's router annotations for an Ingress on the websecure (443) entry point. */
function traefikAnnotations(namespace: string, middlewares: readonly string[]): Record<string, string> {
    return {
        "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
        "traefik.ingress.kubernetes.io/router.tls": "true",
        "traefik.ingress.kubernetes.io/router.middlewares": middlewares.map((m) => `${namespace}-${m}@kubernetescrd`).join(","),
    };
}

/** Middleware names (fixed: Ingress annotations refer to them by name). */
export const UI_ALLOWLIST_MIDDLEWARE = "argocd-ui-vpn-only";
export const WEBHOOK_RATELIMIT_MIDDLEWARE = "argocd-webhook-ratelimit";

/**
 * Argo CD from the pinned argo-cd chart on the cluster given in `opts.providers`: the local admin
 * user off, default role read-only, one SSO group as break-glass admin, the GitLab webhook secret
 * and a repository Secret for the manifests repository.
 *
 * Exposure (Traefik, TLS ends there, port 443 only): the UI/API on `hostname` behind an
 * `ipAllowList` middleware for `vpnCidr` (matched on the connection's source address, never on
 * X-Forwarded-For); on `webhookHostname` only the exact path `/api/webhook`, rate-limited, where
 * Argo CD checks GitLab's `X-Gitlab-Token` against the webhook secret. The allow-list sees the
 * client's address only when Traefik's Service keeps it (`externalTrafficPolicy: Local`) or VPN
 * traffic reaches Traefik directly. The CLI talks gRPC-web through this route (`--grpc-web`).
 */
export class ArgoCd extends pulumi.ComponentResource {
    /** `https://<hostname>` (VPN only). */
    public readonly url: pulumi.Output<string>;
    /** `https://<webhookHostname>/api/webhook`: GitLab's webhook URL. */
    public readonly webhookUrl: pulumi.Output<string>;
    public readonly namespace: pulumi.Output<string>;
    /** The chart: what needs Argo CD's CRDs or services depends on it. */
    public readonly chart: k8s.helm.v4.Chart;
    /** The repository Secret for the manifests repository. */
    public readonly repositorySecret: k8s.core.v1.Secret;
    /** The patch of `argocd-secret` that holds GitLab's webhook secret (`webhook.gitlab.secret`). */
    public readonly webhookSecret: k8s.core.v1.SecretPatch;
    /** Redis' password Secret (REDIS_SECRET), made before the chart. */
    public readonly redisSecret: k8s.core.v1.Secret;
    public readonly plan: ArgoCdPlan;

    constructor(name: string, args: ArgoCdArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        const plan = planArgoCd(args);
        if (!hasKubernetesProvider(opts)) {
            throw new Error("ArgoCd: opts.providers has no kubernetes provider; allowed: the cluster's provider, e.g. { providers: [controlPlane.provider] }");
        }
        super("zerotouch:gitops:ArgoCd", name, {}, opts);
        this.plan = plan;
        const ns = plan.namespace;

        // Labelled, so server-side apply owns a field of it: an object that sets nothing but its
        // name leaves its applier owning nothing, and every apply then writes it again.
        const namespace = new k8s.core.v1.Namespace(
            `${name}-namespace`,
            { metadata: { name: ns, labels: { "app.kubernetes.io/part-of": "argocd", "app.kubernetes.io/managed-by": "zerotouch" } } },
            { parent: this },
        );

        // Redis' password, which server, repo-server, controller and Redis itself read from
        // REDIS_SECRET: made here, before the chart (its own hook Job would never run).
        const redisPassword = new random.RandomPassword(`${name}-redis-password`, { length: 40, special: false }, { parent: this });
        this.redisSecret = new k8s.core.v1.Secret(
            `${name}-redis`,
            {
                metadata: { name: REDIS_SECRET.name, namespace: ns, labels: { "app.kubernetes.io/part-of": "argocd" } },
                type: "Opaque",
                stringData: { [REDIS_SECRET.key]: redisPassword.result },
            },
            { parent: this, dependsOn: [namespace] },
        );

        // The values hold no secret, so they are known at preview (policy packs read them); the
        // webhook secret goes into argocd-secret by a patch after the chart.
        this.chart = new k8s.helm.v4.Chart(
            `${name}-chart`,
            {
                name: ARGOCD_RELEASE,
                ...argoCdChartInputs(args.chartSource),
                namespace: ns,
                values: plan.values,
                postRenderer: argoCdPostRenderer(),
            },
            { parent: this, dependsOn: [namespace, this.redisSecret] },
        );

        this.webhookSecret = new k8s.core.v1.SecretPatch(
            `${name}-webhook-secret`,
            {
                metadata: { name: "argocd-secret", namespace: ns, annotations: { "pulumi.com/patchForce": "true" } },
                stringData: {
                    "webhook.gitlab.secret": pulumi.secret(args.gitlabWebhookSecret),
                    ...(args.sso !== undefined && args.ssoClientSecret !== undefined ? { [SSO_SECRET_KEYS[args.sso.provider]]: pulumi.secret(args.ssoClientSecret) } : {}),
                },
            },
            { parent: this, dependsOn: [this.chart] },
        );

        this.repositorySecret = new k8s.core.v1.Secret(
            `${name}-repository`,
            {
                metadata: {
                    name: "manifests-repository",
                    namespace: ns,
                    labels: { "argocd.argoproj.io/secret-type": "repository", "app.kubernetes.io/part-of": "argocd" },
                },
                type: "Opaque",
                stringData: {
                    type: "git",
                    url: args.repository.url,
                    username: args.repository.username,
                    password: pulumi.secret(args.repository.password),
                },
            },
            { parent: this, dependsOn: [namespace] },
        );

        const allowlist = new k8s.apiextensions.CustomResource(
            `${name}-ui-allowlist`,
            {
                apiVersion: "traefik.io/v1alpha1",
                kind: "Middleware",
                metadata: { name: UI_ALLOWLIST_MIDDLEWARE, namespace: ns },
                // No ipStrategy: the connection's source address counts, not a header a client can set.
                spec: { ipAllowList: { sourceRange: [plan.vpnCidr] } },
            },
            { parent: this, dependsOn: [namespace] },
        );
        const ratelimit = new k8s.apiextensions.CustomResource(
            `${name}-webhook-ratelimit`,
            {
                apiVersion: "traefik.io/v1alpha1",
                kind: "Middleware",
                metadata: { name: WEBHOOK_RATELIMIT_MIDDLEWARE, namespace: ns },
                spec: { rateLimit: { average: 10, period: "1s", burst: 20 } },
            },
            { parent: this, dependsOn: [namespace] },
        );

        const backend = { service: { name: ARGOCD_SERVER_SERVICE, port: { number: ARGOCD_SERVER_HTTP_PORT } } };
        const tls = (host: string, secretName: string | undefined) => [{ hosts: [host], ...(secretName !== undefined ? { secretName } : {}) }];
        new k8s.networking.v1.Ingress(
            `${name}-ui`,
            {
                metadata: { name: "argocd-ui", namespace: ns, annotations: traefikAnnotations(ns, [UI_ALLOWLIST_MIDDLEWARE]) },
                spec: {
                    ingressClassName: plan.ingressClassName,
                    tls: tls(args.hostname, args.tlsSecretNames?.ui),
                    rules: [{ host: args.hostname, http: { paths: [{ path: "/", pathType: "Prefix", backend }] } }],
                },
            },
            { parent: this, dependsOn: [allowlist, this.chart] },
        );
        new k8s.networking.v1.Ingress(
            `${name}-webhook`,
            {
                metadata: { name: "argocd-webhook", namespace: ns, annotations: traefikAnnotations(ns, [WEBHOOK_RATELIMIT_MIDDLEWARE]) },
                spec: {
                    ingressClassName: plan.ingressClassName,
                    tls: tls(args.webhookHostname, args.tlsSecretNames?.webhook),
                    rules: [{ host: args.webhookHostname, http: { paths: [{ path: WEBHOOK_PATH, pathType: "Exact", backend }] } }],
                },
            },
            { parent: this, dependsOn: [ratelimit, this.chart] },
        );

        this.url = pulumi.output(`https://${args.hostname}`);
        this.webhookUrl = pulumi.output(`https://${args.webhookHostname}${WEBHOOK_PATH}`);
        this.namespace = namespace.metadata.name;
        this.registerOutputs({ url: this.url, webhookUrl: this.webhookUrl, namespace: this.namespace });
    }
}

/** The post-renderer of the chart: `node post-render.mjs DATA_RESIDENCY_MODE=strict_eea`. */
export function argoCdPostRenderer(): { command: string; args: string[] } {
    return { command: "node", args: [POST_RENDER_SCRIPT, `${DATA_RESIDENCY_ENV.name}=${DATA_RESIDENCY_ENV.value}`] };
}

function hasKubernetesProvider(opts: pulumi.ComponentResourceOptions | undefined): boolean {
    const providers = opts?.providers;
    if (providers === undefined) {
        return false;
    }
    const list = Array.isArray(providers) ? providers : Object.values(providers);
    return list.some((p) => p instanceof k8s.Provider);
}
