import * as pulumi from "@pulumi/pulumi";

import {
    BranchProtection,
    getGroupOutput,
    getProjectOutput,
    Project,
    ProjectAccessToken,
    ProjectDeployToken,
    ProjectHook,
    ProjectVariable,
    Provider,
} from "./gitlab/provider";

/**
 * GitLab's side of GitOps: the manifests repository Argo CD syncs from, a read-only deploy token
 * for Argo CD, a push token handed to the application projects' pipelines as `GITOPS_TOKEN`, and
 * a push webhook that tells Argo CD to refresh at once instead of polling.
 */

/** GitLab's upper limit on an access token's lifetime, days. */
export const MAX_ACCESS_TOKEN_DAYS = 365;
/** The CI/CD variable the application pipelines read the push token from. */
export const GITOPS_TOKEN_VARIABLE = "GITOPS_TOKEN";
/** Scopes of Argo CD's deploy token: clone and fetch, nothing else. */
export const DEPLOY_TOKEN_SCOPES = ["read_repository"] as const;
/** Scopes of the push token: `write_repository` is clone and push over HTTPS, and no API. */
export const ACCESS_TOKEN_SCOPES = ["write_repository"] as const;
/**
 * Role of the push token's bot user on the manifests project. The default branch is protected
 * with "maintainers may push", and application pipelines push there directly, so the token must
 * be a maintainer; a developer's push to the protected branch is refused.
 */
export const ACCESS_TOKEN_LEVEL = "maintainer" as const;

/** The manifests project: created here, or an existing one adopted by path. */
export interface ManifestsProjectSpec {
    /** Full path, `group/name` or `group/sub/name`. */
    readonly path: string;
    /**
     * `create`: a private project is created under the path's group. `adopt`: an existing project
     * is read by path (`getProject`) and never managed itself: destroying the stack leaves it,
     * and its content, as it is.
     */
    readonly mode: "create" | "adopt";
    /**
     * create only: the ID of the group the project is created in. Defaults to the ID of the group
     * named by the path (looked up with `getGroup`).
     */
    readonly namespaceId?: number;
    /**
     * The branch Argo CD syncs and pipelines push to; it gets protected. Defaults to `main` when
     * creating, and to the project's own default branch when adopting.
     */
    readonly defaultBranch?: string;
}

export interface GitLabWiringArgs {
    /** The GitLab provider (base URL and secret token), made by the caller; every child uses it. */
    readonly provider: Provider;
    readonly manifestsProject: ManifestsProjectSpec;
    /**
     * Full paths of the projects whose pipelines push to the manifests repository: each gets the
     * `GITOPS_TOKEN` variable. Plain: the list decides which variables exist; each is named by
     * its path, so adding or removing one leaves the others alone.
     */
    readonly appProjects: readonly string[];
    /** Argo CD's webhook endpoint, `https://…/api/webhook`. */
    readonly webhookUrl: pulumi.Input<string>;
    /** Secret shared with Argo CD (its `webhook.gitlab.secret`); sent as `X-Gitlab-Token`. */
    readonly webhookSecret: pulumi.Input<string>;
    /** Lifetime of each push token, days, at most 365 (GitLab's limit). Defaults to 180. */
    readonly accessTokenExpiryDays?: number;
    /**
     * The push token is replaced by the first `pulumi up` this many days before it expires, and
     * `GITOPS_TOKEN` follows in the same run. Defaults to 30.
     */
    readonly rotateBeforeDays?: number;
}

/** The validated args, with their defaults applied once. */
export interface GitLabWiringPlan {
    readonly mode: "create" | "adopt";
    /** The manifests project's full path. */
    readonly path: string;
    /** create: the group's full path and the project's own path segment. */
    readonly namespacePath: string;
    readonly projectPath: string;
    readonly namespaceId: number | undefined;
    /** Undefined when adopting without one: the project's own default branch is used. */
    readonly defaultBranch: string | undefined;
    readonly appProjects: readonly string[];
    readonly accessTokenExpiryDays: number;
    readonly rotateBeforeDays: number;
}

