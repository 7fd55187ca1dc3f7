import { ChildProcess, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { ETCD_BACKEND_COMMIT, ETCD_WAL_FSYNC, parseWalGateResult, WAL_GATE_SCRIPT, walGateSteps, WalGateStepArgs } from "../components/etcd/walGate";
import { itChecksParameters, NOT_A_RESULT } from "./support/gateScripts";
import type { Recorder } from "./support/mocks";
import { resolve, settle, wireSecret } from "./support/mocks";
import { makeLoopbackCertificates } from "./support/loopbackCerts";
import { CP1, CP1_PARAMS, expectGateStep, expectJsonLibraryAhead } from "./support/nodeSteps";
import { freePorts } from "./support/ports";
import { gateMessage, messageP99Ms, runWalGate as runGate } from "./support/walEvaluate";

/**
 * The gate's stdout and stderr in test/fixtures/etcd were recorded by record.sh with the
 * script's defaults (load bounded to 60 s) against Debian's etcd 3.4.23 on loopback:
 *   gate-normal.*  node cp-1, data on the build machine's ext4 disk: passes
 *   gate-slow.*    node cp-2, data on an ext4 loop device throttled to 40 write IOPS: fails
 */
const FIXTURES = path.join(__dirname, "fixtures", "etcd");
const fixture = (file: string): string => fs.readFileSync(path.join(FIXTURES, file), "utf8");

describe("walGateSteps", () => {
    const base: WalGateStepArgs = { ...CP1, endpoint: "https://127.0.0.1:2379", walThresholdMs: 10, commitThresholdMs: 25 };

    it("is one step, wal-gate, measuring only (no delete), not sensitive, with the JSON library", () => {
        const steps = walGateSteps(base);
        expectGateStep(steps, "wal-gate", WAL_GATE_SCRIPT, {
            ZT_ETCD_ENDPOINT: "https://127.0.0.1:2379",
            ZT_WAL_THRESHOLD_MS: "10",
            ZT_COMMIT_THRESHOLD_MS: "25",
        });
        expectJsonLibraryAhead(steps[0], "etcd disk gate: proves");
    });

    it("passes TLS files, the metrics URL and the load's figures only when given (the script holds the defaults)", () => {
        const [step] = walGateSteps({
            ...base,
            tls: { caFile: "/etc/etcd/pki/ca.crt", certFile: "/etc/etcd/pki/gate.crt", keyFile: "/etc/etcd/pki/gate.key" },
            metricsUrl: "http://127.0.0.1:2381/metrics",
            writes: 2000,
            loadSeconds: 60,
            minSamples: 1000,
            minCommitSamples: 50,
            walThresholdMs: 7.5,
        });
        expect(step.params).toMatchObject({
            ZT_ETCD_CACERT: "/etc/etcd/pki/ca.crt",
            ZT_ETCD_CERT: "/etc/etcd/pki/gate.crt",
            ZT_ETCD_KEY: "/etc/etcd/pki/gate.key",
            ZT_METRICS_URL: "http://127.0.0.1:2381/metrics",
            ZT_WRITES: 2000,
            ZT_LOAD_SECONDS: 60,
            ZT_MIN_SAMPLES: 1000,
            ZT_MIN_COMMIT_SAMPLES: 50,
            ZT_WAL_THRESHOLD_MS: "7.5",
        });
    });

    it.each<[string, Partial<WalGateStepArgs>, RegExp]>([
        ["an upper-case node name", { node: "CP_1" }, /node CP_1: node is "CP_1"; a node name must be a DNS label/],
        ["an endpoint with a path", { endpoint: "https://127.0.0.1:2379/v3" }, /node cp-1: endpoint is "https:\/\/127.0.0.1:2379\/v3"/],
        ["an endpoint that is not http(s)", { endpoint: "unix:///run/etcd.sock" }, /endpoint is "unix/],
        ["a metrics URL with a blank", { metricsUrl: "http://127.0.0.1:2381/ metrics" }, /metricsUrl is/],
        ["a relative CA file", { tls: { caFile: "ca.crt" } }, /tls.caFile is "ca.crt"/],
        ["a key file with a quote", { tls: { certFile: "/a.crt", keyFile: '/a".key' } }, /tls.keyFile is/],
        ["a certificate without its key", { tls: { certFile: "/a.crt" } }, /certFile and keyFile together/],
        ["a zero WAL threshold", { walThresholdMs: 0 }, /walThresholdMs is 0; allowed/],
        ["a commit threshold finer than a nanosecond", { commitThresholdMs: 0.0000001 }, /commitThresholdMs is 1e-7/],
        ["a WAL threshold above the config's range", { walThresholdMs: 1500 }, /walThresholdMs is 1500; allowed: a number of ms above 0 and at most 1000, at most 6 decimals/],
        ["zero writes", { writes: 0 }, /writes is 0; allowed: an integer from 1 to 100000/],
        ["a fractional load time", { loadSeconds: 1.5 }, /loadSeconds is 1.5/],
        ["a load time over 30 minutes", { loadSeconds: 1801 }, /loadSeconds is 1801/],
        ["zero minimum samples", { minSamples: 0 }, /minSamples is 0/],
        ["zero minimum commit samples", { minCommitSamples: 0 }, /minCommitSamples is 0/],
    ])("refuses %s, naming the node", (_name, change, message) => {
        expect(() => walGateSteps({ ...base, ...change })).toThrow(message);
    });
});

describe("parseWalGateResult on the recorded runs", () => {
    const normal = fixture("gate-normal.stdout");
    const slow = fixture("gate-slow.stdout");

    it("normal disk: passes, the script's figures read as it printed them", () => {
        const r = parseWalGateResult(normal);
        expect(r).toMatchObject({ node: "cp-1", host: "203.0.113.10", passed: true, keyPrefix: "/zerotouch/wal-gate/cp-1/", cutShort: false });
        expect(r.walFsync).toMatchObject({ metric: ETCD_WAL_FSYNC, thresholdMs: 10, minSamples: 500, verdict: "passed" });
        expect(r.backendCommit).toMatchObject({ metric: ETCD_BACKEND_COMMIT, thresholdMs: 25, minSamples: 100, verdict: "passed" });
        expect(r.walFsync.samples).toBeGreaterThanOrEqual(500);
        expect(r.backendCommit.samples).toBeGreaterThanOrEqual(100);
        expect(r.written).toBeGreaterThanOrEqual(r.writes);
        const raw = JSON.parse(normal.trim());
        expect(r.walFsync.p99Ms).toBe(raw.metrics[0].p99Ms);
        expect(r.backendCommit.p99Ms).toBe(raw.metrics[1].p99Ms);
    });

    it("throttled disk: fails on the WAL fsync p99, within seconds", () => {
        const r = parseWalGateResult(slow);
        expect(r.passed).toBe(false);
        expect(r.walFsync.verdict).toBe("above-threshold");
        expect(r.walFsync.p99Ms).toBeGreaterThan(10);
        expect(r.loadMs).toBeLessThan(30_000);
    });

    it("takes the last line, after any other output", () => {
        expect(parseWalGateResult(`progress\n{"not":"it"}\n${normal}\n\n`).passed).toBe(true);
    });

    const tamper = (edit: (r: Record<string, any>) => void, from = normal): string => {
        const r = JSON.parse(from.trim());
        edit(r);
        return JSON.stringify(r);
    };

    it.each<[string, string, RegExp]>([
        ["an overall verdict other than the metrics'", tamper((r) => (r.passed = false)), /the result says passed false, its metrics say otherwise/],
        ["one metric twice", tamper((r) => (r.metrics[1] = r.metrics[0])), /must hold etcd_disk_wal_fsync_duration_seconds once/],
        ["an unknown key", tamper((r) => (r.extra = 1)), /unexpected result line.*extra/],
        ["another quantile", tamper((r) => (r.quantile = 0.9)), /unexpected result line: quantile/],
        ...NOT_A_RESULT("curl"),
    ])("refuses %s", (_name, stdout, message) => {
        expect(() => parseWalGateResult(stdout)).toThrow(message);
    });
});

describe("wal-fsync-gate.sh, checks that need no etcd", () => {
    const valid = { ZT_ETCD_ENDPOINT: "http://127.0.0.1:9", ZT_METRICS_URL: "http://127.0.0.1:9/metrics" };
    itChecksParameters(runGate, valid, [
        ["no endpoint", { ZT_ETCD_ENDPOINT: "" }, /ZT_ETCD_ENDPOINT must be an etcd client URL/],
        ["an endpoint with a path", { ZT_ETCD_ENDPOINT: "http://127.0.0.1:2379/v3" }, /ZT_ETCD_ENDPOINT/],
        ["a metrics URL that is not http", { ZT_METRICS_URL: "ftp://127.0.0.1/metrics" }, /ZT_METRICS_URL must be an http\(s\) URL/],
        ["a relative CA file", { ZT_ETCD_CACERT: "ca.crt" }, /ZT_ETCD_CACERT must be an absolute path/],
        ["a certificate without its key", { ZT_ETCD_CERT: "/etc/hostname" }, /ZT_ETCD_CERT and ZT_ETCD_KEY go together/],
        ["zero writes", { ZT_WRITES: "0" }, /ZT_WRITES must be an integer from 1 to 100000/],
        ["a load time over 30 minutes", { ZT_LOAD_SECONDS: "1801" }, /ZT_LOAD_SECONDS must be a whole number of seconds from 1 to 1800/],
        ["a zero WAL threshold", { ZT_WAL_THRESHOLD_MS: "0.000" }, /ZT_WAL_THRESHOLD_MS must be a positive number/],
        ["an exponent commit threshold", { ZT_COMMIT_THRESHOLD_MS: "1e-3" }, /ZT_COMMIT_THRESHOLD_MS must be a positive number/],
        ["a minimum of 0 samples", { ZT_MIN_SAMPLES: "0" }, /ZT_MIN_SAMPLES must be an integer/],
        ["a minimum commit count that is not a number", { ZT_MIN_COMMIT_SAMPLES: "ten" }, /ZT_MIN_COMMIT_SAMPLES must be an integer/],
    ]);

    it("says so when etcd does not answer: exit 1, nothing on stdout", async () => {
        const [port] = await freePorts(1);
        const r = runGate({ ZT_ACTION: "create", ...CP1_PARAMS, ...valid, ZT_ETCD_ENDPOINT: `http://127.0.0.1:${port}` });
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(new RegExp(`node cp-1: etcd does not answer at http://127.0.0.1:${port}`));
        expect(r.stdout).toBe("");
    });
});

/**
 * A single-member etcd on loopback for the test: TLS with client certificates on its client
 * URL, as zerotouch deploys it, metrics over plain HTTP; data in a temporary directory.
 */
class TestEtcd {
    /** Made by start(), so a run that filters these tests out leaves nothing behind. */
    dir = "";
    client = 0;
    metrics = 0;
    private proc: ChildProcess | undefined;

    get endpoint(): string {
        return `https://127.0.0.1:${this.client}`;
    }
    get metricsUrl(): string {
        return `http://127.0.0.1:${this.metrics}/metrics`;
    }
    file(name: string): string {
        return path.join(this.dir, "pki", name);
    }

    async start(): Promise<void> {
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "zt-wal-gate-"));
        makeLoopbackCertificates(path.join(this.dir, "pki"), { file: "client", cn: "zerotouch-wal-gate" });
        const [client, peer, metrics] = await freePorts(3);
        this.client = client;
        this.metrics = metrics;
        const log = fs.openSync(path.join(this.dir, "etcd.log"), "w");
        this.proc = spawn(
            "etcd",
            [
                "--name=default",
                `--data-dir=${path.join(this.dir, "data")}`,
                `--listen-client-urls=${this.endpoint}`,
                `--advertise-client-urls=${this.endpoint}`,
                `--listen-peer-urls=http://127.0.0.1:${peer}`,
                `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
                `--initial-cluster=default=http://127.0.0.1:${peer}`,
                `--listen-metrics-urls=http://127.0.0.1:${metrics}`,
                `--cert-file=${this.file("server.crt")}`,
                `--key-file=${this.file("server.key")}`,
                `--trusted-ca-file=${this.file("ca.crt")}`,
                "--client-cert-auth",
            ],
            { stdio: ["ignore", log, log] },
        );
        fs.closeSync(log);
        // Bounded wait for health.
        const deadline = Date.now() + 30_000;
        for (;;) {
            if (this.proc.exitCode !== null) {
                throw new Error(`etcd exited: ${fs.readFileSync(path.join(this.dir, "etcd.log"), "utf8").slice(-2000)}`);
            }
            try {
                const res = await fetch(`http://127.0.0.1:${metrics}/health`, { signal: AbortSignal.timeout(1000) });
                if (res.ok && ((await res.json()) as { health?: string }).health === "true") {
                    return;
                }
            } catch {
                // not yet
            }
            if (Date.now() > deadline) {
                throw new Error("etcd did not become healthy within 30 s");
            }
            await new Promise((r) => setTimeout(r, 200));
        }
    }

    async stop(): Promise<void> {
        const proc = this.proc;
        if (proc !== undefined && proc.exitCode === null && proc.signalCode === null) {
            const exited = new Promise<void>((res) => proc.once("exit", () => res()));
            proc.kill("SIGTERM");
            const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
            await exited;
            clearTimeout(killer);
        }
        if (this.dir !== "") {
            fs.rmSync(this.dir, { recursive: true, force: true });
        }
    }

    /** etcdctl against this etcd, with the client certificate. */
    etcdctl(...args: string[]): string {
        const r = spawnSync(
            "etcdctl",
            [
                `--endpoints=${this.endpoint}`,
                `--cacert=${this.file("ca.crt")}`,
                `--cert=${this.file("client.crt")}`,
                `--key=${this.file("client.key")}`,
                "--dial-timeout=5s",
                "--command-timeout=10s",
                ...args,
            ],
            { env: { ...process.env, ETCDCTL_API: "3" }, encoding: "utf8", timeout: 30_000 },
        );
        if (r.status !== 0) {
            throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
        }
        return r.stdout;
    }

    /** Every key and value, to compare etcd before and after. */
    everything(): string {
        return this.etcdctl("get", "", "--from-key");
    }
}

