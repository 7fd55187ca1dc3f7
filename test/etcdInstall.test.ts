import { spawnSync } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import {
    DEFAULT_ETCD_BASE_URL,
    DEFAULT_ETCD_BIN_DIR,
    DEFAULT_ETCD_USER,
    DEFAULT_ETCD_VERSION,
    ETCD_ARCHES,
    ETCD_INSTALL_SCRIPT,
    ETCD_RELEASES,
    EtcdInstallArgs,
    etcdInstallSteps,
    etcdReleaseUrl,
    parseEtcdInstallResult,
} from "../components/etcd/release";
import { ETCD_BINARY } from "../components/etcd/render";
import { NodeStep, stepPayload } from "../components/lib/nodeScript";
import { remoteRunner } from "../components/lib/script";
import { describeAsRoot } from "./support/host";
import { expectJsonLibraryAhead, plainStep } from "./support/nodeSteps";
import { Run, runBash } from "./support/scriptRun";

const HEX64 = /^[0-9a-f]{64}$/;

describe("the pinned etcd releases", () => {
    it("holds a sha256 of 64 lowercase hex digits for both architectures of every version, each one distinct", () => {
        const all: string[] = [];
        for (const [version, sums] of Object.entries(ETCD_RELEASES)) {
            expect(version).toMatch(/^\d+\.\d+\.\d+$/);
            expect(Object.keys(sums).sort()).toEqual([...ETCD_ARCHES].sort());
            for (const arch of ETCD_ARCHES) {
                expect(sums[arch]).toMatch(HEX64);
                all.push(sums[arch]);
            }
        }
        expect(new Set(all).size).toBe(all.length);
    });

    it("pins a 3.5 and a 3.4 release, and the default is pinned", () => {
        const versions = Object.keys(ETCD_RELEASES);
        expect(versions.some((v) => v.startsWith("3.5."))).toBe(true);
        expect(versions.some((v) => v.startsWith("3.4."))).toBe(true);
        expect(ETCD_RELEASES[DEFAULT_ETCD_VERSION]).toBeDefined();
    });

    it("installs next to the binary the unit runs", () => {
        expect(DEFAULT_ETCD_BIN_DIR).toBe("/usr/local/bin");
        expect(path.posix.join(DEFAULT_ETCD_BIN_DIR, "etcd")).toBe(ETCD_BINARY.release);
    });

    it("builds the URL of etcd's own release layout", () => {
        expect(etcdReleaseUrl("3.5.21", "amd64")).toBe(
            "https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz",
        );
        expect(etcdReleaseUrl("3.4.13", "arm64", DEFAULT_ETCD_BASE_URL)).toBe(
            "https://github.com/etcd-io/etcd/releases/download/v3.4.13/etcd-v3.4.13-linux-arm64.tar.gz",
        );
        expect(etcdReleaseUrl("3.5.12", "amd64", "file:///srv/mirror/etcd/")).toBe(
            "file:///srv/mirror/etcd/v3.5.12/etcd-v3.5.12-linux-amd64.tar.gz",
        );
        expect(() => etcdReleaseUrl("v3.5.21", "amd64")).toThrow(/version "v3.5.21" is not a release version/);
        expect(() => etcdReleaseUrl("3.5.21", "s390x" as never)).toThrow(/arch "s390x" is not one of amd64, arm64/);
    });
});

