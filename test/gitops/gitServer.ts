/**
 * The lab's manifests repository host: bare Git repositories served over smart HTTP by lighttpd
 * running git's own `git-http-backend` as a CGI, with HTTP basic auth against an htpasswd file,
 * over TLS (a certificate for its address from a CA of its own: `caFile`, `caPem`; Argo CD and the
 * manifests repository settings take https URLs only), on loopback or on the lab host's address. Two users, as the GitOps loop
 * has them:
 *
 * - the reader (Argo CD's read-only deploy token) may fetch: `info/refs?service=git-upload-pack`
 *   and `git-upload-pack`, and nothing else;
 * - the writer (the app pipeline's GITOPS_TOKEN, sent as user `oauth2`) may fetch and push.
 *
 * Every other request (anonymous, a wrong password, the reader asking for `git-receive-pack` or
 * its advertisement, or anything outside the smart fetch protocol) gets 401.
 *
 * The server is bounded (`timeout`), runs in its own process group and is stopped by `stop()`,
 * which also removes the temporary folder holding the repositories, the htpasswd file and the
 * logs. Passwords go to `openssl passwd` on stdin and reach no command line.
 */
import { spawnSync } from "child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as https from "https";
import { isIPv4 } from "net";
import { tmpdir } from "os";
import * as path from "path";

import { freePort, Processes, waitFor } from "../support/processes";

/** git's smart HTTP server, as Debian's `git` package installs it. */
export const GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend";
/** lighttpd's TLS module, from Debian's `lighttpd-mod-openssl`. */
const MOD_OPENSSL = "/usr/lib/lighttpd/mod_openssl.so";
/** The server stops by itself after this long, even if nothing stops it. */
const RUNTIME_MAX_SECONDS = 1800;
/** The process's name in the logs. */
const NAME = "lighttpd";
/** The realm of the basic-auth challenge. */
const REALM = "manifests";

export interface GitUser {
    readonly username: string;
    readonly password: string;
}

export interface GitServerOptions {
    /** May fetch only: Argo CD's read-only deploy token. */
    readonly reader: GitUser;
    /** May fetch and push: the app pipeline's GITOPS_TOKEN (update-manifests.sh sends user `oauth2`). */
    readonly writer: GitUser;
    /** The IPv4 address it listens on and its certificate names: 127.0.0.1 unless given (the lab's host address). */
    readonly address?: string;
    /** The port: a free one unless given. */
    readonly port?: number;
}

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function checkUser(role: string, user: GitUser): void {
    if (typeof user?.username !== "string" || !USERNAME.test(user.username)) {
        throw new Error(`GitServer: ${role}.username is ${JSON.stringify(user?.username)}; allowed: letters, digits, '.', '_', '-' (at most 64, starting with a letter or digit)`);
    }
    // The password is never echoed.
    if (typeof user.password !== "string" || user.password.length === 0 || /[\r\n\0]/.test(user.password)) {
        throw new Error(`GitServer: ${role}.password is empty or holds a line break or NUL; allowed: one non-empty line`);
    }
}

