import { ChildProcess, spawn, spawnSync } from "child_process";
import { createHash, randomBytes } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import {
    etcdRestoreStep,
    EtcdSnapshotStepArgs,
    etcdSnapshotSteps,
    parseRestoreResult,
    parseSnapshotResult,
    OFFSITE_LIB,
    RESTORE_SCRIPT,
    SNAPSHOT_INSTALLED,
    SNAPSHOT_SCRIPT,
    SnapshotSaveResult,
} from "../components/etcd/snapshot";
import { stepPayload } from "../components/lib/nodeScript";
import { freePorts } from "./support/ports";
import { itAsRoot } from "./support/host";
import { makeLoopbackCertificates } from "./support/loopbackCerts";
import { Run, runBash } from "./support/scriptRun";

import { COMMON_LIB } from "../components/lib/nodeScript";
const SNAPSHOT_NAME = /^local-1-\d{8}T\d{6}\.\d{3}Z\.db$/;

describe("etcdSnapshotSteps", () => {
    const base: EtcdSnapshotStepArgs = { node: "cp-1", etcdctl: "/usr/local/bin/etcdctl" };

    it("is one step, snapshots, with a delete, not sensitive, with the JSON and off-node libraries; defaults left to the script", () => {
        const steps = etcdSnapshotSteps(base);
        expect(steps).toEqual([
            {
                name: "snapshots",
                script: SNAPSHOT_SCRIPT,
                params: { ZT_NODE: "cp-1", ZT_ETCDCTL: "/usr/local/bin/etcdctl" },
                hasDelete: true,
                sensitive: false,
                libraries: [COMMON_LIB, OFFSITE_LIB],
            },
        ]);
        expect(fs.existsSync(steps[0].script)).toBe(true);
        expect(fs.existsSync(RESTORE_SCRIPT)).toBe(true);
        const { stdin } = stepPayload(steps[0]);
        expect(stdin.indexOf("json_array() {")).toBeGreaterThan(0);
        expect(stdin.indexOf("json_array() {")).toBeLessThan(stdin.indexOf("etcd snapshots: a systemd timer"));
    });

    it("the restore step carries both libraries etcd-restore.sh sources, ahead of it", () => {
        const { stdin } = stepPayload(etcdRestoreStep({ ZT_SNAPSHOT: "/var/backups/etcd/x.db" }, false));
        const script = stdin.indexOf("readonly restore_timeout_s=");
        expect(script).toBeGreaterThan(0);
        for (const fn of ["json_string() {", "offsite_set() {"]) {
            expect([fn, stdin.indexOf(fn) >= 0 && stdin.indexOf(fn) < script]).toEqual([fn, true]);
        }
    });

    it("passes every option given", () => {
        const [step] = etcdSnapshotSteps({
            node: "cp-2",
            etcdctl: "/usr/bin/etcdctl",
            endpoint: "https://[2001:db8::1]:2379",
            tls: { caFile: "/etc/etcd/pki/ca.crt", certFile: "/etc/etcd/pki/backup.crt", keyFile: "/etc/etcd/pki/backup.key" },
            dir: "/srv/backups/etcd",
            retain: 48,
            schedule: "*-*-* 00/6:00:00",
        });
        expect(step.params).toEqual({
            ZT_NODE: "cp-2",
            ZT_ETCDCTL: "/usr/bin/etcdctl",
            ZT_ENDPOINT: "https://[2001:db8::1]:2379",
            ZT_CACERT: "/etc/etcd/pki/ca.crt",
            ZT_CERT: "/etc/etcd/pki/backup.crt",
            ZT_KEY: "/etc/etcd/pki/backup.key",
            ZT_SNAPSHOT_DIR: "/srv/backups/etcd",
            ZT_RETAIN: 48,
            ZT_SCHEDULE: "*-*-* 00/6:00:00",
        });
    });

    it("runs again when the schedule or the retention change, and only then", () => {
        const hash = (extra: Partial<EtcdSnapshotStepArgs>): string => stepPayload(etcdSnapshotSteps({ ...base, ...extra })[0]).hash;
        expect(hash({})).toBe(hash({}));
        expect(hash({ schedule: "daily" })).not.toBe(hash({}));
        expect(hash({ retain: 7 })).not.toBe(hash({}));
    });

    const tls = { caFile: "/etc/etcd/pki/ca.crt", certFile: "/etc/etcd/pki/backup.crt", keyFile: "/etc/etcd/pki/backup.key" };
    it.each<[string, Partial<EtcdSnapshotStepArgs>, RegExp]>([
        ["an upper-case node name", { node: "CP-1" }, /etcd snapshots for node CP-1: node is "CP-1"; a node name must be a DNS label/],
        ["a relative etcdctl", { etcdctl: "etcdctl" }, /node cp-1: etcdctl is "etcdctl"; allowed: an absolute path/],
        ["an etcdctl path with ..", { etcdctl: "/usr/../tmp/etcdctl" }, /etcdctl is "\/usr\/..\/tmp\/etcdctl"/],
        ["an endpoint with a path", { endpoint: "https://127.0.0.1:2379/v3" }, /endpoint is "https:\/\/127.0.0.1:2379\/v3"; allowed: an etcd client URL/],
        ["an endpoint without a port", { endpoint: "https://127.0.0.1" }, /endpoint is/],
        ["a CA file with a space", { tls: { ...tls, caFile: "/etc/etcd/my ca.crt" } }, /tls.caFile is "\/etc\/etcd\/my ca.crt"/],
        ["a relative key file", { tls: { ...tls, keyFile: "backup.key" } }, /tls.keyFile is "backup.key"/],
        ["a directory of /", { dir: "/" }, /dir is "\/"; allowed: an absolute path/],
        ["a relative directory", { dir: "backups" }, /dir is "backups"/],
        ["a directory with a quote", { dir: '/var/"b"' }, /dir is/],
        ["retain 0", { retain: 0 }, /retain is 0; allowed: an integer from 1 to 1000/],
        ["retain 1001", { retain: 1001 }, /retain is 1001/],
        ["a fractional retain", { retain: 2.5 }, /retain is 2.5/],
        ["a schedule with a semicolon", { schedule: "hourly; rm -rf /" }, /schedule is "hourly; rm -rf \/"; allowed: a systemd OnCalendar expression/],
        ["a schedule with a line break", { schedule: "hourly\nPersistent=false" }, /schedule is/],
        ["a schedule with a double space", { schedule: "Mon  02:00" }, /schedule is/],
        ["an empty schedule", { schedule: "" }, /schedule is ""/],
    ])("refuses %s, naming the node, the key and what is allowed", (_name, change, message) => {
        expect(() => etcdSnapshotSteps({ ...base, ...change })).toThrow(message);
    });
});

