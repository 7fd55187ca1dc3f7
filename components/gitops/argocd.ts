import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

import { parseCidr } from "../lib/cidr";
import { JsonObject } from "../lib/json";
import { RECONCILIATION_SECONDS } from "../lib/ranges";
import { checkDnsLabel, checkRepoUrl, DEFAULT_ARGOCD_NAMESPACE } from "./applications";
import { ARGOCD_CHART } from "./argocdChart";
import { ArgoCdValuesOverride } from "./argocdGuard";
import {
    ARGOCD_RELEASE,
    ARGOCD_SERVER_HTTP_PORT,
    ARGOCD_SERVER_SERVICE,
    argoCdPostRenderer,
    ArgoCdSso,
    argoCdValues,
    ArgoCdValuesSpec,
    REDIS_SECRET,
    SSO_SECRET_KEYS,
    WEBHOOK_PATH,
} from "./argocdValues";
import { DNS_LABEL } from "../lib/names";
import { PlannedComponent } from "../lib/component";

// The component; the chart pin, its values and the override guard live in their own modules and
// are exported from here too, as one entry point for the program and the tests.
export * from "./argocdChart";
export * from "./argocdGuard";
export * from "./argocdValues";
export type { JsonObject, JsonValue } from "../lib/json";

/** A hostname: lowercase DNS labels, at least two, no trailing dot. */
function checkHostname(key: string, value: string): void {
    const labels = typeof value === "string" ? value.split(".") : [];
    const ok = typeof value === "string" && value.length <= 253 && labels.length >= 2 && labels.every((l) => DNS_LABEL.test(l));
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
export class ArgoCd extends PlannedComponent<ArgoCdPlan> {
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

    constructor(name: string, args: ArgoCdArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        const plan = planArgoCd(args);
        if (!hasKubernetesProvider(opts)) {
            throw new Error("ArgoCd: opts.providers has no kubernetes provider; allowed: the cluster's provider, e.g. { providers: [controlPlane.provider] }");
        }
        super("zerotouch:gitops:ArgoCd", name, plan, opts);
        const ns = plan.namespace;

        // Labelled, so server-side apply owns a field of it: an object that sets nothing but its
        // name leaves its applier owning nothing, and every apply then writes it again.
        const namespace = new k8s.core.v1.Namespace(
            `${name}-namespace`,
            { metadata: { name: ns, labels: { "app.kubernetes.io/part-of": "argocd", "app.kubernetes.io/managed-by": "zerotouch" } } },
            { parent: this },
        );

        this.redisSecret = this.redis(name, ns, namespace);

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

        this.expose(name, args, plan, namespace);

        this.url = pulumi.output(`https://${args.hostname}`);
        this.webhookUrl = pulumi.output(`https://${args.webhookHostname}${WEBHOOK_PATH}`);
        this.namespace = namespace.metadata.name;
        this.registerOutputs({ url: this.url, webhookUrl: this.webhookUrl, namespace: this.namespace });
    }

    /**
     * Redis' password, which server, repo-server, controller and Redis itself read from
     * REDIS_SECRET: made here, before the chart (its own hook Job would never run).
     */
    private redis(name: string, ns: string, namespace: k8s.core.v1.Namespace): k8s.core.v1.Secret {
        const redisPassword = new random.RandomPassword(`${name}-redis-password`, { length: 40, special: false }, { parent: this });
        return new k8s.core.v1.Secret(
            `${name}-redis`,
            {
                metadata: { name: REDIS_SECRET.name, namespace: ns, labels: { "app.kubernetes.io/part-of": "argocd" } },
                type: "Opaque",
                stringData: { [REDIS_SECRET.key]: redisPassword.result },
            },
            { parent: this, dependsOn: [namespace] },
        );
    }

    /**
     * Traefik's Middlewares and the two Ingresses: the UI/API for the VPN (an allowlist), the
     * webhook path for everyone (a rate limit). Each route: its Middleware, then its Ingress.
     */
    private expose(name: string, args: ArgoCdArgs, plan: ArgoCdPlan, namespace: k8s.core.v1.Namespace): void {
        const ns = plan.namespace;
        const routes = [
            {
                ingress: { resource: "ui", name: "argocd-ui", host: args.hostname, tlsSecret: args.tlsSecretNames?.ui, path: "/", pathType: "Prefix" },
                // No ipStrategy: the connection's source address counts, not a header a client can set.
                middleware: { resource: "ui-allowlist", name: UI_ALLOWLIST_MIDDLEWARE, spec: { ipAllowList: { sourceRange: [plan.vpnCidr] } } },
            },
            {
                ingress: { resource: "webhook", name: "argocd-webhook", host: args.webhookHostname, tlsSecret: args.tlsSecretNames?.webhook, path: WEBHOOK_PATH, pathType: "Exact" },
                middleware: { resource: "webhook-ratelimit", name: WEBHOOK_RATELIMIT_MIDDLEWARE, spec: { rateLimit: { average: 10, period: "1s", burst: 20 } } },
            },
        ];
        const middlewares = routes.map(
            ({ middleware: m }) =>
                new k8s.apiextensions.CustomResource(
                    `${name}-${m.resource}`,
                    { apiVersion: "traefik.io/v1alpha1", kind: "Middleware", metadata: { name: m.name, namespace: ns }, spec: m.spec },
                    { parent: this, dependsOn: [namespace] },
                ),
        );
        const backend = { service: { name: ARGOCD_SERVER_SERVICE, port: { number: ARGOCD_SERVER_HTTP_PORT } } };
        routes.forEach(({ ingress: r, middleware }, i) => {
            new k8s.networking.v1.Ingress(
                `${name}-${r.resource}`,
                {
                    metadata: { name: r.name, namespace: ns, annotations: traefikAnnotations(ns, [middleware.name]) },
                    spec: {
                        ingressClassName: plan.ingressClassName,
                        tls: [{ hosts: [r.host], ...(r.tlsSecret !== undefined ? { secretName: r.tlsSecret } : {}) }],
                        rules: [{ host: r.host, http: { paths: [{ path: r.path, pathType: r.pathType, backend }] } }],
                    },
                },
                { parent: this, dependsOn: [middlewares[i], this.chart] },
            );
        });
    }
}

function hasKubernetesProvider(opts: pulumi.ComponentResourceOptions | undefined): boolean {
    const providers = opts?.providers;
    if (providers === undefined) {
        return false;
    }
    const list = Array.isArray(providers) ? providers : Object.values(providers);
    return list.some((p) => p instanceof k8s.Provider);
}
