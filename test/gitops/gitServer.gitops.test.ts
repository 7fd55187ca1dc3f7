/**
 * The lab's manifests repository (test/gitops/gitServer.ts): lighttpd with git-http-backend over
 * TLS on loopback, a read-only user and a writer. Checked with the real git client, raw HTTPS
 * requests, the app pipeline's own update-manifests.sh, and the chart rendered by a real helm.
 */
import { spawnSync, SpawnSyncReturns } from "child_process";
import { randomBytes } from "crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as https from "https";
import { tmpdir } from "os";
import * as path from "path";
import { parse, parseAllDocuments } from "yaml";

import { appManifests, CHART_PATH, IMAGE_KEY, IMAGE_REPOSITORY, MANIFEST_FILE, OBJECT_NAMES, VALUES_COMMENT, VALUES_FILE } from "./appManifests";
import { GitServer, GitUser } from "./gitServer";

const ROOT = path.resolve(__dirname, "..", "..");
const UPDATE_MANIFESTS = path.join(ROOT, "stacks", "templates", "update-manifests.sh");
const REPO = "platform/manifests.git";
const FIRST_TAG = "1.4.2";

// Fresh secrets for every run; update-manifests.sh always sends the user `oauth2`.
const READER: GitUser = { username: "argocd-reader", password: randomBytes(18).toString("base64url") };
const WRITER: GitUser = { username: "oauth2", password: randomBytes(18).toString("base64url") };

let server: GitServer;
let url: string;
let work: string;

beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "zt-gitops-test-"));
    mkdirSync(path.join(work, "home"));
    server = new GitServer({ reader: READER, writer: WRITER });
    await server.start();
    url = server.createRepo(REPO, appManifests({ tag: FIRST_TAG, extraConfig: true }));
}, 60_000);

afterAll(() => {
    server?.stop();
    if (work !== undefined) {
        rmSync(work, { recursive: true, force: true });
    }
});

/** An environment for git without the caller's config, never prompting, trusting the server's CA. */
function baseEnv(): NodeJS.ProcessEnv {
    return {
        PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        HOME: path.join(work, "home"),
        TMPDIR: work,
        LANG: "C.UTF-8",
        GIT_CONFIG_NOSYSTEM: "1",
        GIT_TERMINAL_PROMPT: "0",
        GIT_SSL_CAINFO: server.caFile,
        GIT_AUTHOR_NAME: "Backend team",
        GIT_AUTHOR_EMAIL: "backend@example.eu",
        GIT_COMMITTER_NAME: "Backend team",
        GIT_COMMITTER_EMAIL: "backend@example.eu",
    };
}

/**
 * Runs git as `user` (or anonymously): the credentials come from a helper reading them from the
 * environment, as update-manifests.sh does, so they are in no URL and no argument.
 */
function gitAs(user: GitUser | undefined, cwd: string, ...args: string[]): SpawnSyncReturns<string> {
    const env: NodeJS.ProcessEnv = { ...baseEnv(), GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "credential.helper", GIT_CONFIG_VALUE_0: "" };
    if (user !== undefined) {
        Object.assign(env, {
            GIT_CONFIG_COUNT: "2",
            GIT_CONFIG_KEY_1: "credential.helper",
            GIT_CONFIG_VALUE_1: '!f() { test "$1" = get || return 0; printf "username=%s\\npassword=%s\\n" "$ZT_GIT_USERNAME" "$ZT_GIT_PASSWORD"; }; f',
            ZT_GIT_USERNAME: user.username,
            ZT_GIT_PASSWORD: user.password,
        });
    }
    return spawnSync("timeout", ["60", "git", ...args], { cwd, env, encoding: "utf8" });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
    if (r.status !== 0) {
        throw new Error(`${what} failed (exit ${r.status}): ${r.stderr}\n${server.logTail()}`);
    }
    return r.stdout;
}

let clones = 0;
/** A fresh clone of main as `user`; its folder. */
function cloneAs(user: GitUser): string {
    const dir = path.join(work, `clone-${++clones}`);
    ok(gitAs(user, work, "clone", "--quiet", "--branch", "main", url, dir), `clone as ${user.username}`);
    return dir;
}