/** One path segment: letters, digits, `_`, `-`, `.`; starting and ending with a letter, digit or `_`. */
const PATH_SEGMENT = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
/** A branch name git and GitLab accept, kept simple. */
const BRANCH = /^[A-Za-z0-9_](?:[A-Za-z0-9_./-]*[A-Za-z0-9_])?$/;

function projectPathProblem(path: unknown): string | undefined {
    if (typeof path !== "string") {
        return "it is not a string";
    }
    const segments = path.split("/");
    if (segments.length < 2) {
        return "it has no group";
    }
    const bad = segments.find((s) => !PATH_SEGMENT.test(s) || /\.(git|atom)$/.test(s));
    return bad === undefined ? undefined : `segment ${JSON.stringify(bad)} is not allowed`;
}

const PATH_ALLOWED = "a full project path, group[/subgroup…]/name, each segment letters, digits, '_', '-', '.', starting and ending with a letter, digit or '_', not ending in .git or .atom";

function wholeDays(name: string, key: string, value: unknown, min: number, max: number): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
        throw new Error(`GitLab wiring ${name}: ${key} is ${JSON.stringify(value)}; allowed: a whole number of days from ${min} to ${max}`);
    }
    return value;
}

/**
 * Validates the args and applies the defaults. Throws naming the key, what was given and what is
 * allowed; never prints the webhook secret. Pure.
 */
export function planGitLabWiring(name: string, args: GitLabWiringArgs): GitLabWiringPlan {
    const spec = args.manifestsProject;
    const fail = (message: string): never => {
        throw new Error(`GitLab wiring ${name}: ${message}`);
    };
    const pathProblem = projectPathProblem(spec.path);
    if (pathProblem !== undefined) {
        fail(`manifestsProject.path is ${JSON.stringify(spec.path)} (${pathProblem}); allowed: ${PATH_ALLOWED}`);
    }
    const mode = spec.mode;
    if (mode !== "create" && mode !== "adopt") {
        fail(`manifestsProject.mode is ${JSON.stringify(mode)}; allowed: "create" or "adopt"`);
    }
    if (spec.namespaceId !== undefined) {
        if (mode === "adopt") {
            fail(`manifestsProject.namespaceId is ${JSON.stringify(spec.namespaceId)} with mode "adopt"; allowed: only with mode "create"`);
        }
        if (!Number.isInteger(spec.namespaceId) || spec.namespaceId < 1) {
            fail(`manifestsProject.namespaceId is ${JSON.stringify(spec.namespaceId)}; allowed: a group ID, a whole number from 1`);
        }
    }
    if (spec.defaultBranch !== undefined && (!BRANCH.test(spec.defaultBranch) || spec.defaultBranch.includes(".."))) {
        fail(
            `manifestsProject.defaultBranch is ${JSON.stringify(spec.defaultBranch)}; allowed: a branch name of letters, digits, '_', '-', '.', '/', starting and ending with a letter, digit or '_'`,
        );
    }
    const seen = new Map<string, number>();
    for (const [i, app] of args.appProjects.entries()) {
        const problem = projectPathProblem(app);
        if (problem !== undefined) {
            fail(`appProjects[${i}] is ${JSON.stringify(app)} (${problem}); allowed: ${PATH_ALLOWED}`);
        }
        // GitLab finds projects by path regardless of case.
        const key = app.toLowerCase();
        if (key === spec.path.toLowerCase()) {
            fail(`appProjects[${i}] is ${JSON.stringify(app)}, the manifests project itself; allowed: application projects other than manifestsProject.path`);
        }
        const first = seen.get(key);
        if (first !== undefined) {
            fail(`appProjects[${i}] is ${JSON.stringify(app)}, already given as appProjects[${first}]; allowed: each project once`);
        }
        seen.set(key, i);
    }
    const accessTokenExpiryDays = wholeDays(name, "accessTokenExpiryDays", args.accessTokenExpiryDays ?? 180, 2, MAX_ACCESS_TOKEN_DAYS);
    const rotateBeforeDays = wholeDays(name, "rotateBeforeDays", args.rotateBeforeDays ?? 30, 1, accessTokenExpiryDays - 1);
    if (typeof args.webhookUrl === "string") {
        let url: URL | undefined;
        try {
            url = new URL(args.webhookUrl);
        } catch {
            url = undefined;
        }
        if (url === undefined || url.protocol !== "https:" || url.username !== "" || url.password !== "") {
            fail(`webhookUrl is ${JSON.stringify(args.webhookUrl)}; allowed: an https:// URL without credentials (Argo CD's /api/webhook)`);
        }
    }
    if (typeof args.webhookSecret === "string" && args.webhookSecret.length < 16) {
        fail(`webhookSecret is ${args.webhookSecret.length} characters long; allowed: at least 16 characters`);
    }
    const segments = spec.path.split("/");
    return {
        mode,
        path: spec.path,
        namespacePath: segments.slice(0, -1).join("/"),
        projectPath: segments[segments.length - 1],
        namespaceId: spec.namespaceId,
        defaultBranch: mode === "create" ? (spec.defaultBranch ?? "main") : spec.defaultBranch,
        appProjects: [...args.appProjects],
        accessTokenExpiryDays,
        rotateBeforeDays,
    };
}