describe("wal-fsync-gate.sh against a real etcd (TLS with client certificates) on loopback", () => {
    const etcd = new TestEtcd();

    beforeAll(async () => {
        await etcd.start();
        etcd.etcdctl("put", "/registry/untouched", "value that must survive");
    }, 60_000);

    afterAll(async () => {
        await etcd.stop();
    }, 30_000);

    /**
     * Small minimums, so a run takes about a second on a good disk; thresholds generous, so a
     * shared build machine's occasional stall does not fail a run meant to pass.
     */
    const env = (extra: Record<string, string> = {}): Record<string, string> => ({
        ZT_ACTION: "create",
        ZT_NODE: "local-1",
        ZT_HOST: "127.0.0.1",
        ZT_ETCD_ENDPOINT: etcd.endpoint,
        ZT_ETCD_CACERT: etcd.file("ca.crt"),
        ZT_ETCD_CERT: etcd.file("client.crt"),
        ZT_ETCD_KEY: etcd.file("client.key"),
        ZT_METRICS_URL: etcd.metricsUrl,
        ZT_WRITES: "200",
        ZT_MIN_SAMPLES: "200",
        ZT_MIN_COMMIT_SAMPLES: "5",
        ZT_LOAD_SECONDS: "30",
        ZT_WAL_THRESHOLD_MS: "1000",
        ZT_COMMIT_THRESHOLD_MS: "1000",
        ...extra,
    });
    const gateKeys = (): string[] =>
        etcd
            .etcdctl("get", "/zerotouch/wal-gate/", "--prefix", "--keys-only")
            .split("\n")
            .filter((k) => k !== "");

    it("passes with a generous threshold; each metric's message names its figures", () => {
        const before = etcd.everything();
        const r = runGate(env());
        expect(r.stderr).toMatch(/etcd disk gate passed on node local-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of \d+\.\d\d ms/);
        expect(r.status).toBe(0);
        const result = parseWalGateResult(r.stdout);
        expect(result).toMatchObject({ node: "local-1", endpoint: etcd.endpoint, passed: true, keyPrefix: "/zerotouch/wal-gate/local-1/" });
        expect(result.written).toBeGreaterThanOrEqual(200);
        expect(result.walFsync.samples).toBeGreaterThanOrEqual(200);
        expect(result.backendCommit.samples).toBeGreaterThanOrEqual(5);
        for (const [m, label] of [[result.walFsync, "WAL fsync"], [result.backendCommit, "backend commit"]] as const) {
            const { message, stderrLine } = gateMessage(r.stderr, m.metric);
            expect(stderrLine).toBe(`wal-fsync-gate: ${message}`);
            expect(message).toMatch(
                new RegExp(`^etcd disk gate passed on node local-1: ${m.metric} gives a ${label} p99 of \\d+\\.\\d\\d ms over ${m.samples} samples, within the threshold of 1000 ms\\.`),
            );
            expect(Math.abs(messageP99Ms(message) - (m.p99Ms ?? NaN))).toBeLessThanOrEqual(0.005 + 1e-9);
        }
        expect(gateKeys()).toEqual([]);
        expect(etcd.everything()).toBe(before);
    });

    it("fails with a tiny threshold: exit 3, the message on stderr, the result still on stdout", () => {
        // Written with trailing zeros on purpose: the script spells it as JavaScript does.
        const r = runGate(env({ ZT_WAL_THRESHOLD_MS: "0.001000" }));
        expect(r.status).toBe(3);
        const result = parseWalGateResult(r.stdout);
        expect(result.passed).toBe(false);
        expect(result.walFsync).toMatchObject({ verdict: "above-threshold", thresholdMs: 0.001 });
        expect(result.backendCommit.verdict).toBe("passed");
        // Only the failed metric's message, as is: what stops the deployment.
        const { message, stderrLine } = gateMessage(r.stderr, ETCD_WAL_FSYNC);
        expect(stderrLine).toBe(message);
        expect(gateMessage(r.stderr, ETCD_BACKEND_COMMIT).stderrLine).toMatch(/^wal-fsync-gate: etcd disk gate passed/);
        expect(message).toMatch(
            new RegExp(
                "^etcd disk gate failed on node local-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of " +
                    `\\d+\\.\\d\\d ms over ${result.walFsync.samples} samples, above the threshold of 0\\.001 ms\\.`,
            ),
        );
        expect(Math.abs(messageP99Ms(message) - (result.walFsync.p99Ms ?? NaN))).toBeLessThanOrEqual(0.005 + 1e-9);
        expect(message).toContain("pulumi config set --path 'zerotouch:etcd.walFsyncThresholdMs' <ms>");
        expect(gateKeys()).toEqual([]);
    });

    it("fails too few samples when the load has no time for them, saying how many were seen and needed", () => {
        const r = runGate(env({ ZT_MIN_SAMPLES: "1000000", ZT_LOAD_SECONDS: "1" }));
        expect(r.status).toBe(3);
        const result = parseWalGateResult(r.stdout);
        expect(result).toMatchObject({ cutShort: true, passed: false });
        expect(result.walFsync.verdict).toBe("too-few-samples");
        const { message, stderrLine } = gateMessage(r.stderr, ETCD_WAL_FSYNC);
        expect(stderrLine).toBe(message);
        expect(message).toMatch(/^etcd disk gate failed on node local-1: only \d+ samples of etcd_disk_wal_fsync_duration_seconds \(WAL fsync\) were seen, 1000000 are needed/);
        expect(gateKeys()).toEqual([]);
    });

    it("runs again and leaves etcd's keys as they were; removes keys an interrupted run left", () => {
        etcd.etcdctl("put", "/zerotouch/wal-gate/local-1/000042", "left by a killed run");
        etcd.etcdctl("put", "/zerotouch/wal-gate/local-10/000001", "another node's prefix");
        const first = runGate(env());
        expect(first.status).toBe(0);
        expect(first.stderr).toMatch(/deleted 1 keys left under \/zerotouch\/wal-gate\/local-1\/ by an interrupted run/);
        expect(gateKeys()).toEqual(["/zerotouch/wal-gate/local-10/000001"]);
        etcd.etcdctl("del", "/zerotouch/wal-gate/local-10/000001");
        const before = etcd.everything();
        const second = runGate(env());
        expect(second.status).toBe(0);
        expect(second.stderr).not.toMatch(/interrupted run/);
        expect(gateKeys()).toEqual([]);
        expect(etcd.everything()).toBe(before);
        expect(etcd.etcdctl("get", "/registry/untouched", "--print-value-only")).toBe("value that must survive\n");
    });

    it("is refused without the client certificate: exit 1, nothing on stdout", () => {
        const r = runGate({ ...env(), ZT_ETCD_CERT: "", ZT_ETCD_KEY: "" });
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/node local-1: etcd does not answer at https:\/\/127\.0\.0\.1:\d+ \(a delete of \/zerotouch\/wal-gate\/local-1\/\)/);
        expect(r.stdout).toBe("");
    });
});