/** Commits a change to README.md in `dir`; the new commit. */
function commitChange(dir: string, line: string): string {
    writeFileSync(path.join(dir, "README.md"), `${readFileSync(path.join(dir, "README.md"), "utf8")}${line}\n`);
    ok(gitAs(undefined, dir, "commit", "--quiet", "-am", line), "commit");
    return ok(gitAs(undefined, dir, "rev-parse", "HEAD"), "rev-parse").trim();
}

/** The bare repository's file at `rev`, read on disk. */
function showFile(rev: string, file: string): string {
    return ok(gitAs(undefined, work, "--git-dir", server.bareRepo(REPO), "show", `${rev}:${file}`), `git show ${rev}:${file}`);
}

/** Raw HTTPS, to see the status the server answers. */
function request(method: "GET" | "POST", target: string, user?: GitUser, contentType?: string): Promise<{ status: number; contentType: string }> {
    return new Promise((resolve, reject) => {
        const headers: Record<string, string> = {};
        if (user !== undefined) {
            headers.Authorization = `Basic ${Buffer.from(`${user.username}:${user.password}`).toString("base64")}`;
        }
        if (contentType !== undefined) {
            headers["Content-Type"] = contentType;
        }
        // A connection of its own per request: a kept-alive socket that lighttpd has just closed
        // would fail the request with "socket hang up".
        const req = https.request(target, { method, headers, ca: server.caPem, timeout: 20_000, agent: false }, (res) => {
            res.resume();
            res.on("end", () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? "") }));
        });
        req.on("timeout", () => req.destroy(new Error(`${method} ${target}: no answer within 20s`)));
        req.on("error", reject);
        req.end(method === "POST" ? "0000" : undefined);
    });
}

/** git's message when the server answered 401 or 403. */
const REFUSED = /Authentication failed|The requested URL returned error: 40[13]/;

describe("GitServer: who may read and write", () => {
    test("the reader clones main: the layout as committed, at the bare repository's head", () => {
        const dir = cloneAs(READER);
        expect(ok(gitAs(undefined, dir, "rev-parse", "HEAD"), "rev-parse").trim()).toBe(server.headOf(REPO));
        for (const [file, content] of Object.entries(appManifests({ tag: FIRST_TAG, extraConfig: true }))) {
            expect(readFileSync(path.join(dir, file), "utf8")).toBe(content);
        }
        expect(url).toBe(`${server.baseUrl}/${REPO}`);
        expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/git\/platform\/manifests\.git$/);
    }, 60_000);

    test("TLS: a client that does not trust the server's CA refuses it", () => {
        const env = { ...baseEnv(), GIT_SSL_CAINFO: "/dev/null" };
        const r = spawnSync("timeout", ["60", "git", "ls-remote", url], { cwd: work, env, encoding: "utf8" });
        expect(r.status).not.toBe(0);
        expect(r.stderr).toMatch(/SSL certificate problem|certificate verify failed|server certificate verification failed/);
        expect(server.caPem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    }, 60_000);

    test("the reader's push is refused and the branch is unchanged", () => {
        const before = server.headOf(REPO);
        const dir = cloneAs(READER);
        commitChange(dir, "reader was here");
        const push = gitAs(READER, dir, "push", "origin", "HEAD:refs/heads/main");
        expect(push.status).not.toBe(0);
        expect(push.stderr).toMatch(REFUSED);
        expect(server.headOf(REPO)).toBe(before);
    }, 60_000);

    test("the writer pushes; the reader fetches the new commit", () => {
        const dir = cloneAs(WRITER);
        const commit = commitChange(dir, "writer was here");
        ok(gitAs(WRITER, dir, "push", "--quiet", "origin", "HEAD:refs/heads/main"), "push as the writer");
        expect(server.headOf(REPO)).toBe(commit);
        const seen = cloneAs(READER);
        expect(ok(gitAs(undefined, seen, "rev-parse", "HEAD"), "rev-parse").trim()).toBe(commit);
    }, 60_000);

    test("headOf names a branch that does not exist; a repository is created once", () => {
        expect(() => server.headOf(REPO, "release")).toThrow(/no branch "release" in platform\/manifests\.git/);
        expect(() => server.createRepo(REPO, {})).toThrow(/exists already/);
        expect(() => server.createRepo("../outside.git", {})).toThrow(/allowed: a relative path/);
    });

    test.each<[string, GitUser | undefined]>([
        ["no credentials", undefined],
        ["the writer's name with a wrong password", { username: WRITER.username, password: `${WRITER.password}x` }],
        ["the reader's name with the writer's password", { username: READER.username, password: WRITER.password }],
        ["an unknown user", { username: "someone", password: READER.password }],
    ])("a clone with %s is refused", (_what, user) => {
        const r = gitAs(user, work, "clone", "--quiet", url, path.join(work, `refused-${++clones}`));
        expect(r.status).not.toBe(0);
        expect(r.stderr).toMatch(user === undefined ? /could not read Username|Authentication failed|returned error: 401/ : REFUSED);
    }, 60_000);

    test("over raw HTTPS: fetching for both users, pushing and its advertisement for the writer only", async () => {
        const repo = url;
        const uploadAd = `${repo}/info/refs?service=git-upload-pack`;
        const receiveAd = `${repo}/info/refs?service=git-receive-pack`;
        const before = server.headOf(REPO);

        // Anonymous: nothing.
        for (const target of [uploadAd, receiveAd, `${repo}/HEAD`]) {
            expect({ target, status: (await request("GET", target)).status }).toEqual({ target, status: 401 });
        }
        // Both users fetch over smart HTTP.
        for (const user of [READER, WRITER]) {
            expect(await request("GET", uploadAd, user)).toEqual({ status: 200, contentType: "application/x-git-upload-pack-advertisement" });
        }
        // The reader gets no push advertisement and no receive-pack, however the request is spelled.
        for (const target of [
            receiveAd,
            `${repo}/info/refs?service=git%2Dreceive-pack`,
            `${repo}/info/refs?service=git-upload-pack&service=git-receive-pack`,
            `${repo}/info/refs`, // the dumb protocol
            `${repo}/HEAD`,
        ]) {
            expect([401, 403]).toContain((await request("GET", target, READER)).status);
        }
        for (const target of [`${repo}/git-receive-pack`, `${repo}/git%2Dreceive-pack`]) {
            expect([401, 403]).toContain((await request("POST", target, READER, "application/x-git-receive-pack-request")).status);
        }
        // A wrong password gets nothing either.
        expect((await request("GET", uploadAd, { username: WRITER.username, password: "wrong" })).status).toBe(401);
        // The writer gets the push advertisement.
        expect(await request("GET", receiveAd, WRITER)).toEqual({ status: 200, contentType: "application/x-git-receive-pack-advertisement" });
        expect(server.headOf(REPO)).toBe(before);
    }, 120_000);
});

