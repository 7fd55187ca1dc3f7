import { spawn, spawnSync, SpawnSyncReturns } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/**
 * bump-image.mjs through its command line, and update-manifests.sh (the app template's
 * update-manifests job) against a bare git repository standing in for the manifests remote,
 * with two jobs racing to push.
 */

const TEMPLATES = path.join(__dirname, "..", "stacks", "templates");
const BUMP = path.join(TEMPLATES, "bump-image.mjs");
const UPDATE = path.join(TEMPLATES, "update-manifests.sh");

const SHA_A = "3f2c4e1b9a0d8c7e6f5a4b3c2d1e0f9a8b7c6d5e";
const SHA_B = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";

const tempDirs: string[] = [];
function tempDir(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "zt-bump-"));
    tempDirs.push(dir);
    return dir;
}
afterAll(() => {
    for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function bump(file: string, ...args: string[]): SpawnSyncReturns<string> {
    return spawnSync(process.execPath, [BUMP, file, ...args], { encoding: "utf8", timeout: 20_000 });
}

/** A values file with several `image:` and `tag:` keys, comments, quoting styles and odd spacing. */
const VALUES = `# backend-service, production values
# (image.tag is set by the app pipeline; everything else by hand)

replicaCount: 3

image:
  repository: registry.example.com/shop/backend-service   # the app's registry
  tag: "0123abc"  # bumped by CI
  pullPolicy: IfNotPresent

sidecar:
  image:
    repository: registry.example.com/shop/proxy
    tag: 1.10
  tags: ['a', 'b']

jobs:
  - name: migrate
    image: 'registry.example.com/shop/migrate:0.9.0'
    tag: keep

empty:
  tag:
anchored:
  tag: &shared v1
  copy: *shared
block:
  tag: |
    v1
`;

function writeValues(text = VALUES): string {
    const file = path.join(tempDir(), "values-prod.yaml");
    fs.writeFileSync(file, text);
    return file;
}

/** VALUES with line `lineNo` (1-based) replaced: everything else byte-for-byte. */
function withLine(lineNo: number, line: string): string {
    const lines = VALUES.split("\n");
    lines[lineNo - 1] = line;
    return lines.join("\n");
}

describe("bump-image.mjs sets one key", () => {
    test.each([
        ["image.tag", SHA_A, 8, `  tag: "${SHA_A}"  # bumped by CI`, `image.tag: 0123abc → ${SHA_A}`],
        ["sidecar.image.tag", "1.11", 14, `    tag: "1.11"`, "sidecar.image.tag: 1.10 → 1.11"],
        ["sidecar.image.tag", "v2", 14, `    tag: v2`, "sidecar.image.tag: 1.10 → v2"],
        ["jobs.0.image", "registry.example.com/shop/migrate:1.0.0", 19, `    image: 'registry.example.com/shop/migrate:1.0.0'`, "jobs.0.image: registry.example.com/shop/migrate:0.9.0 → registry.example.com/shop/migrate:1.0.0"],
        ["image.repository", "registry.example.com:5000/shop/backend@sha256:" + "ab".repeat(32), 7, `  repository: registry.example.com:5000/shop/backend@sha256:${"ab".repeat(32)}   # the app's registry`, "image.repository: registry.example.com/shop/backend-service → "],
        ["empty.tag", "v3", 23, "  tag: v3", "empty.tag: (empty) → v3"],
    ])("%s = %s changes that line only, in its own quoting style", (key, value, lineNo, line, printed) => {
        const file = writeValues();
        const r = bump(file, key, value);
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
        expect(r.stdout).toContain(printed);
        expect(fs.readFileSync(file, "utf8")).toBe(withLine(lineNo, line));
    });

    test("other image: and tag: keys, comments and ordering are untouched", () => {
        const file = writeValues();
        expect(bump(file, "image.tag", SHA_B).status).toBe(0);
        const after = fs.readFileSync(file, "utf8");
        const changed = after.split("\n").filter((l, i) => l !== VALUES.split("\n")[i]);
        expect(changed).toEqual([`  tag: "${SHA_B}"  # bumped by CI`]);
        expect(after).toContain("# backend-service, production values\n");
        expect(after).toContain("    tag: 1.10\n");
        expect(after).toContain("    tag: keep\n");
        expect(after).toContain("image: 'registry.example.com/shop/migrate:0.9.0'");
    });

    test("a value that is already set is a no-op, exit 0, file untouched", () => {
        const file = writeValues();
        const before = fs.statSync(file).mtimeMs;
        const r = bump(file, "image.tag", "0123abc");
        expect(r.status).toBe(0);
        expect(r.stdout).toContain("image.tag is already 0123abc; nothing to change");
        expect(fs.readFileSync(file, "utf8")).toBe(VALUES);
        expect(fs.statSync(file).mtimeMs).toBe(before);
    });

    test("a second identical bump is a no-op", () => {
        const file = writeValues();
        expect(bump(file, "image.tag", SHA_A).status).toBe(0);
        const once = fs.readFileSync(file, "utf8");
        const r = bump(file, "image.tag", SHA_A);
        expect(r.status).toBe(0);
        expect(r.stdout).toContain("nothing to change");
        expect(fs.readFileSync(file, "utf8")).toBe(once);
    });
});

describe("bump-image.mjs refuses, exit 1, file untouched", () => {
    test.each([
        ["image.digest", SHA_A, /key image\.digest does not exist \(no "digest" under image\)/],
        ["imag.tag", SHA_A, /key imag does not exist/],
        ["image", SHA_A, /key image is a mapping, not a scalar/],
        ["sidecar.tags", SHA_A, /key sidecar\.tags is a sequence, not a scalar/],
        ["image.tag.sub", SHA_A, /key image\.tag\.sub does not exist \(image\.tag is a scalar\)/],
        ["jobs.3.image", SHA_A, /key jobs\.3 does not exist \(jobs has 1 items\)/],
        ["anchored.copy", SHA_A, /is an alias \(\*shared\)/],
        ["anchored.tag", SHA_A, /carries the anchor &shared/],
        ["block.tag", SHA_A, /is a block scalar/],
        ["image..tag", SHA_A, /has an empty segment/],
    ])("key %s", (key, value, message) => {
        const file = writeValues();
        const r = bump(file, key, value);
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).toContain("file left unchanged");
        expect(r.stdout).toBe("");
        expect(fs.readFileSync(file, "utf8")).toBe(VALUES);
    });

    test.each([
        ["with a space", "1.0 beta"],
        ["empty", ""],
        ["leading dash", "-rc1"],
        ["leading dot", ".hidden"],
        ["129 characters", "a".repeat(129)],
        ["a newline", "v1\nmalicious: true"],
        ["a quote", 'v1"'],
        ["a name without tag or digest", "registry.example.com/shop/backend"],
        ["upper case in the repository path", "registry.example.com/Shop/backend:1.0"],
        ["a short digest", "shop/backend@sha256:abc"],
    ])("value %s", (_what, value) => {
        const file = writeValues();
        const r = bump(file, "image.tag", value);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain("is not a valid image tag or reference");
        expect(fs.readFileSync(file, "utf8")).toBe(VALUES);
    });

    test.each([
        ["duplicate keys", "image:\n  tag: a\n  tag: b\n", /not valid YAML: Map keys must be unique/],
        ["two documents", "image:\n  tag: a\n---\nimage:\n  tag: b\n", /not valid YAML: Source contains multiple documents/],
    ])("a file with %s", (_what, text, message) => {
        const file = writeValues(text);
        const r = bump(file, "image.tag", "v2");
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(message);
        expect(fs.readFileSync(file, "utf8")).toBe(text);
    });

    test("a missing file", () => {
        const r = bump(path.join(tempDir(), "nope.yaml"), "image.tag", "v2");
        expect(r.status).toBe(1);
        expect(r.stderr).toContain("cannot read: ENOENT");
    });

    test("wrong usage exits 2", () => {
        const r = spawnSync(process.execPath, [BUMP, "only-one-arg"], { encoding: "utf8", timeout: 20_000 });
        expect(r.status).toBe(2);
        expect(r.stderr).toContain("usage: bump-image.mjs <file> <dotted.key> <value>");
    });
});

// ---------------------------------------------------------------------------------------------
// update-manifests.sh against a local bare repository

const SHOP_VALUES = `# shop, production. Each app's pipeline sets its own tag; nothing else is written by CI.
images:
  backend: "1111111"    # shop/backend
  frontend: "2222222"   # shop/frontend
replicas:
  backend: 3
  frontend: 2
`;

/** An environment without the caller's git config, with node first on PATH. */
function baseEnv(home: string): NodeJS.ProcessEnv {
    return {
        PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        HOME: home,
        TMPDIR: home, // the job's own temp dir lands under ours, removed even if the job is killed
        GIT_CONFIG_NOSYSTEM: "1",
        LANG: "C.UTF-8",
    };
}

function git(cwd: string, env: NodeJS.ProcessEnv, ...args: string[]): string {
    const r = spawnSync("git", args, { cwd, env, encoding: "utf8", timeout: 20_000 });
    if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
}

interface Remote {
    root: string;
    bare: string;
    env: NodeJS.ProcessEnv;
    seed: string;
}

/** A bare repository on branch main holding apps/shop/values-prod.yaml, and its seed commit. */
function makeRemote(): Remote {
    const root = tempDir();
    const env = { ...baseEnv(root), GIT_AUTHOR_NAME: "Seed", GIT_AUTHOR_EMAIL: "seed@example.com", GIT_COMMITTER_NAME: "Seed", GIT_COMMITTER_EMAIL: "seed@example.com" };
    const bare = path.join(root, "manifests.git");
    git(root, env, "init", "--quiet", "--bare", "--initial-branch=main", bare);
    const work = path.join(root, "seed");
    git(root, env, "clone", "--quiet", bare, work);
    fs.mkdirSync(path.join(work, "apps", "shop"), { recursive: true });
    fs.writeFileSync(path.join(work, "apps", "shop", "values-prod.yaml"), SHOP_VALUES);
    fs.writeFileSync(path.join(work, "README.md"), "manifests\n");
    git(work, env, "add", ".");
    git(work, env, "commit", "--quiet", "-m", "seed");
    git(work, env, "push", "--quiet", "origin", "HEAD:refs/heads/main");
    return { root, bare, env, seed: git(bare, env, "rev-parse", "main").trim() };
}

/**
 * A pre-receive hook that holds each of the first two pushes until both have arrived (bounded
 * at 20 s), so that both were prepared on the same tip and one of them must lose.
 */
function addBarrier(remote: Remote): string {
    const arrivals = path.join(remote.root, "arrivals");
    fs.mkdirSync(arrivals);
    const hook = path.join(remote.bare, "hooks", "pre-receive");
    fs.writeFileSync(
        hook,
        `#!/bin/sh
cat >/dev/null
mktemp "${arrivals}/push.XXXXXX" >/dev/null
i=0
while [ "$(ls "${arrivals}" | wc -l)" -lt 2 ] && [ "$i" -lt 200 ]; do
  sleep 0.1
  i=$((i + 1))
done
exit 0
`,
        { mode: 0o755 },
    );
    return arrivals;
}

interface JobResult {
    status: number | null;
    output: string;
}

function jobEnv(remote: Remote, app: string, key: string, tag: string): NodeJS.ProcessEnv {
    return {
        ...baseEnv(remote.root),
        MANIFESTS_URL: remote.bare,
        MANIFEST_FILE: "apps/shop/values-prod.yaml",
        IMAGE_KEY: key,
        IMAGE_TAG: tag,
        CI_PROJECT_PATH: `shop/${app}`,
        CI_PROJECT_NAME: app,
        CI_COMMIT_SHA: tag,
        BACKOFF_SECONDS: "0",
    };
}

/** Runs update-manifests.sh as the job does, without blocking the event loop (the jobs race). */
function runJob(env: NodeJS.ProcessEnv): Promise<JobResult> {
    return new Promise((resolve, reject) => {
        const child = spawn("bash", [UPDATE], { env, stdio: ["ignore", "pipe", "pipe"] });
        let output = "";
        child.stdout.on("data", (d: Buffer) => (output += d.toString()));
        child.stderr.on("data", (d: Buffer) => (output += d.toString()));
        const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
        child.on("error", (err) => {
            clearTimeout(timer);
            reject(err);
        });
        child.on("close", (status) => {
            clearTimeout(timer);
            resolve({ status, output });
        });
    });
}

function showFile(remote: Remote, rev: string): string {
    return git(remote.bare, remote.env, "show", `${rev}:apps/shop/values-prod.yaml`);
}

describe("update-manifests.sh", () => {
    test("two jobs racing on one file: both bumps land, one after a rejected push and a replay", async () => {
        const remote = makeRemote();
        const arrivals = addBarrier(remote);

        const [backend, frontend] = await Promise.all([
            runJob(jobEnv(remote, "backend", "images.backend", SHA_A)),
            runJob(jobEnv(remote, "frontend", "images.frontend", SHA_B)),
        ]);
        expect(backend).toMatchObject({ status: 0 });
        expect(frontend).toMatchObject({ status: 0 });

        // The retry path ran in exactly one of them: rejected on attempt 1, replayed on the new tip.
        const retried = [backend, frontend].filter((j) => j.output.includes("push rejected"));
        expect(retried).toHaveLength(1);
        expect(retried[0].output).toContain("rebasing onto origin/main");
        expect(retried[0].output).toMatch(/pushed [0-9a-f]+ to main \(attempt 2\/5\)/);
        const first = [backend, frontend].find((j) => !j.output.includes("push rejected"));
        expect(first?.output).toMatch(/pushed [0-9a-f]+ to main \(attempt 1\/5\)/);
        expect(fs.readdirSync(arrivals).length).toBe(3);

        // History: seed, then one commit per bump, linear.
        const log = git(remote.bare, remote.env, "rev-list", "--parents", "main").trim().split("\n");
        expect(log).toHaveLength(3);
        const [top, second] = log.map((line) => line.split(" "));
        expect(top).toHaveLength(2);
        expect(second).toEqual([second[0], remote.seed]);
        expect(top[1]).toBe(second[0]);

        const messages = new Map<string, string>();
        for (const c of [top[0], second[0]]) messages.set(c, git(remote.bare, remote.env, "log", "-1", "--format=%B", c));
        const bySource = (sha: string) => [...messages.entries()].filter(([, m]) => m.includes(sha));
        const [[backendCommit, backendMsg]] = bySource(`Source: shop/backend@${SHA_A}`);
        const [[frontendCommit, frontendMsg]] = bySource(`Source: shop/frontend@${SHA_B}`);
        expect(backendMsg).toMatch(new RegExp(`^backend: set images\\.backend to ${SHA_A}\\n`));
        expect(frontendMsg).toMatch(new RegExp(`^frontend: set images\\.frontend to ${SHA_B}\\n`));
        expect(backendMsg).toContain("File: apps/shop/values-prod.yaml");

        // Each commit changed exactly its own key's line, nothing else in the repository.
        for (const [commit, line] of [
            [backendCommit, `  backend: "${SHA_A}"    # shop/backend`],
            [frontendCommit, `  frontend: "${SHA_B}"   # shop/frontend`],
        ]) {
            expect(git(remote.bare, remote.env, "diff", "--numstat", `${commit}^`, commit)).toBe("1\t1\tapps/shop/values-prod.yaml\n");
            const diff = git(remote.bare, remote.env, "diff", "-U0", `${commit}^`, commit);
            expect(diff.split("\n").filter((l) => l.startsWith("+") && !l.startsWith("+++"))).toEqual([`+${line}`]);
        }
        expect(showFile(remote, "main")).toBe(
            SHOP_VALUES.replace(`backend: "1111111" `, `backend: "${SHA_A}" `).replace(`frontend: "2222222" `, `frontend: "${SHA_B}" `),
        );
        // The committer is the bump, the remote URL in the job's clone held no token (nothing to check
        // on disk: the clone is gone with the job's temp dir).
        expect(git(remote.bare, remote.env, "log", "-1", "--format=%cn", backendCommit)).toBe("GitOps bump (shop/backend)\n");
    });

    test("the same tag again pushes nothing", async () => {
        const remote = makeRemote();
        expect((await runJob(jobEnv(remote, "backend", "images.backend", SHA_A))).status).toBe(0);
        const head = git(remote.bare, remote.env, "rev-parse", "main");
        const again = await runJob(jobEnv(remote, "backend", "images.backend", SHA_A));
        expect(again.status).toBe(0);
        expect(again.output).toContain(`already sets images.backend to ${SHA_A}; nothing to push`);
        expect(git(remote.bare, remote.env, "rev-parse", "main")).toBe(head);
    });

    test("a remote that keeps rejecting: bounded attempts, then failure, history untouched", async () => {
        const remote = makeRemote();
        fs.writeFileSync(path.join(remote.bare, "hooks", "pre-receive"), "#!/bin/sh\necho 'pushes are closed' >&2\nexit 1\n", { mode: 0o755 });
        const r = await runJob({ ...jobEnv(remote, "backend", "images.backend", SHA_A), PUSH_ATTEMPTS: "3" });
        expect(r.status).toBe(1);
        expect(r.output.match(/push rejected \(another pipeline/g)).toHaveLength(2);
        expect(r.output).toContain("push rejected 3 times; giving up");
        expect(git(remote.bare, remote.env, "rev-parse", "main").trim()).toBe(remote.seed);
    });

    test("a refused bump (missing key) pushes nothing", async () => {
        const remote = makeRemote();
        const r = await runJob(jobEnv(remote, "backend", "images.api", SHA_A));
        expect(r.status).toBe(1);
        expect(r.output).toContain("key images.api does not exist");
        expect(r.output).toContain("bump refused; nothing was pushed");
        expect(git(remote.bare, remote.env, "rev-parse", "main").trim()).toBe(remote.seed);
    });

    test.each([
        ["MANIFEST_FILE outside the repository", { MANIFEST_FILE: "../etc/passwd" }, "MANIFEST_FILE must be a path inside the manifests repository"],
        ["a missing MANIFEST_FILE", { MANIFEST_FILE: "apps/nope/values.yaml" }, "apps/nope/values.yaml does not exist on main"],
        ["no IMAGE_KEY", { IMAGE_KEY: "" }, "IMAGE_KEY is not set"],
        ["a bad PUSH_ATTEMPTS", { PUSH_ATTEMPTS: "many" }, "PUSH_ATTEMPTS must be a whole number"],
    ])("refuses %s", async (_what, override, message) => {
        const remote = makeRemote();
        const r = await runJob({ ...jobEnv(remote, "backend", "images.backend", SHA_A), ...override });
        expect(r.status).toBe(1);
        expect(r.output).toContain(message);
    });

    describe("over https", () => {
        const TOKEN = "glpat-NOT-A-REAL-TOKEN-7f3a9c";
        function httpsEnv(remote: Remote, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
            const env = { ...jobEnv(remote, "backend", "images.backend", SHA_A), ...extra };
            delete env.MANIFESTS_URL;
            return env;
        }

        test("refuses to start without GITOPS_TOKEN", async () => {
            const r = await runJob(httpsEnv(makeRemote(), { MANIFESTS_REPO: "127.0.0.1:9/platform/manifests" }));
            expect(r.status).toBe(1);
            expect(r.output).toContain("GITOPS_TOKEN is not set (a masked, protected CI/CD variable");
            expect(r.output).not.toContain("cloning");
        });

        test("refuses a MANIFESTS_REPO with a scheme or user, where a token could be written", async () => {
            const r = await runJob(httpsEnv(makeRemote(), { MANIFESTS_REPO: `https://oauth2:${TOKEN}@127.0.0.1:9/platform/manifests`, GITOPS_TOKEN: TOKEN }));
            expect(r.status).toBe(1);
            expect(r.output).toContain("MANIFESTS_REPO is host/path only");
            expect(r.output).not.toContain(TOKEN);
        });

        test("a failing clone (nothing listens on loopback port 9) never prints the token", async () => {
            const r = await runJob(httpsEnv(makeRemote(), { MANIFESTS_REPO: "127.0.0.1:9/platform/manifests", GITOPS_TOKEN: TOKEN, GIT_TIMEOUT_SECONDS: "10" }));
            expect(r.status).toBe(1);
            expect(r.output).toContain("cloning https://127.0.0.1:9/platform/manifests.git (main)");
            expect(r.output).toContain("cannot clone the manifests repository");
            expect(r.output).not.toContain(TOKEN);
        });

        test("git gets the token from the credential helper the script configures, and only from the environment", () => {
            // The script's GIT_CONFIG_* lines, run in a shell that then asks git for credentials.
            const script = fs.readFileSync(UPDATE, "utf8");
            const config = script.split("\n").filter((l) => /^export GIT_(CONFIG_|TERMINAL_PROMPT)/.test(l));
            expect(config).toHaveLength(5);
            const home = tempDir();
            const r = spawnSync("bash", ["-c", `set -euo pipefail\n${config.join("\n")}\nprintf 'protocol=https\\nhost=gitlab.example.com\\n\\n' | git credential fill`], {
                env: { ...baseEnv(home), GITOPS_TOKEN: TOKEN },
                encoding: "utf8",
                timeout: 20_000,
            });
            expect(r.status).toBe(0);
            expect(r.stdout).toContain(`username=oauth2\npassword=${TOKEN}\n`);
            // Without the variable, the helper has nothing to give.
            const without = spawnSync("bash", ["-c", `set -euo pipefail\n${config.join("\n")}\nprintf 'protocol=https\\nhost=gitlab.example.com\\n\\n' | git credential fill`], {
                env: baseEnv(home),
                encoding: "utf8",
                timeout: 20_000,
            });
            expect(without.status).not.toBe(0);
            expect(without.stdout).not.toContain("password=glpat");
        });
    });
});

describe("update-manifests.sh as shipped", () => {
    test("shellcheck -x is clean", () => {
        const r = spawnSync("shellcheck", ["-x", "--severity=style", UPDATE], { encoding: "utf8", timeout: 60_000 });
        if (r.error) throw new Error(`shellcheck not runnable (Debian: shellcheck): ${r.error.message}`);
        expect(r.stdout + r.stderr).toBe("");
        expect(r.status).toBe(0);
    });

    test("never traces and never prints GITOPS_TOKEN", () => {
        const lines = fs.readFileSync(UPDATE, "utf8").split("\n").filter((l) => !l.trimStart().startsWith("#"));
        expect(lines.join("\n")).not.toMatch(/set\s+-[a-z]*x|set\s+-o\s+xtrace|BASH_XTRACEFD/);
        const uses = lines.filter((l) => l.includes("GITOPS_TOKEN"));
        for (const l of uses) {
            expect(l).not.toMatch(/\b(echo|log|fail)\b.*\$\{?GITOPS_TOKEN/);
            expect(l).not.toMatch(/https?:\/\/[^\s"]*\$\{?GITOPS_TOKEN/);
        }
        // Its value is expanded in one place only: git's credential helper, at use, single-quoted here.
        const expanded = lines.filter((l) => /\$\{?GITOPS_TOKEN/.test(l));
        expect(expanded).toHaveLength(1);
        expect(expanded[0]).toMatch(/^export GIT_CONFIG_VALUE_1='!f\(\) \{.*"\$GITOPS_TOKEN"; \}; f'$/);
    });
});