describe("WalGate (component, under mocks)", () => {
    const PASS_STDOUT = fixture("gate-normal.stdout");
    const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nzerotouchSECRET\n-----END OPENSSH PRIVATE KEY-----\n";
    const target = { host: "203.0.113.10", port: 22, user: "root" };
    let recorder: Recorder;
    let gate: typeof import("../components/etcd/walGate");
    let command: typeof import("@pulumi/command");
    let connection: typeof import("../components/lib/connection");

    beforeAll(async () => {
        const mocks = await import("./support/mocks");
        recorder = await mocks.installMocks({
            stdoutFor: (type, name) => (type === "command:remote:Command" && name.endsWith("-gate") ? PASS_STDOUT : undefined),
        });
        gate = await import("../components/etcd/walGate");
        command = await import("@pulumi/command");
        connection = await import("../components/lib/connection");
    });
    afterEach(settle);

    function newGate(name: string, extra: Partial<import("../components/etcd/walGate").WalGateArgs> = {}) {
        const started = new command.remote.Command(`${name}-etcd-start`, {
            connection: connection.sshConnection(target, PRIVATE_KEY),
            create: "true",
        });
        const g = new gate.WalGate(name, {
            node: "cp-1",
            target,
            connection: connection.sshConnection(target, PRIVATE_KEY),
            endpoint: "https://127.0.0.1:2379",
            tls: { caFile: "/etc/etcd/pki/ca.crt", certFile: "/etc/etcd/pki/gate.crt", keyFile: "/etc/etcd/pki/gate.key" },
            walThresholdMs: 10,
            commitThresholdMs: 25,
            dependsOn: [started],
            ...extra,
        });
        return { g, started };
    }

    it("registers under its token with one child, ${name}-gate, after etcd started", async () => {
        const { g } = newGate("cp-1-etcd-disk");
        await resolve(g.walFsyncP99Ms);
        expect(recorder.byName("cp-1-etcd-disk").type).toBe("zerotouch:etcd:WalGate");
        const child = recorder.byName("cp-1-etcd-disk-gate");
        expect(child.type).toBe("command:remote:Command");
        expect(child.parentUrn).toBe(recorder.byName("cp-1-etcd-disk").urn);
        expect(child.urn).toMatch(/zerotouch:etcd:WalGate\$command:remote:Command::cp-1-etcd-disk-gate$/);
        expect(recorder.dependsOn("cp-1-etcd-disk-gate", "cp-1-etcd-disk-etcd-start")).toBe(true);
        // Measurement only: no delete command; its output is logged.
        expect(child.inputs.delete).toBeUndefined();
        expect(child.inputs.logging).toBeUndefined();
    });

    it("keeps the private key secret and out of the payload; parameters only in the payload", async () => {
        const { g } = newGate("cp-2-etcd-disk");
        await resolve(g.walFsyncP99Ms);
        const child = recorder.byName("cp-2-etcd-disk-gate");
        expect(wireSecret(child.wire, ["connection", "privateKey"])).toBe(true);
        const notConnection = JSON.stringify({ ...child.inputs, connection: undefined });
        expect(notConnection).not.toContain("zerotouchSECRET");
        expect(child.inputs.stdin).toContain("export ZT_ETCD_ENDPOINT='https://127.0.0.1:2379'");
        expect(child.inputs.stdin).toContain("export ZT_ETCD_KEY='/etc/etcd/pki/gate.key'");
        expect(child.inputs.stdin).toContain("export ZT_WAL_THRESHOLD_MS='10'");
        expect(child.inputs.create).not.toMatch(/cp-1|127\.0\.0\.1|etcd/);
    });

    it("reads both p99s from the command's stdout", async () => {
        const { g } = newGate("cp-3-etcd-disk");
        const expected = parseWalGateResult(PASS_STDOUT);
        expect(await resolve(g.walFsyncP99Ms)).toBe(expected.walFsync.p99Ms);
        expect(await resolve(g.backendCommitP99Ms)).toBe(expected.backendCommit.p99Ms);
        expect((await resolve(g.result)).passed).toBe(true);
    });

    it("measures again when a threshold, the endpoint, the node or its host change, and only then", async () => {
        const triggersOf = async (name: string, extra = {}): Promise<unknown> => {
            const { g } = newGate(name, extra);
            await resolve(g.walFsyncP99Ms);
            return recorder.byName(`${name}-gate`).inputs.triggers;
        };
        const base = await triggersOf("t-base");
        expect(base).toHaveLength(1);
        expect(await triggersOf("t-same")).toEqual(base);
        expect(await triggersOf("t-port", { target: { ...target, port: 2222 } })).toEqual(base);
        expect(await triggersOf("t-wal", { walThresholdMs: 12 })).not.toEqual(base);
        expect(await triggersOf("t-commit", { commitThresholdMs: 30 })).not.toEqual(base);
        expect(await triggersOf("t-endpoint", { endpoint: "https://10.0.0.1:2379" })).not.toEqual(base);
        expect(await triggersOf("t-node", { node: "cp-9" })).not.toEqual(base);
        expect(await triggersOf("t-host", { target: { ...target, host: "203.0.113.99" } })).not.toEqual(base);
    });

    it("refuses invalid args before registering anything of its own", async () => {
        expect(() => newGate("bad-etcd-disk", { walThresholdMs: 0 })).toThrow(/etcd disk gate for node cp-1: walThresholdMs is 0/);
        await settle();
        expect(recorder.resources.filter((r) => r.name.startsWith("bad-etcd-disk") && r.name !== "bad-etcd-disk-etcd-start")).toEqual([]);
    });
});
