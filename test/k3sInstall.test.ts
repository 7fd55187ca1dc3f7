import { spawnSync } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import {
    DEFAULT_K3S_VERSION,
    K3S_RELEASES,
    K3S_SERVER_SCRIPT,
    k3sAgentStep,
    k3sBinaryUrl,
    k3sInstallStep,
    k3sServerArgs,
    k3sServerStep,
    resolveK3sSource,
} from "../components/k8s/k3s";
import { stepPayload } from "../components/lib/nodeScript";
import { remoteRunner } from "../components/lib/script";
import { itAsRoot } from "./support/host";

/**
 * The real k3s scripts, run on this host the way a node runs them (the fixed runner reading the
 * payload from stdin), with the binary and state directories moved into a scratch directory.
 * The install script's "release" is a file:// mirror holding a fake k3s: a shell script that
 * leaves a marker file when it is executed, so the tests see whether anything downloaded was
 * ever run. The server and agent scripts are run up to their refusals only, which come before
 * they write anything on the host.
 */

const VERSION = "v1.99.0+k3s1";
const API = "api.cluster.example";
let dir: string;
let marker: string;
let binDir: string;
let stateDir: string;
let mirror: string;
let fakeSha: string;

function fakeK3s(version: string): string {
    return `#!/bin/sh\ntouch '${marker}'\necho 'k3s version ${version} (0123abcd)'\necho 'go version go1.26'\n`;
}

beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "zt-k3s-install-"));
    marker = path.join(dir, "executed");
    binDir = path.join(dir, "bin");
    stateDir = path.join(dir, "state");
    mirror = path.join(dir, "mirror");
    // The mirror is laid out like GitHub's: <base>/<version>/k3s; the URL has the version encoded.
    fs.mkdirSync(path.join(mirror, VERSION), { recursive: true });
    const text = fakeK3s(VERSION);
    fs.writeFileSync(path.join(mirror, VERSION, "k3s"), text, { mode: 0o644 });
    fs.writeFileSync(path.join(mirror, VERSION, "k3s-arm64"), text, { mode: 0o644 });
    fakeSha = createHash("sha256").update(text).digest("hex");
});

afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
    readonly status: number | null;
    readonly stdout: string;
    readonly stderr: string;
    readonly result: Record<string, unknown>;
}

function run(stepArgs: Parameters<typeof resolveK3sSource>[0], action: "create" | "delete" = "create", node = "cp-1"): Run {
    const step = k3sInstallStep(node, resolveK3sSource(stepArgs));
    const payload = stepPayload(step);
    const p = spawnSync("bash", ["--norc", "-c", remoteRunner("root", action)], {
        input: payload.stdin,
        encoding: "utf8",
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ZT_K3S_BIN_DIR: binDir, ZT_K3S_STATE_DIR: stateDir },
        timeout: 60000,
    });
    const lines = p.stdout.trim().split("\n");
    return { status: p.status, stdout: p.stdout, stderr: p.stderr, result: JSON.parse(lines[lines.length - 1]) as Record<string, unknown> };
}

const release = (sha256: string) => ({
    source: "release" as const,
    version: VERSION,
    sha256: { amd64: sha256, arm64: sha256 },
    releaseBaseUrl: `file://${mirror}`,
});

