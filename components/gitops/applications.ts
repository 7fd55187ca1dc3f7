import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PlannedComponent } from "../lib/component";

/** The cluster Argo CD runs in, as Argo CD names it. */
export const IN_CLUSTER = "https://kubernetes.default.svc";
/** Argo CD's own namespace: it only reads Applications and AppProjects there. */
export const DEFAULT_ARGOCD_NAMESPACE = "argocd";
export const ARGOPROJ_API_VERSION = "argoproj.io/v1alpha1";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Whether `text` is an RFC 1123 label: what Kubernetes allows as a namespace name. */
export function isDnsLabel(text: string): boolean {
    return text.length <= 63 && DNS_LABEL.test(text);
}

/** Throws unless `value` is an RFC 1123 label, naming where it was given. */
export function checkDnsLabel(where: string, value: string): void {
    if (typeof value !== "string" || !isDnsLabel(value)) {
        throw new Error(`${where} is ${JSON.stringify(value)}; allowed: a DNS label (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)`);
    }
}

/**
 * Throws unless `value` is a path inside the repository: relative, `/`-separated, no empty, `.` or
 * `..` segment (Argo CD resolves it against the checkout; nothing may point outside it).
 */
export function checkRepoPath(where: string, value: string): void {
    const segments = typeof value === "string" ? value.split("/") : [];
    const ok =
        typeof value === "string" &&
        value.length > 0 &&
        !value.includes("\\") &&
        !/[\s\0]/.test(value) &&
        segments.every((s) => s !== "" && s !== "." && s !== "..");
    if (!ok) {
        throw new Error(`${where} is ${JSON.stringify(value)}; allowed: a relative path inside the repository, e.g. apps/backend (no leading '/', no '.' or '..' segment, no empty segment)`);
    }
}

/** Throws unless `url` is an https URL without credentials: the manifests repository. */
export function checkRepoUrl(where: string, url: string): void {
    let parsed: URL | undefined;
    try {
        parsed = new URL(url);
    } catch {
        parsed = undefined;
    }
    if (parsed === undefined || parsed.protocol !== "https:" || parsed.username !== "" || parsed.password !== "" || parsed.search !== "" || parsed.hash !== "") {
        // A URL that may hold credentials is not echoed.
        const shown = parsed !== undefined && (parsed.username !== "" || parsed.password !== "") ? "(a URL with credentials, not shown)" : JSON.stringify(url);
        throw new Error(`${where} is ${shown}; allowed: an https URL without credentials, query or fragment, e.g. https://gitlab.example.com/platform/manifests.git`);
    }
}

/** One environment's project: which namespaces its Applications may deploy to. */
export interface AppProjectSpec {
    /** The manifests repository: the only source the project allows. */
    readonly repoUrl: string;
    /** Namespaces on the in-cluster destination. At least one. */
    readonly namespaces: readonly string[];
    /** Argo CD's namespace. Defaults to DEFAULT_ARGOCD_NAMESPACE. */
    readonly argoCdNamespace?: string;
}

export interface AppProjectManifest {
    readonly apiVersion: typeof ARGOPROJ_API_VERSION;
    readonly kind: "AppProject";
    readonly metadata: { readonly name: string; readonly namespace: string };
    readonly spec: {
        readonly description: string;
        readonly sourceRepos: string[];
        readonly destinations: { readonly server: string; readonly namespace: string }[];
        readonly clusterResourceWhitelist: { readonly group: string; readonly kind: string; readonly name: string }[];
    };
}

/**
 * One AppProject per environment. Pure. Its Applications may only come from the manifests
 * repository and only go to the declared namespaces in this cluster. Of the cluster-scoped kinds
 * only those Namespaces themselves are allowed (so `CreateNamespace=true` works and nothing else
 * cluster-wide can be created); namespaced kinds are not restricted.
 */
export function appProject(env: string, spec: AppProjectSpec): AppProjectManifest {
    checkDnsLabel(`project ${JSON.stringify(env)}: name`, env);
    if (env === "default") {
        throw new Error('project "default": name is "default"; allowed: another name (Argo CD owns its permissive default project)');
    }
    checkRepoUrl(`project ${env}: repoUrl`, spec.repoUrl);
    const argoCdNamespace = spec.argoCdNamespace ?? DEFAULT_ARGOCD_NAMESPACE;
    checkDnsLabel(`project ${env}: argoCdNamespace`, argoCdNamespace);
    const namespaces: string[] = [...(spec.namespaces ?? [])];
    if (namespaces.length === 0) {
        throw new Error(`project ${env}: namespaces is empty; allowed: one or more namespaces`);
    }
    const seen = new Set<string>();
    for (const ns of namespaces) {
        checkDnsLabel(`project ${env}: namespace`, ns);
        if (seen.has(ns)) {
            throw new Error(`project ${env}: namespace ${JSON.stringify(ns)} is listed twice; allowed: each namespace once`);
        }
        seen.add(ns);
    }
    return {
        apiVersion: ARGOPROJ_API_VERSION,
        kind: "AppProject",
        metadata: { name: env, namespace: argoCdNamespace },
        spec: {
            description: `Environment ${env}: ${spec.repoUrl} into ${namespaces.join(", ")}`,
            sourceRepos: [spec.repoUrl],
            destinations: namespaces.map((namespace) => ({ server: IN_CLUSTER, namespace })),
            clusterResourceWhitelist: namespaces.map((name) => ({ group: "", kind: "Namespace", name })),
        },
    };
}