describe("etcdInstallSteps", () => {
    const release: EtcdInstallArgs = { node: "cp-1", source: "release", version: "3.5.21" };

    it("release: one step, install, no delete, not sensitive, with the JSON library; both pinned tarballs", () => {
        const steps = etcdInstallSteps(release);
        expect(steps).toEqual([
            plainStep("install", ETCD_INSTALL_SCRIPT, {
                ZT_NODE: "cp-1",
                ZT_SOURCE: "release",
                ZT_VERSION: "3.5.21",
                ZT_USER: DEFAULT_ETCD_USER,
                ZT_BIN_DIR: "/usr/local/bin",
                ZT_URL_AMD64: "https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz",
                ZT_SHA256_AMD64: ETCD_RELEASES["3.5.21"].amd64,
                ZT_URL_ARM64: "https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-arm64.tar.gz",
                ZT_SHA256_ARM64: ETCD_RELEASES["3.5.21"].arm64,
            }),
        ]);
        expectJsonLibraryAhead(steps[0], "# etcd install: puts etcd on a node");
    });

    it("preinstalled: only node, source, version and user", () => {
        const [step] = etcdInstallSteps({ node: "cp-2", source: "preinstalled", version: "3.4", user: "etcd" });
        expect(step.params).toEqual({ ZT_NODE: "cp-2", ZT_SOURCE: "preinstalled", ZT_VERSION: "3.4", ZT_USER: "etcd" });
    });

    it("takes checksums for a version not in the table, only for the architectures given, lowercased", () => {
        const sum = "AB".repeat(32);
        const [step] = etcdInstallSteps({ ...release, version: "3.5.99", sha256: { arm64: sum }, baseUrl: "https://mirror.example/etcd/" });
        expect(step.params).toEqual({
            ZT_NODE: "cp-1",
            ZT_SOURCE: "release",
            ZT_VERSION: "3.5.99",
            ZT_USER: "etcd",
            ZT_BIN_DIR: "/usr/local/bin",
            ZT_URL_ARM64: "https://mirror.example/etcd/v3.5.99/etcd-v3.5.99-linux-arm64.tar.gz",
            ZT_SHA256_ARM64: "ab".repeat(32),
        });
    });

    it("lets a checksum override the table's for one architecture and keeps the other", () => {
        const sum = "0123456789abcdef".repeat(4);
        const [step] = etcdInstallSteps({ ...release, sha256: { amd64: sum }, binDir: "/opt/etcd/bin", user: "kv" });
        expect(step.params).toMatchObject({
            ZT_SHA256_AMD64: sum,
            ZT_SHA256_ARM64: ETCD_RELEASES["3.5.21"].arm64,
            ZT_BIN_DIR: "/opt/etcd/bin",
            ZT_USER: "kv",
        });
    });

    it("runs again when the version, a checksum or the directory change, and only then", () => {
        const hash = (args: EtcdInstallArgs): string => stepPayload(etcdInstallSteps(args)[0]).hash;
        const base = hash(release);
        expect(hash({ ...release })).toBe(base);
        expect(hash({ ...release, baseUrl: DEFAULT_ETCD_BASE_URL, user: "etcd", binDir: "/usr/local/bin" })).toBe(base);
        expect(hash({ ...release, version: "3.5.12" })).not.toBe(base);
        expect(hash({ ...release, sha256: { arm64: "f".repeat(64) } })).not.toBe(base);
        expect(hash({ ...release, binDir: "/opt/bin" })).not.toBe(base);
    });

    it.each<[string, Partial<EtcdInstallArgs> & Record<string, unknown>, RegExp]>([
        ["a node name that is not a DNS label", { node: "CP_1" }, /node CP_1: node is "CP_1"; a node name must be a DNS label/],
        ["an unknown source", { source: "apt" as never }, /node cp-1: source is "apt"; allowed: release or preinstalled/],
        ["a version with a v", { version: "v3.5.21" }, /node cp-1: version is "v3.5.21"; allowed: a release version such as 3.5.21/],
        ["a release without its patch level", { version: "3.5" }, /version is "3.5"; allowed: a release version/],
        [
            "a version not pinned, without checksums",
            { version: "3.5.99" },
            /node cp-1: version is "3.5.99"; allowed: a pinned release \(3\.5\.21, 3\.5\.12, 3\.4\.13\), or another one with its tarballs' checksums in sha256\.amd64 \/ sha256\.arm64/,
        ],
        ["a checksum that is not 64 hex digits", { sha256: { amd64: "abc123" } }, /node cp-1: sha256.amd64 is "abc123"; allowed: a sha256 of 64 hex digits/],
        ["a checksum with a prefix", { sha256: { amd64: `sha256:${"a".repeat(64)}` } }, /sha256.amd64 is "sha256:a+"/],
        ["a checksum for an unknown architecture", { sha256: { x86_64: "a".repeat(64) } as never }, /sha256 is .*got key "x86_64"/],
        ["a plain http base URL", { baseUrl: "http://mirror.example/etcd" }, /node cp-1: baseUrl is "http:\/\/mirror.example\/etcd"; allowed: an https:\/\/ or file:\/\/ URL \(plain http is refused\)/],
        ["an ftp base URL", { baseUrl: "ftp://mirror.example/etcd" }, /baseUrl is "ftp:/],
        ["a base URL with a blank", { baseUrl: "https://mirror.example/a b" }, /baseUrl is "https:\/\/mirror.example\/a b"/],
        ["root as the user", { user: "root" }, /node cp-1: user is "root"; allowed: an unprivileged Unix user name \(not root\)/],
        ["a user name with capitals", { user: "Etcd" }, /user is "Etcd"/],
        ["a relative directory", { binDir: "usr/local/bin" }, /node cp-1: binDir is "usr\/local\/bin"; allowed: a normalized absolute path other than \//],
        ["/ as the directory", { binDir: "/" }, /binDir is "\/"/],
        ["a directory with a trailing /", { binDir: "/usr/local/bin/" }, /binDir is "\/usr\/local\/bin\/"/],
        ["a directory with ..", { binDir: "/usr/local/../bin" }, /binDir is "\/usr\/local\/..\/bin"/],
        ["a directory with a blank", { binDir: "/opt/etcd bin" }, /binDir is "\/opt\/etcd bin"/],
    ])("release: refuses %s, naming the node, the key and what is allowed", (_name, change, message) => {
        expect(() => etcdInstallSteps({ ...release, ...change })).toThrow(message);
    });

    it.each<[string, Partial<EtcdInstallArgs>, RegExp]>([
        ["a major version alone", { version: "3" }, /node cp-1: version is "3"; allowed: the major.minor a preinstalled etcd must have/],
        ["a base URL", { baseUrl: "https://mirror.example" }, /node cp-1: baseUrl is "https:\/\/mirror.example"; allowed: only with source release/],
        ["checksums", { sha256: { amd64: "a".repeat(64) } }, /node cp-1: sha256 is .*; allowed: only with source release/],
        ["a directory", { binDir: "/usr/bin" }, /node cp-1: binDir is "\/usr\/bin"; allowed: only with source release/],
    ])("preinstalled: refuses %s", (_name, change, message) => {
        expect(() => etcdInstallSteps({ node: "cp-1", source: "preinstalled", version: "3.4", ...change })).toThrow(message);
    });
});

describe("parseEtcdInstallResult", () => {
    const released = {
        node: "cp-1",
        source: "release",
        version: "3.5.21",
        arch: "amd64",
        user: "etcd",
        etcd: "/usr/local/bin/etcd",
        etcdctl: "/usr/local/bin/etcdctl",
        etcdutl: "/usr/local/bin/etcdutl",
        sha256: ETCD_RELEASES["3.5.21"].amd64,
        changed: true,
    };
    const preinstalled = { node: "cp-2", source: "preinstalled", version: "3.4.23", arch: "amd64", user: "etcd", etcd: "/usr/bin/etcd", etcdctl: "/usr/bin/etcdctl", changed: false };

    it("reads the last line, after any other output", () => {
        expect(parseEtcdInstallResult(`progress\n${JSON.stringify(released)}\n\n`)).toEqual(released);
        expect(parseEtcdInstallResult(JSON.stringify(preinstalled))).toEqual(preinstalled);
    });

    it.each<[string, string, RegExp]>([
        ["a release without the tarball's sha256", JSON.stringify({ ...released, sha256: undefined }), /node cp-1: a release result must carry the tarball's sha256/],
        ["a preinstalled result with a sha256", JSON.stringify({ ...preinstalled, sha256: "a".repeat(64) }), /node cp-2: a preinstalled result must not carry/],
        ["an unknown key", JSON.stringify({ ...released, extra: 1 }), /etcd install: unexpected result line: .*extra/],
        ["a relative binary path", JSON.stringify({ ...released, etcdctl: "etcdctl" }), /unexpected result line: etcdctl/],
        ["a version that is not X.Y.Z", JSON.stringify({ ...preinstalled, version: "3.4" }), /unexpected result line: version/],
        ["a delete result", '{"action":"delete","node":"cp-1","changed":false}', /unexpected result line/],
        ["no output", "\n", /etcd install: the script printed no result line/],
        ["output that is not JSON", "tar: not found", /not JSON/],
    ])("refuses %s", (_name, stdout, message) => {
        expect(() => parseEtcdInstallResult(stdout)).toThrow(message);
    });
});

const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** Runs a step as a node does: the fixed runner, the payload (parameters, library, script) on stdin. */
function runStep(step: NodeStep, tmpDir: string): Run {
    const r = spawnSync("bash", ["-c", remoteRunner("root", "create")], {
        env: { PATH: SYSTEM_PATH, TMPDIR: tmpDir },
        input: stepPayload(step).stdin,
        encoding: "utf8",
        timeout: 60_000,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the script by hand, with the given environment only. */
function runScript(env: Record<string, string>): Run {
    return runBash([ETCD_INSTALL_SCRIPT], { PATH: SYSTEM_PATH, ...env }, 60_000);
}

/** sha256 of a file's bytes (read as latin1, which maps each byte to one character and back). */
/** A step's parameters as environment variables. */
const stringParams = (params: NodeStep["params"]): Record<string, string> =>
    Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Array.isArray(v) ? v.join("\n") : String(v)]));
const sha256 = (file: string): string => createHash("sha256").update(fs.readFileSync(file, "latin1"), "latin1").digest("hex");
const userExists = (name: string): boolean => spawnSync("getent", ["passwd", name]).status === 0;
const groupExists = (name: string): boolean => spawnSync("getent", ["group", name]).status === 0;

/** Removes a throwaway user and group the tests made the script create. */
function removeUser(name: string): void {
    if (userExists(name)) {
        spawnSync("userdel", [name]);
    }
    if (groupExists(name)) {
        spawnSync("groupdel", [name]);
    }
}

const HOST_ARCH = os.arch() === "arm64" ? "arm64" : "amd64";
const HOST_ARCH_PARAM = HOST_ARCH.toUpperCase();
const RECORD = ".zerotouch-etcd-install";

describeAsRoot("etcd-install.sh, release: a fake release tarball served by file:// URL", () => {
    // Short enough for useradd; removed again after the tests.
    const user = `zt-etcd-${process.pid % 100000}`;
    let root: string;
    let mirror: string;
    let evil: string;
    let tmpDir: string;
    let markers: string;

    /**
     * Writes a tarball shaped like etcd's (top directory etcd-v<version>-linux-<arch>, the
     * binaries and documentation) under `<into>/v<version>/`, and returns its sha256. The fake
     * etcd answers --version the way etcd does; run any other way it leaves a marker. The fake
     * etcdctl and etcdutl leave one whenever they run. A `hostile` etcd leaves one on every run.
     */
    function fakeRelease(
        into: string,
        version: string,
        opts: { reports?: string; hostile?: boolean; binaries?: readonly string[] } = {},
    ): string {
        const top = `etcd-v${version}-linux-${HOST_ARCH}`;
        const src = fs.mkdtempSync(path.join(root, "src-"));
        const dir = path.join(src, top);
        fs.mkdirSync(path.join(dir, "Documentation"), { recursive: true });
        fs.writeFileSync(path.join(dir, "README.md"), "# etcd\n");
        fs.writeFileSync(path.join(dir, "Documentation", "README.md"), "docs\n");
        const marker = path.join(markers, `${path.basename(into)}-${version}`);
        const leaveMarker = `printf '%s %s\\n' "$0" "$*" >>'${marker}'`;
        const etcd = [
            "#!/bin/sh",
            "# A stand-in for etcd: answers --version like etcd; run any other way, it leaves a marker.",
            ...(opts.hostile === true ? [leaveMarker] : []),
            'if [ "$#" -eq 1 ] && [ "$1" = --version ]; then',
            `  printf 'etcd Version: %s\\nGit SHA: 0000000\\nGo Version: go1.23.7\\nGo OS/Arch: linux/%s\\n' '${opts.reports ?? version}' '${HOST_ARCH}'`,
            "  exit 0",
            "fi",
            leaveMarker,
            "exit 1",
            "",
        ].join("\n");
        const other = ["#!/bin/sh", leaveMarker, "exit 1", ""].join("\n");
        for (const name of opts.binaries ?? ["etcd", "etcdctl", "etcdutl"]) {
            fs.writeFileSync(path.join(dir, name), name === "etcd" ? etcd : `${other}# ${name} ${version}\n`, { mode: 0o755 });
        }
        const out = path.join(into, `v${version}`);
        fs.mkdirSync(out, { recursive: true });
        const tarball = path.join(out, `${top}.tar.gz`);
        const r = spawnSync("tar", ["-czf", tarball, "-C", src, top], { encoding: "utf8" });
        if (r.status !== 0) {
            throw new Error(`tar failed: ${r.stderr}`);
        }
        return sha256(tarball);
    }

    /** The step zerotouch would send, for a tarball in `base` with checksum `sum` for this host's architecture. */
    function step(binDir: string, version: string, sum: string, base = mirror): NodeStep {
        const [s] = etcdInstallSteps({
            node: "cp-1",
            source: "release",
            version,
            user,
            binDir,
            baseUrl: `file://${base}`,
            sha256: { [HOST_ARCH]: sum },
        });
        return s;
    }

    const listing = (dir: string): string[] => fs.readdirSync(dir).sort();
    const snapshot = (dir: string): Record<string, string> =>
        Object.fromEntries(listing(dir).map((f) => [f, sha256(path.join(dir, f))]));
    const markersLeft = (): string[] => fs.readdirSync(markers);

    let good: string;
    let hostile: string;
    let binDir: string;

    beforeAll(() => {
        removeUser(user);
        root = fs.mkdtempSync(path.join(os.tmpdir(), "zt-etcd-install-"));
        mirror = path.join(root, "mirror");
        evil = path.join(root, "evil");
        tmpDir = path.join(root, "tmp");
        markers = path.join(root, "markers");
        binDir = path.join(root, "bin");
        for (const d of [mirror, evil, tmpDir, markers, binDir]) {
            fs.mkdirSync(d);
        }
        good = fakeRelease(mirror, "3.5.21");
        // The same release, tampered with: its etcd would leave a marker on any run at all.
        hostile = fakeRelease(evil, "3.5.21", { hostile: true });
    });

    afterAll(() => {
        removeUser(user);
        fs.rmSync(root, { recursive: true, force: true });
    });

    afterEach(() => {
        // Every run leaves its temporary directory behind it removed.
        expect(fs.readdirSync(tmpDir)).toEqual([]);
    });

    it("right sha256: installs etcd, etcdctl and etcdutl (root, 0755), records them, creates the user", () => {
        expect(userExists(user)).toBe(false);
        const r = runStep(step(binDir, "3.5.21", good), tmpDir);
        expect(r.stderr).toMatch(/node cp-1: sha256 [0-9a-f]{64} matches the pinned checksum/);
        expect(r.status).toBe(0);
        const result = parseEtcdInstallResult(r.stdout);
        expect(result).toEqual({
            node: "cp-1",
            source: "release",
            version: "3.5.21",
            arch: HOST_ARCH,
            user,
            etcd: path.join(binDir, "etcd"),
            etcdctl: path.join(binDir, "etcdctl"),
            etcdutl: path.join(binDir, "etcdutl"),
            sha256: good,
            changed: true,
        });
        expect(listing(binDir)).toEqual([RECORD, "etcd", "etcdctl", "etcdutl"]);
        for (const name of ["etcd", "etcdctl", "etcdutl"]) {
            const st = fs.statSync(path.join(binDir, name));
            expect(st.mode & 0o7777).toBe(0o755);
            expect(st.uid).toBe(0);
            expect(st.gid).toBe(0);
        }
        expect(fs.readFileSync(path.join(binDir, "etcdctl"), "utf8")).toContain("# etcdctl 3.5.21");
        expect(fs.statSync(path.join(binDir, RECORD)).mode & 0o777).toBe(0o644);
        expect(fs.readFileSync(path.join(binDir, RECORD), "utf8")).toBe(
            `version 3.5.21\narch ${HOST_ARCH}\ntarball ${good}\n` +
                ["etcd", "etcdctl", "etcdutl"].map((n) => `${n} ${sha256(path.join(binDir, n))}\n`).join(""),
        );
        // The user: a system account without a login shell or a home.
        const passwd = spawnSync("getent", ["passwd", user], { encoding: "utf8" }).stdout.trim().split(":");
        expect(Number(passwd[2])).toBeLessThan(1000);
        expect(passwd[5]).toBe("/nonexistent");
        expect(passwd[6]).toMatch(/\/nologin$/);
        expect(fs.existsSync(passwd[5])).toBe(false);
        expect(groupExists(user)).toBe(true);
        // etcd was only asked for its version; etcdctl and etcdutl never ran.
        expect(markersLeft()).toEqual([]);
    });

    it("second run: nothing to do, changed false, the binaries untouched", () => {
        const before = fs.statSync(path.join(binDir, "etcd"));
        const r = runStep(step(binDir, "3.5.21", good), tmpDir);
        expect(r.status).toBe(0);
        expect(r.stderr).toMatch(/etcd 3\.5\.21 \(\w+\) from file:\/\/.* is installed in .*; nothing to do/);
        expect(r.stderr).not.toMatch(/downloading/);
        const result = parseEtcdInstallResult(r.stdout);
        expect(result).toMatchObject({ changed: false, version: "3.5.21", sha256: good, etcdutl: path.join(binDir, "etcdutl") });
        const after = fs.statSync(path.join(binDir, "etcd"));
        expect(after.ino).toBe(before.ino);
        expect(after.mtimeMs).toBe(before.mtimeMs);
    });

    it("a binary changed in place is replaced: its checksum no longer matches the record", () => {
        const expected = snapshot(binDir);
        fs.appendFileSync(path.join(binDir, "etcdctl"), "# changed\n");
        const r = runStep(step(binDir, "3.5.21", good), tmpDir);
        expect(r.status).toBe(0);
        expect(parseEtcdInstallResult(r.stdout).changed).toBe(true);
        expect(snapshot(binDir)).toEqual(expected);
    });

    it("a binary whose mode was changed is installed again with 0755", () => {
        fs.chmodSync(path.join(binDir, "etcd"), 0o777);
        const r = runStep(step(binDir, "3.5.21", good), tmpDir);
        expect(r.status).toBe(0);
        expect(parseEtcdInstallResult(r.stdout).changed).toBe(true);
        expect(fs.statSync(path.join(binDir, "etcd")).mode & 0o7777).toBe(0o755);
    });

    it("wrong sha256: exit 3 naming node, URL, expected and actual; nothing installed, nothing from the tarball ran", () => {
        const empty = fs.mkdtempSync(path.join(root, "bin-"));
        const url = etcdReleaseUrl("3.5.21", HOST_ARCH, `file://${evil}`);
        // The tampered tarball at the URL, with the genuine release's checksum pinned.
        const r = runStep(step(empty, "3.5.21", good, evil), tmpDir);
        expect(r.status).toBe(3);
        expect(r.stdout).toBe("");
        expect(r.stderr).toContain(
            `etcd install refused on node cp-1: ${url} has sha256 ${hostile}, but ${good} is pinned for etcd 3.5.21 (${HOST_ARCH}); nothing was installed`,
        );
        expect(listing(empty)).toEqual([]);
        expect(markersLeft()).toEqual([]);
    });

    it("a mirror serving a tampered tarball: the checksum, not the URL, decides; a needed download is refused", () => {
        const before = snapshot(binDir);
        // The installed binaries came from a tarball with the pinned checksum: nothing is fetched.
        const current = runStep(step(binDir, "3.5.21", good, evil), tmpDir);
        expect(current.status).toBe(0);
        expect(current.stderr).not.toMatch(/downloading/);
        expect(parseEtcdInstallResult(current.stdout).changed).toBe(false);
        expect(snapshot(binDir)).toEqual(before);
        // Without the record the binaries must be fetched again: the tampered tarball is refused
        // and the installed binaries stay as they were.
        fs.rmSync(path.join(binDir, RECORD));
        const refused = runStep(step(binDir, "3.5.21", good, evil), tmpDir);
        expect(refused.status).toBe(3);
        expect(refused.stderr).toMatch(/etcd install refused on node cp-1: .* has sha256 [0-9a-f]{64}, but [0-9a-f]{64} is pinned/);
        expect(snapshot(binDir)).toEqual(Object.fromEntries(Object.entries(before).filter(([f]) => f !== RECORD)));
        expect(markersLeft()).toEqual([]);
        // The genuine tarball again: installed and recorded once more.
        const restored = runStep(step(binDir, "3.5.21", good), tmpDir);
        expect(parseEtcdInstallResult(restored.stdout).changed).toBe(true);
        expect(snapshot(binDir)).toEqual(before);
    });

    it("a verified tarball whose etcd reports another version: exit 3, nothing replaced", () => {
        const sum = fakeRelease(mirror, "3.5.22", { reports: "3.5.20" });
        const before = snapshot(binDir);
        const r = runStep(step(binDir, "3.5.22", sum), tmpDir);
        expect(r.status).toBe(3);
        expect(r.stderr).toMatch(/etcd install refused on node cp-1: the etcd in file:\/\/\S+ reports version '3\.5\.20', not 3\.5\.22; nothing was installed/);
        expect(snapshot(binDir)).toEqual(before);
    });

    it("a verified tarball without etcdctl: exit 3, nothing replaced", () => {
        const sum = fakeRelease(mirror, "3.5.23", { binaries: ["etcd", "etcdutl"] });
        const before = snapshot(binDir);
        const r = runStep(step(binDir, "3.5.23", sum), tmpDir);
        expect(r.status).toBe(3);
        expect(r.stderr).toMatch(new RegExp(`holds no etcd-v3\\.5\\.23-linux-${HOST_ARCH}/etcdctl; it is not the etcd 3\\.5\\.23 ${HOST_ARCH} release`));
        expect(snapshot(binDir)).toEqual(before);
    });

    it("a tarball that is not there: exit 1, nothing replaced", () => {
        const before = snapshot(binDir);
        const r = runStep(step(binDir, "3.5.24", good), tmpDir);
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/node cp-1: downloading file:\/\/\S+etcd-v3\.5\.24-linux-\w+\.tar\.gz failed \(curl exit \d+\); nothing was installed/);
        expect(r.stdout).toBe("");
        expect(snapshot(binDir)).toEqual(before);
    });

    it("a release without etcdutl (3.4) replaces 3.5 and removes the etcdutl it had installed", () => {
        const sum = fakeRelease(mirror, "3.4.13", { binaries: ["etcd", "etcdctl"] });
        const r = runStep(step(binDir, "3.4.13", sum), tmpDir);
        expect(r.status).toBe(0);
        expect(r.stderr).toMatch(/removed \S+\/etcdutl, which etcd 3\.4\.13 does not ship/);
        const result = parseEtcdInstallResult(r.stdout);
        expect(result).toMatchObject({ version: "3.4.13", changed: true, sha256: sum });
        expect(result.etcdutl).toBeUndefined();
        expect(listing(binDir)).toEqual([RECORD, "etcd", "etcdctl"]);
        const again = runStep(step(binDir, "3.4.13", sum), tmpDir);
        expect(parseEtcdInstallResult(again.stdout)).toMatchObject({ changed: false, version: "3.4.13" });
        expect(markersLeft()).toEqual([]);
    });

    it("delete: leaves the binaries in place", () => {
        const before = snapshot(binDir);
        const r = runScript({ ZT_ACTION: "delete", ZT_NODE: "cp-1" });
        expect(r.status).toBe(0);
        expect(JSON.parse(r.stdout.trim())).toEqual({ action: "delete", node: "cp-1", changed: false });
        expect(snapshot(binDir)).toEqual(before);
    });

    const valid = (): Record<string, string> => ({
        ZT_ACTION: "create",
        ZT_NODE: "cp-1",
        ZT_SOURCE: "release",
        ZT_VERSION: "3.5.21",
        ZT_USER: "zt-never-created",
        ZT_BIN_DIR: path.join(root, "never"),
        TMPDIR: tmpDir,
        [`ZT_URL_${HOST_ARCH_PARAM}`]: `file://${mirror}/v3.5.21/etcd-v3.5.21-linux-${HOST_ARCH}.tar.gz`,
        [`ZT_SHA256_${HOST_ARCH_PARAM}`]: good,
    });
    const otherArch = HOST_ARCH === "amd64" ? "ARM64" : "AMD64";

    it.each<[string, Record<string, string>, RegExp]>([
        ["an unknown action", { ZT_ACTION: "update" }, /ZT_ACTION must be create or delete, got 'update'/],
        ["a node name that is not a DNS label", { ZT_NODE: "cp_1" }, /ZT_NODE must be a DNS label/],
        ["an unknown source", { ZT_SOURCE: "apt" }, /ZT_SOURCE must be release or preinstalled, got 'apt' \(node cp-1\)/],
        ["a release version without its patch level", { ZT_VERSION: "3.5" }, /ZT_VERSION must be a release version such as 3\.5\.21, got '3\.5'/],
        ["a version with a v", { ZT_VERSION: "v3.5.21" }, /ZT_VERSION must be a release version/],
        ["root as the user", { ZT_USER: "root" }, /ZT_USER must be an unprivileged user name \(not root\), got 'root'/],
        ["a user name with a blank", { ZT_USER: "et cd" }, /ZT_USER must be an unprivileged user name/],
        ["a relative directory", { ZT_BIN_DIR: "usr/local/bin" }, /ZT_BIN_DIR must be an absolute path, got 'usr\/local\/bin'/],
        ["/ as the directory", { ZT_BIN_DIR: "/" }, /ZT_BIN_DIR must be a normalized absolute path other than \//],
        ["a directory with ..", { ZT_BIN_DIR: "/usr/../bin" }, /ZT_BIN_DIR must be a normalized absolute path/],
        ["a plain http URL", { [`ZT_URL_${HOST_ARCH_PARAM}`]: "http://mirror.example/etcd.tar.gz" }, /ZT_URL_\w+ must be an https:\/\/ or file:\/\/ URL, got 'http:/],
        ["a checksum that is not 64 hex digits", { [`ZT_SHA256_${HOST_ARCH_PARAM}`]: "abc" }, /ZT_SHA256_\w+ must be 64 hex digits, got 'abc'/],
        ["a URL without its checksum", { [`ZT_SHA256_${HOST_ARCH_PARAM}`]: "" }, /ZT_URL_\w+ and ZT_SHA256_\w+ go together/],
        [
            "only the other architecture's tarball",
            {
                [`ZT_URL_${HOST_ARCH_PARAM}`]: "",
                [`ZT_SHA256_${HOST_ARCH_PARAM}`]: "",
                [`ZT_URL_${otherArch}`]: "https://mirror.example/etcd.tar.gz",
                [`ZT_SHA256_${otherArch}`]: "a".repeat(64),
            },
            /node cp-1 is \w+, but no tarball and sha256 are given for \w+ \(ZT_URL_\w+, ZT_SHA256_\w+\) for etcd 3\.5\.21/,
        ],
        ["a preinstalled version that is a major alone", { ZT_SOURCE: "preinstalled", ZT_VERSION: "3" }, /ZT_VERSION must be a version such as 3\.4 or 3\.4\.23, got '3'/],
    ])("refuses %s with exit 2, before touching anything", (_name, change, message) => {
        const r = runScript({ ...valid(), ...change });
        expect(r.stderr).toMatch(message);
        expect(r.status).toBe(2);
        expect(r.stdout).toBe("");
        expect(userExists("zt-never-created")).toBe(false);
        expect(fs.existsSync(path.join(root, "never"))).toBe(false);
    });
});

describeAsRoot("etcd-install.sh, preinstalled: Debian's etcd-server in /usr/bin", () => {
    const user = `zt-etcdp-${process.pid % 100000}`;
    let tmpDir: string;

    beforeAll(() => {
        removeUser(user);
        tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "zt-etcd-pre-"));
    });
    afterAll(() => {
        removeUser(user);
        fs.rmSync(tmpDir, { recursive: true, force: true });
    });

    const preinstalled = (version: string): NodeStep => etcdInstallSteps({ node: "cp-2", source: "preinstalled", version, user })[0];

    it("accepts the package's 3.4 and reports the exact version it found; the second run changes nothing", () => {
        const r = runStep(preinstalled("3.4"), tmpDir);
        expect(r.status).toBe(0);
        expect(r.stderr).toMatch(/node cp-2: using the preinstalled etcd 3\.4\.\d+ at \/usr\/bin\/etcd \(etcdctl at \/usr\/bin\/etcdctl\)/);
        const result = parseEtcdInstallResult(r.stdout);
        expect(result).toMatchObject({ node: "cp-2", source: "preinstalled", user, etcd: "/usr/bin/etcd", etcdctl: "/usr/bin/etcdctl", changed: true });
        expect(result.version).toMatch(/^3\.4\.\d+$/);
        expect(result.sha256).toBeUndefined();
        const again = runStep(preinstalled("3.4.13"), tmpDir);
        expect(again.status).toBe(0);
        expect(parseEtcdInstallResult(again.stdout)).toMatchObject({ version: result.version, changed: false });
    });

    it("refuses a release installed by this script that comes first on PATH: exit 3, before running it", () => {
        const bin = fs.mkdtempSync(path.join(tmpDir, "bin-"));
        const marker = path.join(tmpDir, "ran");
        fs.writeFileSync(path.join(bin, "etcd"), `#!/bin/sh\ntouch '${marker}'\n`, { mode: 0o755 });
        fs.writeFileSync(path.join(bin, "etcdctl"), `#!/bin/sh\ntouch '${marker}'\n`, { mode: 0o755 });
        fs.writeFileSync(path.join(bin, RECORD), "version 3.4.13\n");
        const r = runScript({ ...stringParams(preinstalled("3.4").params), ZT_ACTION: "create", PATH: `${bin}:${SYSTEM_PATH}` });
        expect(r.status).toBe(3);
        expect(r.stderr).toContain(`the etcd first on PATH, ${bin}/etcd, was installed from a release tarball, not by the distribution`);
        expect(fs.existsSync(marker)).toBe(false);
        fs.rmSync(bin, { recursive: true });
    });

    it("refuses it for 3.5: exit 3, saying what was found and what is required", () => {
        const r = runStep(preinstalled("3.5.21"), tmpDir);
        expect(r.status).toBe(3);
        expect(r.stdout).toBe("");
        expect(r.stderr).toMatch(
            /etcd install failed on node cp-2: the preinstalled etcd at \/usr\/bin\/etcd is version 3\.4\.\d+, but etcd 3\.5 is required \(ZT_VERSION 3\.5\.21\); install etcd 3\.5 from the distribution, or use source release/,
        );
    });
});