describe("k3s-install.sh, source release", () => {
    it("refuses a binary whose sha256 does not match: exit 3, names node, URL and both sums, runs and installs nothing", () => {
        const wrong = "0".repeat(64);
        const r = run(release(wrong));
        expect(r.status).toBe(3);
        const url = `file://${mirror}/v1.99.0%2Bk3s1/k3s`;
        expect(r.stderr).toContain("node cp-1");
        expect(r.stderr).toContain(url);
        expect(r.stderr).toContain(`expected ${wrong}`);
        expect(r.stderr).toContain(`sha256 ${fakeSha}`);
        expect(r.result).toMatchObject({ node: "cp-1", changed: false, verified: false, expectedSha256: wrong, actualSha256: fakeSha });
        expect(fs.existsSync(marker)).toBe(false);
        expect(fs.readdirSync(binDir)).toEqual([]);
        // The download directory went with the script; no owner was recorded.
        expect(fs.readdirSync(stateDir)).toEqual([]);
        expect(fs.statSync(stateDir).mode & 0o777).toBe(0o700);
    });

    it("installs a verified binary with mode 0755, then changes nothing on a second run", () => {
        const first = run(release(fakeSha));
        expect([first.status, first.stderr]).toEqual([0, expect.any(String)]);
        expect(first.result).toMatchObject({ node: "cp-1", action: "create", changed: true, arch: expect.stringMatching(/^(amd64|arm64)$/), sha256: fakeSha });
        const installed = path.join(binDir, "k3s");
        expect(fs.statSync(installed).mode & 0o777).toBe(0o755);
        expect(fs.readFileSync(installed, "utf8")).toBe(fakeK3s(VERSION));
        // Run once, after verification, to check the version it reports.
        expect(fs.existsSync(marker)).toBe(true);
        expect(fs.readdirSync(binDir)).toEqual(["k3s"]);
        expect(fs.readdirSync(stateDir).sort()).toEqual(["install.owner", "install.sha256"]);

        const second = run(release(fakeSha));
        expect(second.status).toBe(0);
        expect(second.result).toMatchObject({ changed: false });
        expect(second.stderr).toContain("nothing to do");
    });

    it("refuses a verified binary that reports another version (exit 3)", () => {
        fs.writeFileSync(path.join(mirror, VERSION, "k3s"), fakeK3s("v1.98.0+k3s1"));
        fs.writeFileSync(path.join(mirror, VERSION, "k3s-arm64"), fakeK3s("v1.98.0+k3s1"));
        const sha = createHash("sha256").update(fakeK3s("v1.98.0+k3s1")).digest("hex");
        const r = run(release(sha));
        expect(r.status).toBe(3);
        expect(r.stderr).toContain("reports version 'v1.98.0+k3s1', expected v1.99.0+k3s1");
    });

    it("fails (exit 1) naming the node and URL when the download fails", () => {
        fs.rmSync(path.join(mirror, VERSION), { recursive: true });
        const p = spawnSync("bash", ["--norc", "-c", remoteRunner("root", "create")], {
            input: stepPayload(k3sInstallStep("cp-2", resolveK3sSource(release(fakeSha)))).stdin,
            encoding: "utf8",
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ZT_K3S_BIN_DIR: binDir, ZT_K3S_STATE_DIR: stateDir },
        });
        expect(p.status).toBe(1);
        expect(p.stderr).toContain(`node cp-2: downloading file://${mirror}/v1.99.0%2Bk3s1/k3s failed`);
        expect(fs.readdirSync(binDir)).toEqual([]);
    });

    it("delete leaves k3s alone when a newer install step owns the node", () => {
        expect(run(release(fakeSha)).status).toBe(0);
        // Another payload (e.g. the replacement with a new version) claims the node.
        fs.writeFileSync(path.join(stateDir, "install.owner"), "f".repeat(64) + "\n");
        const r = run(release(fakeSha), "delete");
        expect(r.status).toBe(0);
        expect(r.result).toMatchObject({ action: "delete", changed: false, superseded: true });
        expect(fs.existsSync(path.join(binDir, "k3s"))).toBe(true);
    });
});

describe("k3s-install.sh, source preinstalled", () => {
    const preinstalled = { source: "preinstalled" as const, version: VERSION, sha256: { amd64: "a".repeat(64), arm64: "b".repeat(64) } };

    it("accepts an installed k3s of the pinned version and downloads nothing", () => {
        fs.mkdirSync(binDir);
        fs.writeFileSync(path.join(binDir, "k3s"), fakeK3s(VERSION), { mode: 0o755 });
        const r = run(preinstalled);
        expect(r.status).toBe(0);
        expect(r.result).toMatchObject({ source: "preinstalled", changed: false });
        expect(fs.readdirSync(stateDir)).toEqual(["install.owner"]);
    });

    it("refuses another version (exit 3), naming both", () => {
        fs.mkdirSync(binDir);
        fs.writeFileSync(path.join(binDir, "k3s"), fakeK3s("v1.35.0+k3s1"), { mode: 0o755 });
        const r = run(preinstalled);
        expect(r.status).toBe(3);
        expect(r.stderr).toContain("node cp-1: the preinstalled");
        expect(r.stderr).toContain("reports version 'v1.35.0+k3s1', the pinned version is v1.99.0+k3s1");
    });

    it("refuses a missing binary (exit 3)", () => {
        const r = spawnSync("bash", ["--norc", "-c", remoteRunner("root", "create")], {
            input: stepPayload(k3sInstallStep("cp-1", resolveK3sSource(preinstalled))).stdin,
            encoding: "utf8",
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ZT_K3S_BIN_DIR: binDir, ZT_K3S_STATE_DIR: stateDir },
        });
        expect(r.status).toBe(3);
        expect(r.stderr).toContain("is missing or not executable");
    });
});