/** One Application: a path of the manifests repository, synced into one namespace. */
export interface ApplicationSpec {
    /** The environment's project; it must list `namespace`. */
    readonly project: string;
    /** The manifests repository (the project's only source). */
    readonly repoUrl: string;
    /** The chart or manifests directory inside the repository, e.g. `apps/backend-service`. */
    readonly path: string;
    /** Destination namespace in this cluster. */
    readonly namespace: string;
    /** Branch, tag or commit. Defaults to "main". */
    readonly targetRevision?: string;
    /** Helm value files relative to `path`, e.g. `values-prod.yaml`. Defaults to none (no `helm` block). */
    readonly valueFiles?: readonly string[];
    /** Helm values given inline (`spec.source.helm.valuesObject`); plain JSON. */
    readonly values?: Readonly<Record<string, unknown>>;
    /** Automated sync with prune and self-heal. Defaults to true. */
    readonly automated?: boolean;
    /** Sync option `CreateNamespace=true`. Defaults to true. */
    readonly createNamespace?: boolean;
    /** Argo CD's namespace. Defaults to DEFAULT_ARGOCD_NAMESPACE. */
    readonly argoCdNamespace?: string;
}

export interface ApplicationManifest {
    readonly apiVersion: typeof ARGOPROJ_API_VERSION;
    readonly kind: "Application";
    readonly metadata: { readonly name: string; readonly namespace: string };
    readonly spec: {
        readonly project: string;
        readonly source: {
            readonly repoURL: string;
            readonly targetRevision: string;
            readonly path: string;
            readonly helm?: { readonly valueFiles?: string[]; readonly valuesObject?: Record<string, unknown> };
        };
        readonly destination: { readonly server: string; readonly namespace: string };
        readonly syncPolicy: {
            readonly automated?: { readonly prune: boolean; readonly selfHeal: boolean };
            readonly syncOptions?: string[];
        };
    };
}

const REVISION = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

/** An Application manifest. Pure; validates its own fields (not that the project exists). */
export function application(name: string, spec: ApplicationSpec): ApplicationManifest {
    checkDnsLabel(`application ${JSON.stringify(name)}: name`, name);
    checkDnsLabel(`application ${name}: project`, spec.project);
    checkRepoUrl(`application ${name}: repoUrl`, spec.repoUrl);
    checkRepoPath(`application ${name}: path`, spec.path);
    checkDnsLabel(`application ${name}: namespace`, spec.namespace);
    const argoCdNamespace = spec.argoCdNamespace ?? DEFAULT_ARGOCD_NAMESPACE;
    checkDnsLabel(`application ${name}: argoCdNamespace`, argoCdNamespace);
    const targetRevision = spec.targetRevision ?? "main";
    if (typeof targetRevision !== "string" || !REVISION.test(targetRevision) || targetRevision.includes("..")) {
        throw new Error(`application ${name}: targetRevision is ${JSON.stringify(targetRevision)}; allowed: a branch, tag or commit (letters, digits, '.', '_', '/', '-'; no '..')`);
    }
    const valueFiles = [...(spec.valueFiles ?? [])];
    const seen = new Set<string>();
    for (const file of valueFiles) {
        checkRepoPath(`application ${name}: valueFiles entry`, file);
        if (seen.has(file)) {
            throw new Error(`application ${name}: valueFiles lists ${JSON.stringify(file)} twice; allowed: each file once`);
        }
        seen.add(file);
    }
    const values = spec.values;
    if (values !== undefined && (values === null || typeof values !== "object" || Array.isArray(values))) {
        throw new Error(`application ${name}: values is ${JSON.stringify(values)}; allowed: an object of Helm values`);
    }
    const automated = spec.automated ?? true;
    const createNamespace = spec.createNamespace ?? true;
    return {
        apiVersion: ARGOPROJ_API_VERSION,
        kind: "Application",
        metadata: { name, namespace: argoCdNamespace },
        spec: {
            project: spec.project,
            source: {
                repoURL: spec.repoUrl,
                targetRevision,
                path: spec.path,
                ...(valueFiles.length > 0 || values !== undefined
                    ? { helm: { ...(valueFiles.length > 0 ? { valueFiles } : {}), ...(values !== undefined ? { valuesObject: { ...values } } : {}) } }
                    : {}),
            },
            destination: { server: IN_CLUSTER, namespace: spec.namespace },
            syncPolicy: {
                ...(automated ? { automated: { prune: true, selfHeal: true } } : {}),
                ...(createNamespace ? { syncOptions: ["CreateNamespace=true"] } : {}),
            },
        },
    };
}

