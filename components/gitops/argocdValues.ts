/**
 * Argo CD's chart values, computed from plain data (no secret): the pinned chart, the images, sizing
 * by cluster size, single sign-on, RBAC, and the post-renderer. Pure.
 */
import * as path from "path";
import { stringify as stringifyYaml } from "yaml";

import { deepMerge, get, JsonObject } from "../lib/json";
import { isReconciliationSeconds, RECONCILIATION_SECONDS } from "../lib/ranges";
import { ARGOCD_CHART } from "./argocdChart";
import { ArgoCdValuesOverride, checkArgoCdOverride, formatPath } from "./argocdGuard";


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
    checkResourcesKept(merged);
    return merged;
}

/** Throws when an override left a component without a CPU or memory request or limit. */
function checkResourcesKept(merged: JsonObject): void {
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

/** The post-renderer of the chart: `node post-render.mjs DATA_RESIDENCY_MODE=strict_eea`. */
export function argoCdPostRenderer(): { command: string; args: string[] } {
    return { command: "node", args: [POST_RENDER_SCRIPT, `${DATA_RESIDENCY_ENV.name}=${DATA_RESIDENCY_ENV.value}`] };
}