describe("the pinned release and the install step", () => {
    it("pins the default version with a sha256 for each architecture", () => {
        expect(DEFAULT_K3S_VERSION).toMatch(/^v1\.3[0-9]\.[0-9]+\+k3s[0-9]+$/);
        const pinned = K3S_RELEASES[DEFAULT_K3S_VERSION];
        expect(pinned.sha256.amd64).toMatch(/^[0-9a-f]{64}$/);
        expect(pinned.sha256.arm64).toMatch(/^[0-9a-f]{64}$/);
        expect(pinned.sha256.amd64).not.toBe(pinned.sha256.arm64);
    });

    it("downloads from GitHub's release URLs by default, the version URL-encoded", () => {
        expect(k3sBinaryUrl("v1.36.4+k3s1", "amd64")).toBe("https://github.com/k3s-io/k3s/releases/download/v1.36.4%2Bk3s1/k3s");
        expect(k3sBinaryUrl("v1.36.4+k3s1", "arm64")).toBe("https://github.com/k3s-io/k3s/releases/download/v1.36.4%2Bk3s1/k3s-arm64");
        const step = k3sInstallStep("cp-1", resolveK3sSource({ source: "release" }));
        expect(step).toMatchObject({ name: "install", hasDelete: true, sensitive: false });
        expect(step.params).toEqual({
            ZT_NODE: "cp-1",
            ZT_K3S_SOURCE: "release",
            ZT_K3S_VERSION: DEFAULT_K3S_VERSION,
            ZT_K3S_URL_AMD64: k3sBinaryUrl(DEFAULT_K3S_VERSION, "amd64"),
            ZT_K3S_SHA256_AMD64: K3S_RELEASES[DEFAULT_K3S_VERSION].sha256.amd64,
            ZT_K3S_URL_ARM64: k3sBinaryUrl(DEFAULT_K3S_VERSION, "arm64"),
            ZT_K3S_SHA256_ARM64: K3S_RELEASES[DEFAULT_K3S_VERSION].sha256.arm64,
        });
        const pre = k3sInstallStep("cp-1", resolveK3sSource({ source: "preinstalled" }));
        expect(pre.params).toEqual({ ZT_NODE: "cp-1", ZT_K3S_SOURCE: "preinstalled", ZT_K3S_VERSION: DEFAULT_K3S_VERSION });
    });

    it.each([
        [{ source: "binary" }, /k3s: k3s.source is "binary"; allowed: release or preinstalled/],
        [{ source: "release", version: "latest" }, /k3s.version is "latest"; allowed: a k3s release such as v1.36.4\+k3s1/],
        [{ source: "release", version: "v1.20.0+k3s1" }, /k3s.sha256 is undefined; allowed: the sha256 of the k3s and k3s-arm64 binaries of v1.20.0\+k3s1/],
        [
            { source: "release", sha256: { amd64: "a".repeat(64), arm64: K3S_RELEASES[DEFAULT_K3S_VERSION].sha256.arm64 } },
            /k3s.sha256.amd64 is "a{64}"; allowed: the published checksum of v1.36.4\+k3s1, 835873f3/,
        ],
        [{ source: "release", version: "v1.99.0+k3s1", sha256: { amd64: "A".repeat(64), arm64: "b".repeat(64) } }, /k3s.sha256.amd64 is "A{64}"/],
        [{ source: "release", releaseBaseUrl: "http://mirror.example/k3s" }, /k3s.releaseBaseUrl is "http:\/\/mirror.example\/k3s"; allowed: an https:\/\/ or file:\/\/\//],
        [{ source: "release", releaseBaseUrl: "https://mirror.example/k3s/" }, /without a trailing slash/],
        [{ source: "release", readyTimeoutSeconds: 5 }, /k3s.readyTimeoutSeconds is 5; allowed: a whole number of seconds from 10 to 3600/],
    ])("refuses %j naming the key, the value and what is allowed", (spec, message) => {
        expect(() => resolveK3sSource(spec as Parameters<typeof resolveK3sSource>[0])).toThrow(message);
    });

    it("accepts a file:// mirror and an https mirror", () => {
        expect(resolveK3sSource({ source: "release", releaseBaseUrl: "file:///srv/k3s" }).releaseBaseUrl).toBe("file:///srv/k3s");
        expect(resolveK3sSource({ source: "release", releaseBaseUrl: "https://mirror.example:8443/k3s" }).releaseBaseUrl).toBe(
            "https://mirror.example:8443/k3s",
        );
    });
});

// --- the service scripts, run up to their refusals (they exit before touching the system) -----

describe("k3s-server.sh and k3s-agent.sh", () => {
    const k3s = resolveK3sSource({ source: "release" });
    const cp1 = { node: "cp-1", address: "203.0.113.11", region: "oslo", zone: "osl1" };
    const shared = { apiEndpoint: API, datastoreEndpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"] };
    const pem = (kind: string, body: string) => `-----BEGIN ${kind}-----\n${body}\n-----END ${kind}-----\n`;
    const secrets = {
        token: "t".repeat(32),
        agentToken: "a".repeat(32),
        etcdCaPem: pem("CERTIFICATE", "Y2E="),
        etcdCertPem: pem("CERTIFICATE", "Y2VydA=="),
        etcdKeyPem: pem("EC PRIVATE KEY", "a2V5"),
    };
    let scratch: string;

    beforeEach(() => {
        scratch = fs.mkdtempSync(path.join(os.tmpdir(), "zt-k3s-server-"));
    });
    afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

    /** Runs a step's payload with the binary and state directories in scratch (no k3s there). */
    function runStep(step: ReturnType<typeof k3sServerStep>): { status: number | null; stderr: string; stdout: string } {
        return spawnSync("bash", ["--norc", "-c", remoteRunner("root", "create")], {
            input: stepPayload(step).stdin,
            encoding: "utf8",
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ZT_K3S_BIN_DIR: path.join(scratch, "bin"), ZT_K3S_STATE_DIR: path.join(scratch, "state") },
        });
    }

    itAsRoot("refuses --disable-etcd and secrets on the command line (exit 2)", () => {
        const cases: [string, string][] = [
            ["--disable-etcd", "'--disable-etcd' is not allowed: k3s uses the external etcd"],
            ["--cluster-init", "'--cluster-init' is not allowed"],
            [`--token=${"x".repeat(20)}`, "secrets go into files (--token-file), never on the command line"],
            ["--node-label=a b", "'--node-label=a b' is not a --flag or --flag=value of plain characters"],
            ["--kubelet-arg=x=$(id)", "is not a --flag or --flag=value of plain characters"],
        ];
        for (const [bad, message] of cases) {
            const step = k3sServerStep(cp1, shared, k3s, secrets);
            const r = runStep({ ...step, params: { ...step.params, ZT_K3S_ARGS: [...(step.params.ZT_K3S_ARGS as string[]), bad] } });
            expect([bad, r.status, r.stderr]).toEqual([bad, 2, expect.stringContaining(message)]);
            expect(r.stderr).not.toContain("x".repeat(20));
        }
    });

    itAsRoot("refuses a malformed key without printing it (exit 2)", () => {
        const step = k3sServerStep(cp1, shared, k3s, secrets);
        const r = runStep({ ...step, params: { ...step.params, ZT_ETCD_KEY_PEM: "garbage-KEYSECRET" } });
        expect(r.status).toBe(2);
        expect(r.stderr).toContain("ZT_ETCD_KEY_PEM must be a PEM block (value not shown) (node cp-1)");
        expect(r.stderr + r.stdout).not.toContain("KEYSECRET");
    });

    itAsRoot("refuses to start without the pinned binary (exit 3), before writing any secret", () => {
        for (const step of [k3sServerStep(cp1, shared, k3s, secrets), k3sAgentStep({ ...cp1, node: "w-1" }, API, k3s, secrets.agentToken)]) {
            const r = runStep(step);
            expect([step.name, r.status]).toEqual([step.name, 3]);
            expect(r.stderr).toContain(`reports version 'none', the pinned version is ${k3s.version}`);
            expect(r.stderr + r.stdout).not.toContain(secrets.token);
            expect(r.stderr + r.stdout).not.toContain(secrets.agentToken);
        }
    });

    it("renders the unit's ExecStart from the flags, one per line", () => {
        const lib = path.join(path.dirname(K3S_SERVER_SCRIPT), "lib", "k3s.sh");
        const args = k3sServerArgs(cp1, shared);
        const r = spawnSync("bash", ["-c", `. '${lib}'; k3s_render_unit 'k3s server' "$ARGS"`], {
            encoding: "utf8",
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ARGS: args.join("\n") },
        });
        expect(r.status).toBe(0);
        expect(r.stdout).toContain(["ExecStart=/usr/local/bin/k3s", ...args.map((a) => `    ${a}`)].join(" \\\n") + "\n\n[Install]");
        expect(r.stdout).toMatch(/^Type=notify$/m);
        expect(r.stdout).toMatch(/^\[Install\]\nWantedBy=multi-user.target$/m);
    });
});