/** One Application as declared: its name and its spec without the shared fields. */
export interface DeclaredApplication extends Omit<ApplicationSpec, "repoUrl" | "argoCdNamespace"> {
    /** The Application's name (a DNS label), e.g. `backend-service-prod`. */
    readonly name: string;
}

/** What the GitOps layer declares: plain data, it decides how many resources exist. */
export interface ApplicationsSpec {
    /** The manifests repository: every project's only source. */
    readonly repoUrl: string;
    /** Argo CD's namespace. Defaults to DEFAULT_ARGOCD_NAMESPACE. */
    readonly argoCdNamespace?: string;
    /** Environments by name (e.g. `staging`, `prod`), each with its namespaces. */
    readonly projects: Readonly<Record<string, { readonly namespaces: readonly string[] }>>;
    readonly applications: readonly DeclaredApplication[];
}

export interface GitOpsPlan {
    /** Projects by environment name, in name order. */
    readonly projects: readonly AppProjectManifest[];
    /** Applications in name order. */
    readonly applications: readonly ApplicationManifest[];
}

/**
 * Builds every AppProject and Application. Pure. Refuses a duplicate application name, an
 * application whose project is not declared, and a namespace its project does not list.
 */
export function planGitOps(spec: ApplicationsSpec): GitOpsPlan {
    const argoCdNamespace = spec.argoCdNamespace ?? DEFAULT_ARGOCD_NAMESPACE;
    const envs = Object.keys(spec.projects).sort();
    const projects = envs.map((env) => appProject(env, { repoUrl: spec.repoUrl, namespaces: spec.projects[env].namespaces, argoCdNamespace }));
    const byEnv = new Map(projects.map((p) => [p.metadata.name, p]));
    const names = new Set<string>();
    const applications: ApplicationManifest[] = [];
    for (const declared of spec.applications) {
        const { name, ...rest } = declared;
        const app = application(name, { ...rest, repoUrl: spec.repoUrl, argoCdNamespace });
        if (names.has(name)) {
            throw new Error(`application ${name}: name is declared twice; allowed: each application name once`);
        }
        names.add(name);
        const project = byEnv.get(app.spec.project);
        if (project === undefined) {
            throw new Error(`application ${name}: project is ${JSON.stringify(app.spec.project)}; allowed: a declared project (${envs.join(", ") || "none declared"})`);
        }
        const allowed = project.spec.destinations.map((d) => d.namespace);
        if (!allowed.includes(app.spec.destination.namespace)) {
            throw new Error(
                `application ${name}: namespace is ${JSON.stringify(app.spec.destination.namespace)}; allowed: a namespace of project ${project.metadata.name} (${allowed.join(", ")})`,
            );
        }
        applications.push(app);
    }
    applications.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
    return { projects, applications };
}

export interface ApplicationsArgs extends ApplicationsSpec {
    /** The Argo CD chart (`ArgoCd.chart`): it installs the CRDs, so every resource here waits for it. */
    readonly chart: pulumi.Resource;
    /** Anything else to wait for (e.g. the repository Secret). Defaults to none. */
    readonly dependsOn?: pulumi.Input<pulumi.Resource>[];
}

/**
 * The GitOps layer's AppProjects and Applications as custom resources on the cluster given in
 * `opts.providers`. Every resource depends on the Argo CD chart (the CRDs exist first); each
 * Application also on its AppProject.
 */
export class Applications extends PlannedComponent<GitOpsPlan> {
    /** AppProjects by environment name. */
    public readonly projects: Readonly<Record<string, k8s.apiextensions.CustomResource>>;
    /** Applications by name. */
    public readonly applications: Readonly<Record<string, k8s.apiextensions.CustomResource>>;

    constructor(name: string, args: ApplicationsArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        super("zerotouch:gitops:Applications", name, planGitOps(args), opts);
        const plan = this.plan;
        const first: pulumi.Input<pulumi.Resource>[] = [args.chart, ...(args.dependsOn ?? [])];

        const projects: Record<string, k8s.apiextensions.CustomResource> = {};
        for (const p of plan.projects) {
            projects[p.metadata.name] = new k8s.apiextensions.CustomResource(`${name}-project-${p.metadata.name}`, p, {
                parent: this,
                dependsOn: first,
            });
        }
        const applications: Record<string, k8s.apiextensions.CustomResource> = {};
        for (const a of plan.applications) {
            applications[a.metadata.name] = new k8s.apiextensions.CustomResource(`${name}-app-${a.metadata.name}`, a, {
                parent: this,
                dependsOn: [...first, projects[a.spec.project]],
            });
        }
        this.projects = projects;
        this.applications = applications;
        this.registerOutputs({
            projects: Object.keys(projects),
            applications: Object.keys(applications),
        });
    }
}