describe("parseSnapshotResult", () => {
    const save = {
        action: "save",
        node: "cp-1",
        file: "/var/backups/etcd/cp-1-20250101T000000.000Z.db",
        size: 20512,
        hash: 1489678254,
        revision: 12,
        totalKeys: 9,
        retain: 2,
        kept: 2,
        removed: ["/var/backups/etcd/cp-1-20241231T230000.000Z.db"],
        offsite: null,
    };
    const line = (r: object): string => `progress\n${JSON.stringify(r)}\n`;

    it("parses each action's result", () => {
        expect(parseSnapshotResult(line(save))).toEqual(save);
        const create = { action: "create", node: "cp-1", changed: true, schedule: "hourly", snapshotDir: "/var/backups/etcd", retain: 24, timer: SNAPSHOT_INSTALLED.timer, offsite: null };
        expect(parseSnapshotResult(line(create))).toEqual(create);
        const del = { action: "delete", node: "cp-1", changed: false, snapshotDir: "/var/backups/etcd", snapshotsKept: 3 };
        expect(parseSnapshotResult(line(del))).toEqual(del);
    });

    it.each<[string, string, RegExp]>([
        ["an unknown key", line({ ...save, extra: 1 }), /etcd snapshot: unexpected result line: .*extra/],
        ["an unknown action", line({ ...save, action: "restore" }), /unexpected result line/],
        ["more kept than retained", line({ ...save, kept: 3 }), /kept 3 snapshots, more than retain \(2\)/],
        ["a file of another node", line({ ...save, file: "/var/backups/etcd/cp-10-20250101T000000.000Z.db" }), /is not the node's/],
        ["the new file among the removed", line({ ...save, removed: [save.file] }), /or was removed/],
        ["a relative file", line({ ...save, file: "cp-1.db" }), /unexpected result line: file/],
        ["no output", "\n", /printed no result line/],
        ["output that is not JSON", "Error: context deadline exceeded", /not JSON/],
    ])("refuses %s", (_name, stdout, message) => {
        expect(() => parseSnapshotResult(stdout)).toThrow(message);
    });
});

/** Runs a script as the runner does (bash, stdin closed), bounded; PATH first holds `bin` when given. */
function runScript(file: string, env: Record<string, string>, bin?: string): Run {
    const PATH = `${bin !== undefined ? `${bin}:` : ""}${process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`;
    return runBash([file], { PATH, ...env }, 90_000);
}

/** etcdctl's absolute path here (the scripts take no bare command name), or "" when there is none. */
const ETCDCTL = spawnSync("bash", ["-c", "command -v etcdctl"], { encoding: "utf8" }).stdout.trim();

describe("parameter checks of the scripts (no etcd needed)", () => {
    const snapshotValid = { ZT_ACTION: "save", ZT_NODE: "cp-1", ZT_ETCDCTL: "/usr/bin/etcdctl" };
    it.each<[string, Record<string, string>, RegExp]>([
        ["an unknown action", { ZT_ACTION: "restore" }, /ZT_ACTION must be create, save or delete, got 'restore'/],
        ["a node name that is not a DNS label", { ZT_NODE: "cp_1" }, /ZT_NODE must be a DNS label/],
        ["no etcdctl", { ZT_ETCDCTL: "" }, /ZT_ETCDCTL must be an absolute path .* got '' \(node cp-1\)/],
        ["an endpoint with a path", { ZT_ENDPOINT: "https://127.0.0.1:2379/v3" }, /ZT_ENDPOINT must be an etcd client URL/],
        ["a relative certificate", { ZT_CERT: "backup.crt" }, /ZT_CERT must be an absolute path/],
        ["a directory with ..", { ZT_SNAPSHOT_DIR: "/var/backups/../../etc" }, /ZT_SNAPSHOT_DIR must be an absolute path/],
        ["retain 0", { ZT_RETAIN: "0" }, /ZT_RETAIN must be an integer from 1 to 1000, got '0'/],
        ["retain 1001", { ZT_RETAIN: "1001" }, /ZT_RETAIN must be an integer from 1 to 1000, got '1001'/],
        ["a schedule with a quote", { ZT_SCHEDULE: 'hourly"' }, /ZT_SCHEDULE must be a systemd OnCalendar expression/],
    ])("etcd-snapshot.sh refuses %s with exit 2, nothing on stdout", (_name, change, message) => {
        const r = runScript(SNAPSHOT_SCRIPT, { ...snapshotValid, ...change });
        expect(r.stderr).toMatch(message);
        expect(r.status).toBe(2);
        expect(r.stdout).toBe("");
    });

    const restoreValid = {
        ZT_ACTION: "restore",
        ZT_SNAPSHOT: "/nonexistent/s.db",
        ZT_ETCDCTL: "/usr/bin/etcdctl",
        ZT_NAME: "cp-1",
        ZT_INITIAL_CLUSTER: "cp-1=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380",
        ZT_INITIAL_ADVERTISE_PEER_URLS: "https://10.0.0.1:2380",
        ZT_INITIAL_CLUSTER_TOKEN: "zerotouch-restored",
        ZT_DATA_DIR: "/nonexistent/etcd",
        ZT_USER: "",
    };
    it.each<[string, Record<string, string>, RegExp]>([
        ["an unknown action", { ZT_ACTION: "save" }, /ZT_ACTION must be verify, restore or fetch, got 'save'/],
        ["a relative etcdctl", { ZT_ETCDCTL: "etcdctl" }, /ZT_ETCDCTL must be the absolute path of etcdctl/],
        ["no snapshot", { ZT_SNAPSHOT: "" }, /ZT_SNAPSHOT must be the snapshot file to restore, got ''/],
        ["a member name with a dot", { ZT_NAME: "cp.1" }, /ZT_NAME must be a member name/],
        ["a peer URL with a path", { ZT_INITIAL_ADVERTISE_PEER_URLS: "https://10.0.0.1:2380/x" }, /ZT_INITIAL_ADVERTISE_PEER_URLS must be peer URLs/],
        ["a cluster entry without a URL", { ZT_INITIAL_CLUSTER: "cp-1=https://10.0.0.1:2380,cp-2" }, /ZT_INITIAL_CLUSTER must be name=peer-URL entries .*\(entry 'cp-2'\)/],
        ["a cluster without this member", { ZT_INITIAL_CLUSTER: "cp-2=https://10.0.0.2:2380" }, /ZT_INITIAL_CLUSTER must list member cp-1 with exactly its ZT_INITIAL_ADVERTISE_PEER_URLS/],
        ["a cluster with another URL for this member", { ZT_INITIAL_CLUSTER: "cp-1=https://10.0.0.9:2380" }, /must list member cp-1 with exactly/],
        ["a token with a space", { ZT_INITIAL_CLUSTER_TOKEN: "a b" }, /ZT_INITIAL_CLUSTER_TOKEN must be 1-128 letters/],
        ["a relative data directory", { ZT_DATA_DIR: "etcd" }, /ZT_DATA_DIR must be an absolute path/],
        ["a data directory of /", { ZT_DATA_DIR: "/" }, /ZT_DATA_DIR must be an absolute path/],
        ["a user that does not exist", { ZT_USER: "no-such-user-zt" }, /ZT_USER no-such-user-zt is not a user on this node/],
    ])("etcd-restore.sh refuses %s with exit 2, nothing on stdout", (_name, change, message) => {
        const r = runScript(RESTORE_SCRIPT, { ...restoreValid, ...change });
        expect(r.stderr).toMatch(message);
        expect(r.status).toBe(2);
        expect(r.stdout).toBe("");
    });
});

/** One etcd member on loopback: TLS with client certificates on the client URL, plain HTTP peer and metrics. */
class LoopbackEtcd {
    client = 0;
    peer = 0;
    metrics = 0;
    private proc: ChildProcess | undefined;

    constructor(
        readonly name: string,
        readonly dataDir: string,
        readonly pki: string,
        readonly logFile: string,
    ) {}

    get endpoint(): string {
        return `https://127.0.0.1:${this.client}`;
    }
    get peerUrl(): string {
        return `http://127.0.0.1:${this.peer}`;
    }
    /** Picks the ports; called before start() when the peer URL must be known first (a restore). */
    async choosePorts(): Promise<void> {
        [this.client, this.peer, this.metrics] = await freePorts(3);
    }

    /** Starts etcd and waits, bounded, until it reports healthy. */
    async start(token: string): Promise<void> {
        if (this.client === 0) {
            await this.choosePorts();
        }
        const log = fs.openSync(this.logFile, "a");
        this.proc = spawn(
            "etcd",
            [
                `--name=${this.name}`,
                `--data-dir=${this.dataDir}`,
                `--listen-client-urls=${this.endpoint}`,
                `--advertise-client-urls=${this.endpoint}`,
                `--listen-peer-urls=${this.peerUrl}`,
                `--initial-advertise-peer-urls=${this.peerUrl}`,
                `--initial-cluster=${this.name}=${this.peerUrl}`,
                `--initial-cluster-token=${token}`,
                `--listen-metrics-urls=http://127.0.0.1:${this.metrics}`,
                `--cert-file=${path.join(this.pki, "server.crt")}`,
                `--key-file=${path.join(this.pki, "server.key")}`,
                `--trusted-ca-file=${path.join(this.pki, "ca.crt")}`,
                "--client-cert-auth",
            ],
            { stdio: ["ignore", log, log], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } },
        );
        fs.closeSync(log);
        const deadline = Date.now() + 30_000;
        for (;;) {
            if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
                throw new Error(`etcd ${this.name} exited: ${fs.readFileSync(this.logFile, "utf8").slice(-2000)}`);
            }
            try {
                const res = await fetch(`http://127.0.0.1:${this.metrics}/health`, { signal: AbortSignal.timeout(1000) });
                if (res.ok && ((await res.json()) as { health?: string }).health === "true") {
                    return;
                }
            } catch {
                // not yet
            }
            if (Date.now() > deadline) {
                throw new Error(`etcd ${this.name} did not become healthy within 30 s`);
            }
            await new Promise((r) => setTimeout(r, 200));
        }
    }

    /** SIGTERM, SIGKILL after 10 s; the wait for the exit is bounded too. */
    async stop(): Promise<void> {
        const proc = this.proc;
        if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) {
            return;
        }
        const exited = new Promise<void>((res) => proc.once("exit", () => res()));
        proc.kill("SIGTERM");
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<boolean>((res) => {
            timer = setTimeout(() => res(true), 10_000);
        });
        if (await Promise.race([exited.then(() => false), late])) {
            proc.kill("SIGKILL");
            await Promise.race([exited, new Promise((res) => setTimeout(res, 5_000))]);
        }
        clearTimeout(timer);
    }

    /** etcdctl against this member with the backup client certificate. */
    etcdctl(...args: string[]): string {
        const r = spawnSync(
            "etcdctl",
            [
                `--endpoints=${this.endpoint}`,
                `--cacert=${path.join(this.pki, "ca.crt")}`,
                `--cert=${path.join(this.pki, "backup.crt")}`,
                `--key=${path.join(this.pki, "backup.key")}`,
                "--dial-timeout=5s",
                "--command-timeout=10s",
                ...args,
            ],
            { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ETCDCTL_API: "3" }, encoding: "utf8", timeout: 30_000 },
        );
        if (r.status !== 0) {
            throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
        }
        return r.stdout;
    }
}