/** Throws unless `value` is a relative `/`-separated path with no empty, `.` or `..` segment. */
function checkRelativePath(where: string, value: string): void {
    const ok =
        typeof value === "string" &&
        value.length > 0 &&
        !value.includes("\\") &&
        !/[\s\0"]/.test(value) &&
        value.split("/").every((s) => s !== "" && s !== "." && s !== "..");
    if (!ok) {
        throw new Error(`GitServer: ${where} is ${JSON.stringify(value)}; allowed: a relative path (no leading '/', no '.' or '..' or empty segment, no whitespace)`);
    }
}

/** A string literal of lighttpd's configuration language. */
function lighttpdString(value: string): string {
    return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** An `auth.require` block that admits the named users only. */
function requireUsers(users: readonly string[]): string {
    const require = users.map((u) => `user=${u}`).join("|");
    return `auth.require = ( "" => ( "method" => "basic", "realm" => ${lighttpdString(REALM)}, "require" => ${lighttpdString(require)} ) )`;
}

/**
 * lighttpd's configuration. Pure. Everything under `/git/` runs git-http-backend with basic auth;
 * the writer is the only user admitted by default, and the reader is added for exactly the two
 * requests of a smart-HTTP fetch. Allowing the reader's requests (instead of denying the push
 * requests) leaves no spelling of a push (`service=git%2Dreceive-pack`, a repeated `service=`,
 * the dumb protocol) that the reader could get through.
 */
export function lighttpdConfig(p: { dir: string; address?: string; port: number; reader: string; writer: string }): string {
    const file = (name: string) => lighttpdString(path.join(p.dir, name));
    return `# lighttpd for the manifests repository: git-http-backend behind basic auth over TLS, on loopback.
server.modules = ( "mod_access", "mod_alias", "mod_auth", "mod_authn_file", "mod_setenv", "mod_cgi", "mod_accesslog", "mod_openssl" )
server.bind = ${lighttpdString(p.address ?? "127.0.0.1")}
server.port = ${p.port}
ssl.engine = "enable"
ssl.pemfile = ${file("pki/server.crt")}
ssl.privkey = ${file("pki/server.key")}
server.document-root = ${file("www")}
server.upload-dirs = ( ${file("tmp")} )
server.errorlog = ${file("error.log")}
accesslog.filename = ${file("access.log")}
server.max-request-size = 65536

auth.backend = "htpasswd"
auth.backend.htpasswd.userfile = ${file("htpasswd")}

alias.url = ( "/git/" => ${lighttpdString(`${GIT_HTTP_BACKEND}/`)} )

$HTTP["url"] =~ "^/git/" {
  cgi.assign = ( "" => "" )
  setenv.set-environment = (
    "GIT_PROJECT_ROOT" => ${file("repos")},
    "GIT_HTTP_EXPORT_ALL" => "1",
    "GIT_CONFIG_NOSYSTEM" => "1",
    "HOME" => ${file("home")}
  )
  # By default only the writer: pushes, their advertisement and anything not listed below.
  ${requireUsers([p.writer])}
  # A smart-HTTP fetch: both users.
  $HTTP["url"] =~ "^/git/.+/info/refs$" {
    $HTTP["querystring"] == "service=git-upload-pack" {
      ${requireUsers([p.reader, p.writer])}
    }
  }
  $HTTP["url"] =~ "^/git/.+/git-upload-pack$" {
    $HTTP["querystring"] == "" {
      ${requireUsers([p.reader, p.writer])}
    }
  }
}
`;
}

/** An environment for git on this host: no system or global config, no prompt, fixed identity. */
function gitEnv(home: string): NodeJS.ProcessEnv {
    return {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: home,
        LANG: "C.UTF-8",
        GIT_CONFIG_NOSYSTEM: "1",
        GIT_CONFIG_GLOBAL: "/dev/null",
        GIT_TERMINAL_PROMPT: "0",
        GIT_AUTHOR_NAME: "Platform team",
        GIT_AUTHOR_EMAIL: "platform@example.eu",
        GIT_COMMITTER_NAME: "Platform team",
        GIT_COMMITTER_EMAIL: "platform@example.eu",
    };
}

/** lighttpd from Debian's package; /usr/sbin is not on every user's PATH. */
function lighttpdBin(): string {
    if (!existsSync(MOD_OPENSSL)) {
        throw new Error(`${MOD_OPENSSL} is missing: run \`bash test/support/host-tools.sh ensure\` (as root on Debian) or \`apt-get install lighttpd lighttpd-mod-openssl\``);
    }
    for (const candidate of ["/usr/sbin/lighttpd", "/usr/bin/lighttpd"]) {
        if (existsSync(candidate)) {
            return candidate;
        }
    }
    throw new Error("lighttpd is not installed: run `bash test/support/host-tools.sh ensure` (as root on Debian) or `apt-get install lighttpd lighttpd-mod-openssl`");
}

function openssl(args: string[]): void {
    const r = spawnSync("openssl", args, { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) {
        throw new Error(`openssl ${args[0]} failed (exit ${r.status ?? "timeout"}): ${r.stderr ?? String(r.error ?? "")}`);
    }
}

/** A CA of its own and a serving certificate for `address` (ECDSA P-256, two days), in `dir`. */
function makeServerPki(dir: string, address: string): void {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const f = (n: string) => path.join(dir, n);
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")]);
    openssl([
        "req", "-x509", "-new", "-key", f("ca.key"), "-subj", "/O=zerotouch/CN=zt-test-git-ca", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", f("ca.crt"),
    ]);
    writeFileSync(f("server.ext"), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:${address},DNS:localhost\n`);
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("server.key")]);
    openssl(["req", "-new", "-key", f("server.key"), "-subj", `/O=zerotouch/CN=${address}`, "-out", f("server.csr")]);
    openssl(["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-set_serial", String(Date.now()), "-days", "2", "-extfile", f("server.ext"), "-out", f("server.crt")]);
}

export class GitServer {
    /** The temporary folder: repositories, htpasswd, configuration and logs. Removed by stop(). */
    readonly dir = mkdtempSync(path.join(tmpdir(), "zt-git-"));
    /** The CA that signed the server's certificate (PEM file): git's GIT_SSL_CAINFO. Written by start(). */
    readonly caFile = path.join(this.dir, "pki", "ca.crt");
    private readonly reposDir = path.join(this.dir, "repos");
    private readonly home = path.join(this.dir, "home");
    private readonly errorLog = path.join(this.dir, "error.log");
    private readonly processes = new Processes(this.dir, RUNTIME_MAX_SECONDS);
    private readonly options: GitServerOptions;
    private port = 0;
    private readonly address: string;
    private state: "new" | "started" | "stopped" = "new";

    constructor(options: GitServerOptions) {
        checkUser("reader", options.reader);
        checkUser("writer", options.writer);
        if (options.reader.username === options.writer.username) {
            throw new Error(`GitServer: reader and writer are both ${JSON.stringify(options.writer.username)}; allowed: two different users`);
        }
        this.options = options;
        this.address = options.address ?? "127.0.0.1";
        if (!isIPv4(this.address)) {
            throw new Error(`GitServer: address is ${JSON.stringify(options.address)}; allowed: an IPv4 address`);
        }
        for (const d of [this.reposDir, this.home, path.join(this.dir, "www"), path.join(this.dir, "tmp")]) {
            mkdirSync(d, { recursive: true });
        }
    }

    /** Where the repositories are served, e.g. `https://127.0.0.1:40123/git`. Set by start(). */
    get baseUrl(): string {
        if (this.port === 0) {
            throw new Error("GitServer: not started (call start() first)");
        }
        // The URL as written (no `:443`), which is how clients and Argo CD compare repositories.
        return new URL(`https://${this.address}:${this.port}/git`).href;
    }

    /** The CA certificate (PEM) that clients trust for the server: Argo CD's TLS certificate for its address. */
    get caPem(): string {
        if (this.port === 0) {
            throw new Error("GitServer: not started (call start() first)");
        }
        return readFileSync(this.caFile, "utf8");
    }

    /** Makes the certificates and the htpasswd file, starts lighttpd; resolves once it answers HTTPS. */
    async start(timeoutSec = 30): Promise<void> {
        if (this.state !== "new") {
            throw new Error("GitServer: start() is called once, before stop()");
        }
        this.state = "started";
        const bin = lighttpdBin();
        if (!existsSync(GIT_HTTP_BACKEND)) {
            throw new Error(`${GIT_HTTP_BACKEND} is missing: run \`bash test/support/host-tools.sh ensure git\``);
        }
        makeServerPki(path.dirname(this.caFile), this.address);
        const { reader, writer } = this.options;
        writeFileSync(path.join(this.dir, "htpasswd"), [reader, writer].map((u) => `${u.username}:${this.hash(u.password)}\n`).join(""), { mode: 0o600 });

        this.port = this.options.port ?? (await freePort());
        const config = path.join(this.dir, "lighttpd.conf");
        writeFileSync(config, lighttpdConfig({ dir: this.dir, address: this.address, port: this.port, reader: reader.username, writer: writer.username }));
        const check = spawnSync(bin, ["-tt", "-f", config], { encoding: "utf8", timeout: 30_000 });
        if (check.status !== 0) {
            throw new Error(`lighttpd refused its configuration ${config} (exit ${check.status ?? "timeout"}):\n${check.stdout}${check.stderr}`);
        }

        // Bounded, in its own process group, its output in lighttpd.log (test/support/processes.ts).
        this.processes.start(NAME, bin, ["-D", "-f", config], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" } });
        await waitFor(
            `lighttpd answering on ${this.baseUrl}`,
            async () => (await this.probe()) !== undefined,
            timeoutSec,
            () => {
                if (this.processes.exited() !== undefined) {
                    throw new Error(`lighttpd exited on port ${this.port}:\n${this.logTail()}`);
                }
            },
            () => this.logTail(),
        );
    }

    /**
     * Creates the bare repository `repoPath` (e.g. `platform/manifests.git`) under the served
     * root, with one commit on `branch` holding `files` (path → content). Returns its clone URL,
     * without credentials. Needs start() first (the URL holds the port).
     */
    createRepo(repoPath: string, files: Record<string, string>, message = "initial layout", branch = "main"): string {
        checkRelativePath("repoPath", repoPath);
        checkRelativePath("branch", branch);
        const url = `${this.baseUrl}/${repoPath}`;
        const bare = this.bareRepo(repoPath);
        if (existsSync(bare)) {
            throw new Error(`GitServer: repository ${repoPath} exists already`);
        }
        mkdirSync(path.dirname(bare), { recursive: true });
        this.git(this.dir, "init", "--quiet", "--bare", `--initial-branch=${branch}`, bare);

        const work = mkdtempSync(path.join(this.dir, "seed-"));
        try {
            this.git(work, "init", "--quiet", `--initial-branch=${branch}`);
            for (const [file, content] of Object.entries(files)) {
                checkRelativePath(`file ${JSON.stringify(file)}`, file);
                mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
                writeFileSync(path.join(work, file), content);
            }
            this.git(work, "add", "--all");
            this.git(work, "commit", "--quiet", "--allow-empty", "-m", message);
            this.git(work, "push", "--quiet", bare, `HEAD:refs/heads/${branch}`);
        } finally {
            rmSync(work, { recursive: true, force: true });
        }
        return url;
    }

    /** The commit `branch` points to, read from the bare repository on disk. */
    headOf(repoPath: string, branch = "main"): string {
        const r = spawnSync("git", ["--git-dir", this.bareRepo(repoPath), "rev-parse", "--verify", "--quiet", `refs/heads/${branch}^{commit}`], {
            env: gitEnv(this.home),
            encoding: "utf8",
            timeout: 30_000,
        });
        if (r.status !== 0) {
            throw new Error(`GitServer: no branch ${JSON.stringify(branch)} in ${repoPath} (git rev-parse exit ${r.status ?? "timeout"}) ${r.stderr ?? ""}`.trim());
        }
        return r.stdout.trim();
    }

    /** The bare repository's folder on disk. */
    bareRepo(repoPath: string): string {
        checkRelativePath("repoPath", repoPath);
        return path.join(this.reposDir, repoPath);
    }

    /** The last lines of lighttpd's error log (git-http-backend's stderr lands there too) and of its output. */
    logTail(lines = 30): string {
        let errors = "(none)";
        try {
            errors = readFileSync(this.errorLog, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
        } catch {
            // not written yet
        }
        return `lighttpd error log:\n${errors}\nlighttpd output:\n${this.processes.logTail(NAME, lines).trimEnd() || "(none)"}`;
    }

    /**
     * Stops lighttpd with its whole process group: SIGTERM, then SIGKILL after a bounded wait;
     * removes the temporary folder. Safe to call twice, or without start().
     */
    stop(): void {
        this.state = "stopped";
        this.processes.stop(10);
        rmSync(this.dir, { recursive: true, force: true });
    }

    /** A crypt(3) SHA-512 hash, which lighttpd's htpasswd backend checks; the password goes on stdin. */
    private hash(password: string): string {
        const r = spawnSync("openssl", ["passwd", "-6", "-stdin"], { input: `${password}\n`, encoding: "utf8", timeout: 30_000 });
        const out = (r.stdout ?? "").trim();
        if (r.status !== 0 || !out.startsWith("$6$")) {
            throw new Error(`openssl passwd -6 failed (exit ${r.status ?? "timeout"}): ${r.stderr ?? String(r.error ?? "")}`);
        }
        return out;
    }

    private git(cwd: string, ...args: string[]): string {
        const r = spawnSync("git", args, { cwd, env: gitEnv(this.home), encoding: "utf8", timeout: 60_000 });
        if (r.status !== 0) {
            throw new Error(`git ${args.join(" ")} failed (exit ${r.status ?? "timeout"}): ${r.stderr ?? String(r.error ?? "")}`);
        }
        return r.stdout;
    }

    /** The status of GET /git/ over TLS with the server's CA, or undefined when nothing answers. */
    private probe(): Promise<number | undefined> {
        return new Promise((resolve) => {
            const req = https.get(`${this.baseUrl}/`, { ca: readFileSync(this.caFile), timeout: 2000 }, (res) => {
                res.resume();
                resolve(res.statusCode);
            });
            req.on("timeout", () => req.destroy());
            req.on("error", () => resolve(undefined));
        });
    }
}