/**
 * GitLab wired for GitOps. Children (every one through `args.provider`):
 * - `${name}-manifests` (create mode only): the private manifests project; archived, not
 *   deleted, on destroy. In adopt mode the project is only read (`getProject`);
 * - `${name}-manifests-branch`: its default branch protected (push and merge: maintainers, no
 *   force push); kept on destroy, so the repository's history stays protected;
 * - `${name}-argocd-deploy-token`: Argo CD's deploy token, `read_repository` only;
 * - `${name}-push-token`: a project access token (maintainer, `write_repository`) rotated by the
 *   provider's rotation configuration, so its expiry is fixed when it is created and does not
 *   move on every run;
 * - `${name}-gitops-token-<app path>`: per application project, `GITOPS_TOKEN` = the push token,
 *   masked, protected (only pipelines on protected branches and tags get it), secret;
 * - `${name}-argocd-webhook`: a push-events-only webhook to Argo CD with TLS verification, its
 *   secret token secret.
 *
 * The provider's token needs the Maintainer role (or Owner) on the manifests project and on every
 * application project, and, to create the project, the right to create projects in the group.
 */
export class GitLabWiring extends pulumi.ComponentResource {
    /** HTTPS clone URL of the manifests repository (what Argo CD's repository entry points at). */
    public readonly manifestsRepoUrl: pulumi.Output<string>;
    /** Numeric ID of the manifests project. */
    public readonly manifestsProjectId: pulumi.Output<string>;
    /** The manifests branch Argo CD tracks. */
    public readonly manifestsBranch: pulumi.Output<string>;
    /** Argo CD's deploy token user name. */
    public readonly deployTokenUsername: pulumi.Output<string>;
    /** Argo CD's deploy token; secret. */
    public readonly deployToken: pulumi.Output<string>;
    /** Expiry of the current push token, YYYY-MM-DD. */
    public readonly accessTokenExpiresAt: pulumi.Output<string>;
    /** GitLab's ID of the webhook. */
    public readonly hookId: pulumi.Output<number>;

