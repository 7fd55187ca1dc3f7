/**
 * The GitOps loop's parts for the loop tests and `npm run bench:gitops`, and what they do to the
 * manifests repository as GitLab and the app pipeline would: the app pipeline's own script making a
 * bump (stacks/templates/update-manifests.sh), a plain commit of files, and GitLab's push event as
 * its webhook sends it.
 */
import { spawnSync } from "child_process";
import { randomBytes } from "crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";

import { TestCluster } from "../k8s/cluster";
import { applyGitops, GitopsObjects, gitopsObjects, K8sObject, KubectlBase } from "../k8s/gitopsApply";
import { waitFor } from "../support/processes";
import { prodStack } from "../support/program";
import { appManifests } from "./appManifests";
import { ArgoCd } from "./argocd";
import { GitServer, GitUser } from "./gitServer";

const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** git's environment for the lab's Git server: its CA, no prompt, nothing of the user's config. */
function gitEnv(caFile: string): NodeJS.ProcessEnv {
    return { ...process.env, GIT_SSL_CAINFO: caFile, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", HOME: tmpdir() };
}

/**
 * Runs the app pipeline's update-manifests.sh as a GitLab job would: `image.tag` in
 * deployments/prod/values-prod.yaml set to `tag`, pushed with `token` as GITOPS_TOKEN. Throws with
 * its output when it fails.
 */
export function runUpdateManifests(o: { url: string; token: string; caFile: string; tag: string; timeoutSec?: number }): { seconds: number; output: string } {
    const started = Date.now();
    const r = spawnSync("bash", [path.join(REPO_ROOT, "stacks", "templates", "update-manifests.sh")], {
        encoding: "utf8",
        timeout: (o.timeoutSec ?? 120) * 1000,
        env: {
            ...gitEnv(o.caFile),
            MANIFESTS_URL: o.url,
            MANIFEST_FILE: "deployments/prod/values-prod.yaml",
            IMAGE_KEY: "image.tag",
            IMAGE_TAG: o.tag,
            GITOPS_TOKEN: o.token,
            CI_PROJECT_PATH: "shop/backend-service",
            CI_PROJECT_NAME: "backend-service",
            CI_COMMIT_SHA: `${o.tag.replace(/\W/g, "")}${"0".repeat(40)}`.slice(0, 40),
            CI_SERVER_HOST: "gitlab.lab.zerotouch.test",
        },
    });
    const output = `${r.stdout ?? ""}${r.stderr ?? ""}`;
    if (r.status !== 0) {
        throw new Error(`update-manifests.sh (tag ${o.tag}): exit ${String(r.status)}\n${output}`);
    }
    return { seconds: (Date.now() - started) / 1000, output };
}

/**
 * Commits `files` (the whole tree: others are removed) to main and pushes it as `writer`. The
 * password reaches git as update-manifests.sh hands it over: from the environment through a
 * credential helper, never in a URL or on a command line.
 */
export function pushFiles(o: { url: string; writer: { username: string; password: string }; caFile: string; files: Record<string, string>; message: string }): void {
    const dir = mkdtempSync(path.join(tmpdir(), "zt-push-"));
    const env: NodeJS.ProcessEnv = {
        ...gitEnv(o.caFile),
        ZT_GIT_USER: o.writer.username,
        ZT_GIT_PASSWORD: o.writer.password,
        GIT_CONFIG_COUNT: "2",
        GIT_CONFIG_KEY_0: "credential.helper",
        GIT_CONFIG_VALUE_0: "",
        GIT_CONFIG_KEY_1: "credential.helper",
        GIT_CONFIG_VALUE_1: '!f() { test "$1" = get || return 0; printf "username=%s\\npassword=%s\\n" "$ZT_GIT_USER" "$ZT_GIT_PASSWORD"; }; f',
    };
    const git = (args: string[], cwd = dir): void => {
        const r = spawnSync("git", args, { cwd, env, encoding: "utf8", timeout: 60_000 });
        if (r.status !== 0) {
            throw new Error(`git ${args[0]}: exit ${String(r.status)}\n${(r.stderr ?? "").split(o.writer.password).join("***")}`);
        }
    };
    try {
        git(["clone", "--quiet", "--branch", "main", o.url, "repo"]);
        const repo = path.join(dir, "repo");
        git(["rm", "-r", "--quiet", "."], repo);
        for (const [file, text] of Object.entries(o.files)) {
            mkdirSync(path.dirname(path.join(repo, file)), { recursive: true });
            writeFileSync(path.join(repo, file), text);
        }
        git(["add", "-A"], repo);
        git(["-c", "user.name=Platform team", "-c", "user.email=platform@lab.zerotouch.test", "commit", "--quiet", "-m", o.message], repo);
        git(["push", "--quiet", "origin", "main"], repo);
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

/**
 * GitLab's push event (https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events)
 * for one commit on `branch`, for the project whose clone URL is `repoUrl`.
 */
export function gitlabPushEvent(o: { repoUrl: string; before: string; after: string; branch: string; modified: string[] }): Record<string, unknown> {
    const url = new URL(o.repoUrl);
    const pathWithNamespace = url.pathname.replace(/^\//, "").replace(/\.git$/, "");
    const webUrl = `${url.protocol}//${url.host}/${pathWithNamespace}`;
    const name = pathWithNamespace.split("/").pop()!;
    const project = {
        id: 42,
        name,
        description: "",
        web_url: webUrl,
        avatar_url: null,
        git_ssh_url: `git@${url.hostname}:${pathWithNamespace}.git`,
        git_http_url: o.repoUrl,
        namespace: pathWithNamespace.split("/").slice(0, -1).join("/"),
        visibility_level: 0,
        path_with_namespace: pathWithNamespace,
        default_branch: "main",
        homepage: webUrl,
        url: `git@${url.hostname}:${pathWithNamespace}.git`,
        ssh_url: `git@${url.hostname}:${pathWithNamespace}.git`,
        http_url: o.repoUrl,
    };
    return {
        object_kind: "push",
        event_name: "push",
        before: o.before,
        after: o.after,
        ref: `refs/heads/${o.branch}`,
        ref_protected: true,
        checkout_sha: o.after,
        user_id: 7,
        user_name: "GitOps bump",
        user_username: "gitops-bump",
        user_email: "",
        user_avatar: "",
        project_id: project.id,
        project,
        commits: [
            {
                id: o.after,
                message: "bump",
                title: "bump",
                timestamp: new Date().toISOString(),
                url: `${webUrl}/-/commit/${o.after}`,
                author: { name: "GitOps bump", email: "gitops-bump@lab.zerotouch.test" },
                added: [],
                modified: o.modified,
                removed: [],
            },
        ],
        total_commits_count: 1,
        push_options: {},
        repository: { name, url: project.url, description: "", homepage: webUrl, git_http_url: o.repoUrl, git_ssh_url: project.git_ssh_url, visibility_level: 0 },
    };
}

/** Seconds since `started` (a Date.now() value). */
export const secondsSince = (started: number): number => (Date.now() - started) / 1000;

export const LOOP = {
    namespace: "argocd",
    app: "backend-service-prod",
    appNamespace: "backend",
    repo: "platform/manifests.git",
    valuesFile: "deployments/prod/values-prod.yaml",
    image: "registry.example.eu/backend/backend-service",
} as const;

/** Which Application of the loop is watched, and where its repository and objects are. */
export type LoopApp = { readonly [K in keyof typeof LOOP]: string };

/**
 * What a loop test does and sees, wherever the loop runs (a loopback API server, or the lab
 * nodes' API servers with Argo CD in the lab's VPN namespace): the repository's head, the
 * Application and the app's objects in the cluster, GitLab's push webhook, the app pipeline's bump.
 */
export class LoopDriver<C extends KubectlBase = KubectlBase> {
    argocd!: ArgoCd;
    repoUrl = "";
    webhookSecret = "";

    constructor(
        readonly cluster: C,
        readonly git: GitServer,
        /** The app pipeline's GITOPS_TOKEN (user `oauth2`): it may push. */
        readonly writer: GitUser,
        readonly app: LoopApp = LOOP,
    ) {}

    head(): string {
        return this.git.headOf(this.app.repo);
    }

    application(name: string = this.app.app): K8sObject {
        return JSON.parse(this.cluster.must(["-n", this.app.namespace, "get", "application", name, "-o", "json"])) as K8sObject;
    }

    /** An object of the app's namespace, or undefined when it does not exist. */
    object(kind: string, name: string): K8sObject | undefined {
        const r = this.cluster.kubectl(["-n", this.app.appNamespace, "get", kind, name, "-o", "json"]);
        return r.code === 0 ? (JSON.parse(r.stdout) as K8sObject) : undefined;
    }

    /** The image the app's Deployment runs. */
    image(): string | undefined {
        return this.object("deployment", "backend-service")?.spec.template.spec.containers[0].image as string | undefined;
    }

    /** Whether the Application is Synced at `revision`, with no operation running. */
    synced(revision: string, name: string = this.app.app): boolean {
        const s = this.application(name).status as { sync?: { status?: string; revision?: string }; operationState?: { phase?: string } } | undefined;
        return s?.sync?.status === "Synced" && s.sync.revision === revision && s.operationState?.phase !== "Running";
    }

    /** Waits, bounded, until `ready()`; fails with the Application's status and Argo CD's logs. */
    waitUntil(what: string, ready: () => boolean, timeoutSec = 120): Promise<void> {
        return waitFor(what, ready, timeoutSec, () => undefined, () => `${JSON.stringify(this.application().status ?? {}, null, 1).slice(0, 3000)}\n${this.argocd.logs()}`);
    }

    /** Posts GitLab's push event for before..after to Argo CD's /api/webhook; returns the HTTP status. */
    async webhook(before: string, after: string, modified: string[], token = this.webhookSecret): Promise<number> {
        const r = await fetch(`${this.argocd.serverUrl}/api/webhook`, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token },
            body: JSON.stringify(gitlabPushEvent({ repoUrl: this.repoUrl, before, after, branch: "main", modified })),
            signal: AbortSignal.timeout(10_000),
        });
        return r.status;
    }

    /** The webhook secret the program put in argocd-secret (`webhook.gitlab.secret`). */
    readWebhookSecret(): string {
        const secret = this.cluster.must(["-n", this.app.namespace, "get", "secret", "argocd-secret", "-o", "jsonpath={.data.webhook\\.gitlab\\.secret}"]).trim();
        return Buffer.from(secret, "base64").toString("utf8");
    }

    /**
     * The app pipeline's bump to `tag` (update-manifests.sh), then, with `webhook`, GitLab's push
     * event; resolves with the seconds from the push to the Application Synced at the new commit
     * with the new image in the cluster.
     */
    async bump(tag: string, webhook: boolean, timeoutSec = 300): Promise<number> {
        const before = this.head();
        runUpdateManifests({ url: this.repoUrl, token: this.writer.password, caFile: this.git.caFile, tag });
        const pushed = Date.now();
        const after = this.head();
        if (after === before) {
            throw new Error(`the bump to ${tag} made no commit`);
        }
        if (webhook) {
            const status = await this.webhook(before, after, [this.app.valuesFile]);
            if (status !== 200) {
                throw new Error(`the webhook answered ${status}`);
            }
        }
        await this.waitUntil(`${this.app.app} Synced at ${after} with ${tag}`, () => this.synced(after) && this.image() === `${this.app.image}:${tag}`, timeoutSec);
        return secondsSince(pushed);
    }
}

/** A read-only user and a writer with fresh random passwords, as the loop's Git server has them. */
export function loopUsers(): { reader: GitUser; writer: GitUser } {
    return {
        reader: { username: "argocd-reader", password: `reader-${randomBytes(12).toString("hex")}` },
        writer: { username: "oauth2", password: `writer-${randomBytes(12).toString("hex")}` },
    };
}

/**
 * The loop's parts, started together: a Kubernetes API server on loopback, the lab's Git server
 * with the manifests repository, the program's GitOps layer for this config applied to the API
 * server, and Argo CD reading it. Used by the loop tests and by `npm run bench:gitops`.
 */
export class GitopsLoop extends LoopDriver<TestCluster> {
    readonly reader: GitUser;
    readonly dir = mkdtempSync(path.join(tmpdir(), "zt-gitops-"));
    set!: GitopsObjects;

    constructor() {
        const { reader, writer } = loopUsers();
        super(new TestCluster(), new GitServer({ reader, writer }), writer);
        this.reader = reader;
    }

    /** Starts everything; `reconciliationSeconds` is the program's `gitops.argocd.reconciliationSeconds`. */
    async start(reconciliationSeconds: number): Promise<void> {
        await this.cluster.start();
        await this.git.start();
        this.repoUrl = this.git.createRepo(LOOP.repo, appManifests({ tag: "1.0.0", extraConfig: true }));
        // Pulumi.prod.yaml, with the Kubernetes layer on this API server and the GitOps layer wired
        // by hand (no GitLab): the lab's repository, read with the read-only user.
        const { raw, secretKeys } = prodStack();
        raw.kubernetes = { mode: "existing" };
        raw.kubeconfig = readFileSync(this.cluster.kubeconfig, "utf8");
        raw.gitops = {
            argocd: { hostname: "argocd.vpn.lab.zerotouch.test", webhookHostname: "argocd-hooks.lab.zerotouch.test", reconciliationSeconds },
            manifests: { url: this.repoUrl, username: this.reader.username },
            applications: { [LOOP.app]: { environment: "prod", path: "deployments/prod", namespace: LOOP.appNamespace, valueFiles: ["values-prod.yaml"] } },
        };
        raw.manifestsPassword = this.reader.password;
        delete raw.gitlabToken;
        delete raw.argocdSsoClientSecret;
        const secrets = [...secretKeys.filter((k) => k !== "gitlabToken" && k !== "argocdSsoClientSecret"), "kubeconfig", "manifestsPassword"];
        this.set = await gitopsObjects(raw, secrets);
        await applyGitops(this.cluster, this.set);
        this.webhookSecret = this.readWebhookSecret();
        this.argocd = new ArgoCd({ kubeconfig: this.cluster.kubeconfig, dir: path.join(this.dir, "argocd"), namespace: LOOP.namespace, trustedCas: { "127.0.0.1": this.git.caPem }, objects: this.set.objects });
        await this.argocd.start();
    }

    stop(): void {
        this.argocd?.stop();
        this.git.stop();
        this.cluster.stop();
        rmSync(this.dir, { recursive: true, force: true });
    }
}