/** A stand-in for systemctl: records its arguments; is-enabled/is-active answer from a state file. */
function fakeSystemctl(bin: string, state: string): void {
    fs.mkdirSync(bin, { recursive: true });
    fs.mkdirSync(state, { recursive: true });
    const script = `#!/usr/bin/env bash
printf '%s\\n' "$*" >>'${state}/calls'
case "$1" in
  is-enabled | is-active) [ -e '${state}/enabled' ] ;;
  enable) touch '${state}/enabled' ;;
  disable) rm -f '${state}/enabled' ;;
esac
`;
    fs.writeFileSync(path.join(bin, "systemctl"), script, { mode: 0o755 });
}

const mode = (file: string): string => (fs.statSync(file).mode & 0o777).toString(8);
const listDir = (dir: string): string[] => fs.readdirSync(dir).sort();

describe("etcd snapshots and restore against a real etcd 3.4 (TLS with client certificates) on loopback", () => {
    let root = "";
    let pki = "";
    let source: LoopbackEtcd | undefined;
    let restored: LoopbackEtcd | undefined;
    let snapshotDir = "";
    const saves: SnapshotSaveResult[] = [];
    const KEYS: Record<string, string> = {
        "/registry/namespaces/default": "namespace default",
        "/registry/secrets/kube-system/token": "s3cr3t value with spaces",
        "/registry/configmaps/default/multiline": "line one\nline two",
    };

    const env = (extra: Record<string, string> = {}): Record<string, string> => ({
        ZT_ACTION: "save",
        ZT_NODE: "local-1",
        ZT_ETCDCTL: ETCDCTL,
        ZT_ENDPOINT: source?.endpoint ?? "",
        ZT_CACERT: path.join(pki, "ca.crt"),
        ZT_CERT: path.join(pki, "backup.crt"),
        ZT_KEY: path.join(pki, "backup.key"),
        ZT_SNAPSHOT_DIR: snapshotDir,
        ...extra,
    });
    const save = (extra: Record<string, string> = {}): SnapshotSaveResult => {
        const r = runScript(SNAPSHOT_SCRIPT, env(extra));
        if (r.status !== 0) {
            throw new Error(`save failed (exit ${r.status}): ${r.stderr}`);
        }
        const result = parseSnapshotResult(r.stdout);
        if (result.action !== "save") {
            throw new Error(`not a save result: ${r.stdout}`);
        }
        saves.push(result);
        return result;
    };
    const restoreEnv = (snapshot: string, dataDir: string, member: LoopbackEtcd | { name: string; peerUrl: string }): Record<string, string> => ({
        ZT_ACTION: "restore",
        ZT_SNAPSHOT: snapshot,
        ZT_ETCDCTL: ETCDCTL,
        ZT_NAME: member.name,
        ZT_INITIAL_CLUSTER: `${member.name}=${member.peerUrl}`,
        ZT_INITIAL_ADVERTISE_PEER_URLS: member.peerUrl,
        ZT_INITIAL_CLUSTER_TOKEN: "zerotouch-restored",
        ZT_DATA_DIR: dataDir,
        ZT_USER: "",
    });
    /** The newest snapshot saved by the tests above (they run in order). */
    const latest = (): string => {
        const last = saves[saves.length - 1];
        if (last === undefined) {
            throw new Error("no snapshot yet: these tests need the save test before them (run the whole describe)");
        }
        return last.file;
    };

    beforeAll(async () => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "zt-etcd-snapshot-"));
        pki = path.join(root, "pki");
        makeLoopbackCertificates(pki, { file: "backup", cn: "backup" });
        snapshotDir = path.join(root, "backups", "etcd");
        source = new LoopbackEtcd("source", path.join(root, "source"), pki, path.join(root, "source.log"));
        await source.start("zerotouch-test");
        for (const [k, v] of Object.entries(KEYS)) {
            source.etcdctl("put", k, v);
        }
    }, 60_000);

    afterAll(async () => {
        await Promise.all([source?.stop(), restored?.stop()]);
        if (root !== "") {
            fs.rmSync(root, { recursive: true, force: true });
        }
    }, 40_000);

    it("save: a verified snapshot named after the node, in a directory it makes with mode 0700", () => {
        const r = save();
        expect(path.dirname(r.file)).toBe(snapshotDir);
        expect(path.basename(r.file)).toMatch(SNAPSHOT_NAME);
        expect(mode(snapshotDir)).toBe("700");
        expect(mode(r.file)).toBe("600");
        expect(r.size).toBe(fs.statSync(r.file).size);
        expect(r).toMatchObject({ node: "local-1", retain: 24, kept: 1, removed: [] });
        // The figures are those etcdctl reads from the file.
        const status = JSON.parse(spawnSync(ETCDCTL, ["snapshot", "status", "-w", "json", r.file], { encoding: "utf8", env: { ETCDCTL_API: "3" }, timeout: 30_000 }).stdout);
        expect({ hash: r.hash, revision: r.revision, totalKeys: r.totalKeys }).toEqual({ hash: status.hash, revision: status.revision, totalKeys: status.totalKey });
        expect(r.revision).toBeGreaterThanOrEqual(Object.keys(KEYS).length + 1);
        // Only the snapshot and the lock: no temporary file.
        expect(listDir(snapshotDir)).toEqual([".local-1.lock", path.basename(r.file)]);
    }, 60_000);

    it("retention: with ZT_RETAIN=2, three more saves leave the two newest; other files stay", () => {
        const other = path.join(snapshotDir, "local-10-20000101T000000.000Z.db");
        const notes = path.join(snapshotDir, "notes.txt");
        fs.writeFileSync(other, "another node's snapshot");
        fs.writeFileSync(notes, "kept");
        const first = saves[0];
        const results = [1, 2, 3].map((i) => {
            source!.etcdctl("put", `/registry/events/e${i}`, `event ${i}`);
            return save({ ZT_RETAIN: "2" });
        });
        expect(results.map((r) => r.removed)).toEqual([[], [first.file], [results[0].file]]);
        expect(results.map((r) => r.kept)).toEqual([2, 2, 2]);
        expect(results[1].revision).toBeGreaterThan(results[0].revision);
        expect(results[2].revision).toBeGreaterThan(results[1].revision);
        const ours = listDir(snapshotDir).filter((f) => SNAPSHOT_NAME.test(f));
        expect(ours).toEqual([path.basename(results[1].file), path.basename(results[2].file)]);
        expect(fs.readFileSync(other, "utf8")).toBe("another node's snapshot");
        expect(fs.readFileSync(notes, "utf8")).toBe("kept");
    }, 90_000);

    it("a failed save (etcd unreachable) exits 1 within its bound and leaves no file; leftovers of a killed run go", async () => {
        const stale = path.join(snapshotDir, ".local-1-20000101T000000.000Z.db.tmp.part");
        fs.writeFileSync(stale, "half a snapshot");
        const before = listDir(snapshotDir).filter((f) => f !== path.basename(stale));
        const [port] = await freePorts(1);
        const started = Date.now();
        const r = runScript(SNAPSHOT_SCRIPT, env({ ZT_ENDPOINT: `https://127.0.0.1:${port}`, ZT_RETAIN: "2" }));
        expect(r.status).toBe(1);
        expect(r.stdout).toBe("");
        expect(r.stderr).toMatch(/removing .*\.local-1-20000101T000000\.000Z\.db\.tmp\.part, left by an interrupted run/);
        expect(r.stderr).toMatch(new RegExp(`node local-1: etcd does not answer at https://127.0.0.1:${port}: .*unhealthy`));
        expect(Date.now() - started).toBeLessThan(60_000);
        expect(listDir(snapshotDir)).toEqual(before);
    }, 90_000);

    it("is refused without the backup certificate's key: exit 1 naming the file", () => {
        const r = runScript(SNAPSHOT_SCRIPT, env({ ZT_KEY: path.join(pki, "missing.key") }));
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/node local-1: ZT_KEY .*missing\.key is not a readable file/);
    });

    it("an existing, shared directory keeps its mode; the snapshot in it is 0600", () => {
        const shared = path.join(root, "shared-backups");
        fs.mkdirSync(shared, { mode: 0o755 });
        fs.chmodSync(shared, 0o755);
        const r = runScript(SNAPSHOT_SCRIPT, env({ ZT_SNAPSHOT_DIR: shared }));
        expect(r.status).toBe(0);
        const result = parseSnapshotResult(r.stdout);
        expect(result.action).toBe("save");
        expect(mode(shared)).toBe("755");
        expect(r.stderr).toMatch(/note: .*shared-backups is mode 755; the snapshots in it are 0600/);
        if (result.action === "save") {
            expect(mode(result.file)).toBe("600");
        }
    }, 60_000);

    it("verify: the newest snapshot checks out, nothing written", () => {
        const r = runScript(RESTORE_SCRIPT, { ZT_ACTION: "verify", ZT_SNAPSHOT: latest(), ZT_ETCDCTL: ETCDCTL });
        expect(r.status).toBe(0);
        const last = saves[saves.length - 1];
        expect(JSON.parse(r.stdout.trim())).toEqual({
            action: "verify",
            snapshot: last.file,
            size: last.size,
            hash: last.hash,
            revision: last.revision,
            totalKeys: last.totalKeys,
            offsite: null,
        });
    });

    it("restore into a new directory; a second etcd started on it, on other ports, has every key", async () => {
        const parent = path.join(root, "restored");
        fs.mkdirSync(parent);
        const dataDir = path.join(parent, "data");
        restored = new LoopbackEtcd("restored", dataDir, pki, path.join(root, "restored.log"));
        await restored.choosePorts();
        const r = runScript(RESTORE_SCRIPT, restoreEnv(latest(), dataDir, restored));
        expect(r.status).toBe(0);
        const result = parseRestoreResult(r.stdout);
        expect(result).toMatchObject({ action: "restore", snapshot: latest(), name: "restored", dataDir, user: null, tool: "etcdctl", initialClusterToken: "zerotouch-restored" });
        expect(result.revision).toBe(saves[saves.length - 1].revision);
        expect(mode(dataDir)).toBe("700");
        expect(listDir(dataDir)).toEqual(["member"]);
        // The staging directory is gone.
        expect(listDir(parent)).toEqual(["data"]);

        await restored.start("zerotouch-restored");
        for (const [k, v] of Object.entries(KEYS)) {
            expect(restored.etcdctl("get", k, "--print-value-only")).toBe(`${v}\n`);
        }
        expect(restored.etcdctl("get", "/registry/events/e3", "--print-value-only")).toBe("event 3\n");
        // A one-member cluster of its own: the restored member, at its own peer URL.
        const members = JSON.parse(restored.etcdctl("member", "list", "-w", "json")).members as { name: string; peerURLs: string[] }[];
        expect(members.map((m) => [m.name, m.peerURLs])).toEqual([["restored", [restored.peerUrl]]]);
        // It takes writes.
        restored.etcdctl("put", "/zerotouch/after-restore", "yes");
        expect(restored.etcdctl("get", "/zerotouch/after-restore", "--print-value-only")).toBe("yes\n");
    }, 90_000);

    it("restore into an existing empty directory (as etcd's unit makes it, or a disk with an empty lost+found) fills it", () => {
        const dataDir = path.join(root, "empty-data");
        fs.mkdirSync(path.join(dataDir, "lost+found"), { recursive: true, mode: 0o755 });
        const r = runScript(RESTORE_SCRIPT, restoreEnv(latest(), dataDir, { name: "m2", peerUrl: "https://127.0.0.1:1" }));
        expect(r.status).toBe(0);
        expect(parseRestoreResult(r.stdout).dataDir).toBe(dataDir);
        expect(listDir(dataDir)).toEqual(["lost+found", "member"]);
        expect(listDir(path.join(dataDir, "member")).sort()).toEqual(["snap", "wal"]);
        expect(mode(dataDir)).toBe("700");
        expect(listDir(root).filter((f) => f.includes(".restore."))).toEqual([]);
    }, 60_000);

    it("refuses a data directory that is not empty: exit 1, the directory untouched", () => {
        const dataDir = path.join(root, "occupied");
        fs.mkdirSync(path.join(dataDir, "member", "wal"), { recursive: true });
        fs.writeFileSync(path.join(dataDir, "member", "wal", "0.wal"), "precious");
        fs.mkdirSync(path.join(dataDir, "lost+found"));
        const r = runScript(RESTORE_SCRIPT, restoreEnv(latest(), dataDir, { name: "m3", peerUrl: "https://127.0.0.1:1" }));
        expect(r.status).toBe(1);
        expect(r.stdout).toBe("");
        expect(r.stderr).toMatch(/occupied exists and is not empty \(member\): a restore never writes over data/);
        expect(listDir(dataDir)).toEqual(["lost+found", "member"]);
        expect(listDir(path.join(dataDir, "member"))).toEqual(["wal"]);
        expect(fs.readFileSync(path.join(dataDir, "member", "wal", "0.wal"), "utf8")).toBe("precious");
        expect(listDir(root).filter((f) => f.includes(".restore."))).toEqual([]);
    });

    it("refuses a data directory whose lost+found holds files (recovered data)", () => {
        const dataDir = path.join(root, "recovered");
        fs.mkdirSync(path.join(dataDir, "lost+found"), { recursive: true });
        fs.writeFileSync(path.join(dataDir, "lost+found", "#1234"), "recovered by fsck");
        const r = runScript(RESTORE_SCRIPT, restoreEnv(latest(), dataDir, { name: "m6", peerUrl: "https://127.0.0.1:1" }));
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/recovered exists and is not empty \(lost\+found\)/);
        expect(listDir(dataDir)).toEqual(["lost+found"]);
    });

    it.each<[string, (file: string) => void, RegExp]>([
        ["truncated to half", (f) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2)), /is not the size of an etcd snapshot .*truncated\? Nothing was written/],
        ["cut at a page boundary (the sha256 lost)", (f) => fs.truncateSync(f, fs.statSync(f).size - 32), /is not the size of an etcd snapshot/],
        [
            "with one byte changed",
            (f) => {
                const bytes = new Uint8Array(fs.readFileSync(f));
                bytes[4096 + 100] ^= 0xff;
                fs.writeFileSync(f, bytes);
            },
            /the sha256 of the database \([0-9a-f]{64}\) is not the one etcd appended .*damaged\. Nothing was written/,
        ],
        [
            "of random pages with a matching sha256 (not a database)",
            (f) => {
                const body = new Uint8Array(randomBytes(8192));
                const sha = new Uint8Array(createHash("sha256").update(body).digest());
                const bytes = new Uint8Array(body.length + sha.length);
                bytes.set(body);
                bytes.set(sha, body.length);
                fs.writeFileSync(f, bytes);
            },
            /'etcdctl snapshot status' failed: .*(invalid|error|fault|panic).*Nothing was written/i,
        ],
    ])("refuses a snapshot %s before anything is written", (_name, damage, message) => {
        const copy = path.join(root, "damaged.db");
        fs.copyFileSync(latest(), copy);
        damage(copy);
        const parent = fs.mkdtempSync(path.join(root, "never-"));
        const dataDir = path.join(parent, "data");
        const r = runScript(RESTORE_SCRIPT, restoreEnv(copy, dataDir, { name: "m4", peerUrl: "https://127.0.0.1:1" }));
        expect(r.status).toBe(1);
        expect(r.stdout).toBe("");
        expect(r.stderr).toMatch(message);
        expect(listDir(parent)).toEqual([]);
        const verify = runScript(RESTORE_SCRIPT, { ZT_ACTION: "verify", ZT_SNAPSHOT: copy, ZT_ETCDCTL: ETCDCTL });
        expect(verify.status).toBe(1);
        fs.rmSync(copy);
    });

    itAsRoot("restore hands the data directory to ZT_USER", () => {
        const dataDir = path.join(root, "owned");
        const r = runScript(RESTORE_SCRIPT, { ...restoreEnv(latest(), dataDir, { name: "m5", peerUrl: "https://127.0.0.1:1" }), ZT_USER: "nobody" });
        expect(r.status).toBe(0);
        expect(parseRestoreResult(r.stdout).user).toBe("nobody");
        const nobody = Number(spawnSync("id", ["-u", "nobody"], { encoding: "utf8" }).stdout.trim());
        expect(fs.statSync(dataDir).uid).toBe(nobody);
        expect(fs.statSync(path.join(dataDir, "member", "snap", "db")).uid).toBe(nobody);
    }, 60_000);

    describe("create and delete (systemd stood in for; files under a test root)", () => {
        let sysroot = "";
        let bin = "";
        let state = "";
        let timerDir = "";
        let args: EtcdSnapshotStepArgs;
        const installed = (p: string): string => path.join(sysroot, p);
        const unit = (u: string): string => installed(path.join("/etc/systemd/system", u));
        const calls = (): string[] => {
            const file = path.join(state, "calls");
            const lines = fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n") : [];
            fs.rmSync(file, { force: true });
            return lines;
        };
        /** Runs the step's payload as the runner does: from a temporary file, ZT_ACTION set outside. */
        const runStep = (action: "create" | "delete", stepArgs: EtcdSnapshotStepArgs = args, extra: Record<string, string> = {}): Run => {
            const file = path.join(root, `payload-${action}.sh`);
            fs.writeFileSync(file, stepPayload(etcdSnapshotSteps(stepArgs)[0]).stdin, { mode: 0o600 });
            return runScript(file, { ZT_ACTION: action, ZT_ROOT: sysroot, ...extra }, bin);
        };

        beforeAll(() => {
            sysroot = path.join(root, "sysroot");
            bin = path.join(root, "bin");
            state = path.join(root, "systemctl");
            timerDir = path.join(root, "timer-snapshots");
            fakeSystemctl(bin, state);
            args = {
                node: "local-1",
                etcdctl: ETCDCTL,
                endpoint: source!.endpoint,
                tls: { caFile: path.join(pki, "ca.crt"), certFile: path.join(pki, "backup.crt"), keyFile: path.join(pki, "backup.key") },
                dir: timerDir,
                retain: 3,
                schedule: "*-*-* *:00/15:00",
            };
        });

        it("create installs the script, its parameters (0600) and the units, and enables the timer", () => {
            const r = runStep("create");
            expect(r.status).toBe(0);
            expect(parseSnapshotResult(r.stdout)).toEqual({
                action: "create",
                node: "local-1",
                changed: true,
                schedule: "*-*-* *:00/15:00",
                snapshotDir: timerDir,
                retain: 3,
                timer: SNAPSHOT_INSTALLED.timer,
                offsite: null,
            });
            expect(calls()).toEqual(["daemon-reload", "is-enabled --quiet zerotouch-etcd-snapshot.timer", "enable --now zerotouch-etcd-snapshot.timer"]);
            expect(mode(installed(SNAPSHOT_INSTALLED.envFile))).toBe("600");
            expect(mode(installed(SNAPSHOT_INSTALLED.script))).toBe("755");
            expect(fs.readFileSync(installed(SNAPSHOT_INSTALLED.envFile), "utf8")).toContain(
                [
                    `ZT_NODE="local-1"`,
                    `ZT_ETCDCTL="${ETCDCTL}"`,
                    `ZT_ENDPOINT="${source!.endpoint}"`,
                    `ZT_CACERT="${path.join(pki, "ca.crt")}"`,
                    `ZT_CERT="${path.join(pki, "backup.crt")}"`,
                    `ZT_KEY="${path.join(pki, "backup.key")}"`,
                    `ZT_SNAPSHOT_DIR="${timerDir}"`,
                    `ZT_RETAIN="3"`,
                    `ZT_SCHEDULE="*-*-* *:00/15:00"`,
                ].join("\n"),
            );
            const service = fs.readFileSync(unit(SNAPSHOT_INSTALLED.service), "utf8").split("\n");
            for (const line of ["Type=oneshot", "EnvironmentFile=/etc/zerotouch/etcd-snapshot.env", "Environment=ZT_ACTION=save", "ExecStart=/bin/bash /usr/local/lib/zerotouch/etcd-snapshot"]) {
                expect(service).toContain(line);
            }
            const timer = fs.readFileSync(unit(SNAPSHOT_INSTALLED.timer), "utf8").split("\n");
            for (const line of ["OnCalendar=*-*-* *:00/15:00", "RandomizedDelaySec=300", "Persistent=true", "Unit=zerotouch-etcd-snapshot.service", "WantedBy=timers.target"]) {
                expect(timer).toContain(line);
            }
            // The installed script carries no parameters of its own: they are in the env file.
            const script = fs.readFileSync(installed(SNAPSHOT_INSTALLED.script), "utf8");
            expect(script).not.toMatch(/^export ZT_/m);
            expect(script).not.toMatch(/^# zerotouch script parameters$/m);
            expect(script.startsWith("#!/usr/bin/env bash\n")).toBe(true);
        });

        it("systemd-analyze verify accepts the units", () => {
            const r = spawnSync("systemd-analyze", ["verify", "--man=no", unit(SNAPSHOT_INSTALLED.timer), unit(SNAPSHOT_INSTALLED.service)], {
                encoding: "utf8",
                timeout: 30_000,
            });
            expect(r.stdout + r.stderr).not.toMatch(/zerotouch-etcd-snapshot\.(service|timer):\d+:/);
            expect(r.status).toBe(0);
        }, 40_000);

        it("create again changes nothing; a new retention rewrites the files and restarts the timer", () => {
            const again = runStep("create");
            expect(again.status).toBe(0);
            expect(parseSnapshotResult(again.stdout)).toMatchObject({ action: "create", changed: false });
            expect(calls()).toEqual(["is-enabled --quiet zerotouch-etcd-snapshot.timer", "is-active --quiet zerotouch-etcd-snapshot.timer"]);
            const changed = runStep("create", { ...args, retain: 2 });
            expect(parseSnapshotResult(changed.stdout)).toMatchObject({ action: "create", changed: true, retain: 2 });
            expect(calls()).toEqual([
                "daemon-reload",
                "is-enabled --quiet zerotouch-etcd-snapshot.timer",
                "is-active --quiet zerotouch-etcd-snapshot.timer",
                "restart zerotouch-etcd-snapshot.timer",
            ]);
            expect(fs.readFileSync(installed(SNAPSHOT_INSTALLED.envFile), "utf8")).toContain('ZT_RETAIN="2"\n');
        });

        it("refuses a schedule systemd does not accept: exit 2, nothing installed anew", () => {
            const r = runStep("create", { ...args, schedule: "hourlyy" });
            expect(r.status).toBe(2);
            expect(r.stderr).toMatch(/ZT_SCHEDULE 'hourlyy' is not an OnCalendar expression systemd accepts/);
            expect(fs.readFileSync(unit(SNAPSHOT_INSTALLED.timer), "utf8")).toContain("OnCalendar=*-*-* *:00/15:00\n");
            expect(calls()).toEqual([]);
        });

        it("the installed script, run as the service runs it (env file, ZT_ACTION=save), saves a snapshot", () => {
            const fromFile = Object.fromEntries(
                fs
                    .readFileSync(installed(SNAPSHOT_INSTALLED.envFile), "utf8")
                    .split("\n")
                    .filter((l) => /^ZT_[A-Z_]+=/.test(l))
                    .map((l) => {
                        const m = /^(ZT_[A-Z_]+)="(.*)"$/.exec(l);
                        if (!m) {
                            throw new Error(`unexpected env file line: ${l}`);
                        }
                        return [m[1], m[2]];
                    }),
            );
            const results = [1, 2, 3].map(() => {
                const r = runScript(installed(SNAPSHOT_INSTALLED.script), { ...fromFile, ZT_ACTION: "save" });
                expect(r.status).toBe(0);
                return parseSnapshotResult(r.stdout);
            });
            const last = results[2];
            expect(last).toMatchObject({ action: "save", node: "local-1", retain: 2, kept: 2 });
            expect(listDir(timerDir).filter((f) => SNAPSHOT_NAME.test(f))).toHaveLength(2);
        }, 90_000);

        it("the late delete of a replaced payload (Pulumi deletes the old one after creating the new) leaves the timer alone", () => {
            const r = runStep("delete");
            expect(r.status).toBe(0);
            expect(parseSnapshotResult(r.stdout)).toEqual({ action: "delete", node: "local-1", changed: false, snapshotDir: timerDir, snapshotsKept: 2, owner: "newer" });
            expect(r.stderr).toMatch(/a newer deployment of this step owns the timer; nothing to undo/);
            expect(calls()).toEqual([]);
            expect(fs.existsSync(unit(SNAPSHOT_INSTALLED.timer))).toBe(true);
            expect(fs.existsSync(installed(SNAPSHOT_INSTALLED.envFile))).toBe(true);
        });

        it("delete stops and disables the timer, removes what create installed, keeps the snapshots", () => {
            const kept = listDir(timerDir);
            const latest = { ...args, retain: 2 };
            const r = runStep("delete", latest);
            expect(r.status).toBe(0);
            expect(parseSnapshotResult(r.stdout)).toEqual({ action: "delete", node: "local-1", changed: true, snapshotDir: timerDir, snapshotsKept: 2 });
            expect(r.stderr).toMatch(/the snapshots are kept: 2 in .*timer-snapshots/);
            expect(calls()).toEqual(["disable --now zerotouch-etcd-snapshot.timer", "stop zerotouch-etcd-snapshot.service", "daemon-reload"]);
            for (const f of [SNAPSHOT_INSTALLED.script, SNAPSHOT_INSTALLED.envFile]) {
                expect(fs.existsSync(installed(f))).toBe(false);
            }
            expect(fs.existsSync(unit(SNAPSHOT_INSTALLED.service))).toBe(false);
            expect(fs.existsSync(unit(SNAPSHOT_INSTALLED.timer))).toBe(false);
            expect(listDir(timerDir)).toEqual(kept);
            const again = runStep("delete", latest);
            expect(parseSnapshotResult(again.stdout)).toMatchObject({ action: "delete", changed: false, snapshotsKept: 2 });
            expect(calls()).toEqual([]);
        });
    });
});