    constructor(name: string, args: GitLabWiringArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        const plan = planGitLabWiring(name, args);
        super("zerotouch:gitops:GitLabWiring", name, {}, opts);
        const child = { parent: this, provider: args.provider };

        const { projectId, repoUrl, branch } = this.manifestsProject(name, plan, child);

        new BranchProtection(
            `${name}-manifests-branch`,
            { project: projectId, branch, pushAccessLevel: "maintainer", mergeAccessLevel: "maintainer", allowForcePush: false },
            { ...child, retainOnDelete: true },
        );

        const deployToken = new ProjectDeployToken(
            `${name}-argocd-deploy-token`,
            { project: projectId, name: "argocd", scopes: [...DEPLOY_TOKEN_SCOPES] },
            child,
        );

        const accessToken = new ProjectAccessToken(
            `${name}-push-token`,
            {
                project: projectId,
                name: "gitops-push",
                description: `${GITOPS_TOKEN_VARIABLE} of the application pipelines: pushes manifests to ${plan.path}.`,
                scopes: [...ACCESS_TOKEN_SCOPES],
                accessLevel: ACCESS_TOKEN_LEVEL,
                rotationConfiguration: { expirationDays: plan.accessTokenExpiryDays, rotateBeforeDays: plan.rotateBeforeDays },
            },
            child,
        );
        const pushToken = pulumi.secret(accessToken.token);

        for (const app of plan.appProjects) {
            new ProjectVariable(
                `${name}-gitops-token-${app}`,
                {
                    project: app,
                    key: GITOPS_TOKEN_VARIABLE,
                    value: pushToken,
                    masked: true,
                    protected: true,
                    raw: true,
                    description: `Pushes to ${plan.path}; rotated by the infrastructure stack.`,
                },
                { ...child, additionalSecretOutputs: ["value"] },
            );
        }

        const hook = this.webhook(name, projectId, args, child);

        this.manifestsRepoUrl = repoUrl;
        this.manifestsProjectId = projectId;
        this.manifestsBranch = pulumi.output(branch);
        this.deployTokenUsername = deployToken.username;
        this.deployToken = pulumi.secret(deployToken.token);
        this.accessTokenExpiresAt = accessToken.expiresAt;
        this.hookId = hook.hookId;

        this.registerOutputs({
            manifestsRepoUrl: this.manifestsRepoUrl,
            manifestsProjectId: this.manifestsProjectId,
            manifestsBranch: this.manifestsBranch,
            deployTokenUsername: this.deployTokenUsername,
            deployToken: this.deployToken,
            accessTokenExpiresAt: this.accessTokenExpiresAt,
            hookId: this.hookId,
        });
    }

    /** The manifests project: created in its group (`create`), or the existing one looked up (`existing`). */
    private manifestsProject(
        name: string,
        plan: GitLabWiringPlan,
        child: pulumi.CustomResourceOptions,
    ): { projectId: pulumi.Output<string>; repoUrl: pulumi.Output<string>; branch: pulumi.Input<string> } {
        if (plan.mode === "create") {
            const namespaceId = plan.namespaceId ?? getGroupOutput({ fullPath: plan.namespacePath }, child).groupId;
            const project = new Project(
                `${name}-manifests`,
                {
                    name: plan.projectPath,
                    path: plan.projectPath,
                    namespaceId,
                    description: "Kubernetes manifests synced by Argo CD; written by the application pipelines.",
                    visibilityLevel: "private",
                    defaultBranch: plan.defaultBranch,
                    initializeWithReadme: true,
                    archiveOnDestroy: true,
                },
                child,
            );
            return { projectId: project.id, repoUrl: project.httpUrlToRepo, branch: plan.defaultBranch! };
        }
        const found = getProjectOutput({ pathWithNamespace: plan.path }, child);
        return { projectId: found.id, repoUrl: found.httpUrlToRepo, branch: plan.defaultBranch ?? found.defaultBranch };
    }

    /** The push webhook to Argo CD's /api/webhook, sending the shared secret as `X-Gitlab-Token`. */
    private webhook(name: string, projectId: pulumi.Input<string>, args: GitLabWiringArgs, child: pulumi.CustomResourceOptions): ProjectHook {
        return new ProjectHook(
            `${name}-argocd-webhook`,
            {
                project: projectId,
                url: args.webhookUrl,
                token: pulumi.secret(args.webhookSecret),
                enableSslVerification: true,
                pushEvents: true,
                tagPushEvents: false,
                mergeRequestsEvents: false,
                issuesEvents: false,
                confidentialIssuesEvents: false,
                noteEvents: false,
                confidentialNoteEvents: false,
                jobEvents: false,
                pipelineEvents: false,
                wikiPageEvents: false,
                deploymentEvents: false,
                releasesEvents: false,
            },
            child,
        );
    }
}