// ---------------------------------------------------------------------------------------------
// The app pipeline's bump, through the server

interface Job {
    status: number | null;
    output: string;
}

/** Runs update-manifests.sh as the app pipeline's job does, with `token` as GITOPS_TOKEN. */
function updateManifests(token: string, tag: string): Job {
    const env: NodeJS.ProcessEnv = {
        ...baseEnv(),
        MANIFESTS_URL: url,
        MANIFEST_FILE,
        IMAGE_KEY,
        IMAGE_TAG: tag,
        GITOPS_TOKEN: token,
        CI_PROJECT_PATH: "backend/backend-service",
        CI_PROJECT_NAME: "backend-service",
        CI_COMMIT_SHA: tag,
        PUSH_ATTEMPTS: "2",
        BACKOFF_SECONDS: "0",
        GIT_TIMEOUT_SECONDS: "30",
    };
    const r = spawnSync("timeout", ["120", "bash", UPDATE_MANIFESTS], { env, encoding: "utf8" });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe("update-manifests.sh against the server", () => {
    test("with the writer's token: one commit that changes exactly image.tag and keeps the comment", () => {
        const before = server.headOf(REPO);
        const oldValues = showFile(before, MANIFEST_FILE);
        const tag = randomBytes(20).toString("hex");

        const job = updateManifests(WRITER.password, tag);
        expect({ status: job.status, output: job.output }).toEqual({ status: 0, output: expect.stringContaining("pushed") });
        expect(job.output).not.toContain(WRITER.password);

        const after = server.headOf(REPO);
        expect(after).not.toBe(before);
        const parents = ok(gitAs(undefined, work, "--git-dir", server.bareRepo(REPO), "rev-list", "--parents", "-n", "1", after), "rev-list").trim().split(" ");
        expect(parents).toEqual([after, before]);
        const changed = ok(gitAs(undefined, work, "--git-dir", server.bareRepo(REPO), "diff", "--name-only", before, after), "diff").trim().split("\n");
        expect(changed).toEqual([MANIFEST_FILE]);

        const newValues = showFile(after, MANIFEST_FILE);
        const oldTag = parse(oldValues).image.tag as string;
        expect(newValues).toBe(oldValues.replace(`tag: "${oldTag}"`, `tag: "${tag}"`));
        expect(newValues.split("\n")[0]).toBe(VALUES_COMMENT);
        const [oldDoc, newDoc] = [parse(oldValues), parse(newValues)];
        expect(newDoc.image.tag).toBe(tag);
        expect({ ...newDoc, image: { ...newDoc.image, tag: oldTag } }).toEqual(oldDoc);

        const message = ok(gitAs(undefined, work, "--git-dir", server.bareRepo(REPO), "log", "-1", "--format=%B", after), "log");
        expect(message.split("\n")[0]).toBe(`backend-service: set ${IMAGE_KEY} to ${tag}`);
        expect(message).toContain(`Source: backend/backend-service@${tag}`);
    }, 120_000);

    test("with the reader's token: the job fails and the branch is unchanged", () => {
        const before = server.headOf(REPO);
        const job = updateManifests(READER.password, randomBytes(20).toString("hex"));
        expect(job.status).not.toBe(0);
        expect(job.output).toContain("update-manifests: cannot clone the manifests repository");
        expect(job.output).not.toContain(READER.password);
        expect(server.headOf(REPO)).toBe(before);
    }, 120_000);
});

// ---------------------------------------------------------------------------------------------
// The chart, rendered by helm

/**
 * helm from the test toolchain: ZT_HELM or ZT_TOOLCHAIN_BIN's when a run script set them, else
 * built now (a warm cache builds nothing).
 */
function helmBin(): string {
    const given = process.env.ZT_HELM || (process.env.ZT_TOOLCHAIN_BIN ? path.join(process.env.ZT_TOOLCHAIN_BIN, "helm") : "");
    if (given !== "" && existsSync(given)) {
        return given;
    }
    const r = spawnSync("bash", [path.join(ROOT, "test", "lab", "toolchain", "ensure.sh"), "helm"], { encoding: "utf8", timeout: 45 * 60 * 1000 });
    if (r.status !== 0) {
        throw new Error(`building helm failed (exit ${r.status ?? "timeout"}):\n${r.stderr}`);
    }
    return path.join(r.stdout.trim(), "helm");
}

let helm: string;

/** helm's environment: its cache, config and data homes in the test's folder. */
function helmEnv(): NodeJS.ProcessEnv {
    const home = path.join(work, "helm");
    return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, HELM_CACHE_HOME: home, HELM_CONFIG_HOME: home, HELM_DATA_HOME: home };
}

interface K8sObject {
    apiVersion: string;
    kind: string;
    metadata: { name: string; namespace?: string };
    [key: string]: any;
}

/** `helm template` of the chart in `checkout`, as Argo CD renders it (its value file, its namespace). */
function render(checkout: string, ...extra: string[]): K8sObject[] {
    const chart = path.join(checkout, CHART_PATH);
    const r = spawnSync(helm, ["template", "backend-service-lab", chart, "--namespace", "backend", "--values", path.join(chart, VALUES_FILE), ...extra], {
        encoding: "utf8",
        timeout: 60_000,
        env: helmEnv(),
    });
    if (r.status !== 0) {
        throw new Error(`helm template failed (exit ${r.status}): ${r.stderr}`);
    }
    const docs = parseAllDocuments(r.stdout);
    for (const d of docs) {
        expect(d.errors).toEqual([]);
    }
    return docs.map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
}

function byKind(objects: K8sObject[]): string[] {
    return objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
}

/** Writes `files` into a new folder (a checkout without git). */
function writeTree(files: Record<string, string>): string {
    const dir = mkdtempSync(path.join(work, "tree-"));
    for (const [file, content] of Object.entries(files)) {
        mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
        writeFileSync(path.join(dir, file), content);
    }
    return dir;
}

describe("the app's chart", () => {
    beforeAll(() => {
        helm = helmBin();
    }, 46 * 60 * 1000);

    test("a checkout of main renders the ConfigMaps, the Service and the Deployment with the tag of values-prod.yaml", () => {
        const dir = cloneAs(READER);
        const tag = parse(readFileSync(path.join(dir, MANIFEST_FILE), "utf8")).image.tag as string;
        const objects = render(dir);
        expect(byKind(objects)).toEqual([
            `ConfigMap/${OBJECT_NAMES.config}`,
            `ConfigMap/${OBJECT_NAMES.extraConfig}`,
            `Deployment/${OBJECT_NAMES.deployment}`,
            `Service/${OBJECT_NAMES.service}`,
        ]);
        const deployment = objects.find((o) => o.kind === "Deployment")!;
        expect(deployment.apiVersion).toBe("apps/v1");
        expect(deployment.spec.replicas).toBe(1);
        expect(deployment.spec.template.spec.containers.map((c: { image: string }) => c.image)).toEqual([`${IMAGE_REPOSITORY}:${tag}`]);
        expect(deployment.spec.selector.matchLabels).toEqual(deployment.spec.template.metadata.labels);
        const service = objects.find((o) => o.kind === "Service")!;
        expect(service.spec.type).toBe("ClusterIP");
        expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
        const config = objects.find((o) => o.metadata.name === OBJECT_NAMES.config)!;
        expect(config.data.imageTag).toBe(tag);
        // Argo CD sets the namespace; the chart does not.
        expect(objects.filter((o) => o.metadata.namespace !== undefined)).toEqual([]);
    }, 120_000);

    test("a bump changes the Deployment's image and the ConfigMap, nothing else", () => {
        const before = render(writeTree(appManifests({ tag: FIRST_TAG, extraConfig: true })));
        const after = render(writeTree(appManifests({ tag: "2.0.0", extraConfig: true })));
        const changed = after.filter((o, i) => JSON.stringify(o) !== JSON.stringify(before[i])).map((o) => `${o.kind}/${o.metadata.name}`);
        expect(changed.sort()).toEqual([`ConfigMap/${OBJECT_NAMES.config}`, `Deployment/${OBJECT_NAMES.deployment}`]);
        expect(after.find((o) => o.kind === "Deployment")!.spec.template.spec.containers[0].image).toBe(`${IMAGE_REPOSITORY}:2.0.0`);
    }, 120_000);

    test("without extraConfig there is no extra ConfigMap; replicas 0 when asked", () => {
        const objects = render(writeTree(appManifests({ tag: FIRST_TAG, replicas: 0 })));
        expect(byKind(objects)).toEqual([`ConfigMap/${OBJECT_NAMES.config}`, `Deployment/${OBJECT_NAMES.deployment}`, `Service/${OBJECT_NAMES.service}`]);
        expect(objects.find((o) => o.kind === "Deployment")!.spec.replicas).toBe(0);
    }, 120_000);

    test("helm lint --strict passes, and every value the chart declares is used", () => {
        const dir = writeTree(appManifests({ tag: FIRST_TAG, extraConfig: true }));
        const chart = path.join(dir, CHART_PATH);
        const lint = spawnSync(helm, ["lint", "--strict", chart, "--values", path.join(chart, VALUES_FILE)], { encoding: "utf8", timeout: 60_000, env: helmEnv() });
        expect({ status: lint.status, out: lint.stdout + lint.stderr }).toEqual({ status: 0, out: expect.stringContaining("1 chart(s) linted, 0 chart(s) failed") });

        // A key that no template reads is a bug: changing any leaf must change the render.
        const leaves = (value: unknown, prefix = ""): string[] =>
            value !== null && typeof value === "object" ? Object.entries(value).flatMap(([k, v]) => leaves(v, prefix === "" ? k : `${prefix}.${k}`)) : [prefix];
        const keys = [...new Set([...leaves(parse(readFileSync(path.join(chart, "values.yaml"), "utf8"))), ...leaves(parse(readFileSync(path.join(chart, VALUES_FILE), "utf8")))])];
        expect(keys.sort()).toEqual(["containerPort", "image.pullPolicy", "image.repository", "image.tag", "logLevel", "replicaCount", "service.port"]);
        const base = JSON.stringify(render(dir));
        const unused = keys.filter((key) => JSON.stringify(render(dir, "--set-string", `${key}=7`)) === base);
        expect(unused).toEqual([]);
    }, 120_000);

    test("a missing image tag fails the render", () => {
        const dir = writeTree(appManifests({ tag: FIRST_TAG }));
        expect(() => render(dir, "--set-string", "image.tag=")).toThrow(/image.tag is required/);
    }, 120_000);
});
