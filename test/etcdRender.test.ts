import { ChildProcess, execFile, execFileSync, spawn } from "child_process";
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";

import { CA_USES, CLIENT_USES, memberSans, PEER_USES, SERVER_USES } from "../components/etcd/pki";
import {
    DEFAULT_ETCD_PORTS,
    ETCD_BINARY,
    ETCD_CIPHER_SUITES,
    EtcdClusterSpec,
    EtcdPorts,
    etcdFlags,
    etcdPkiFiles,
    etcdUnit,
    hostPort,
    systemdQuote,
} from "../components/etcd/render";
import { extensions } from "./support/etcdCerts";
import { freePorts } from "./support/ports";

const run = promisify(execFile);

/** `--flag=value` list → map (flags are unique). */
function flagMap(flags: readonly string[]): Record<string, string> {
    const map: Record<string, string> = {};
    for (const f of flags) {
        const m = /^--([a-z0-9-]+)=(.*)$/.exec(f);
        if (!m) {
            throw new Error(`not a --flag=value: ${f}`);
        }
        expect(map[m[1]]).toBeUndefined();
        map[m[1]] = m[2];
    }
    return map;
}

/** A cluster spec of members (name → address, in this order) and a state, with the prod token. */
const cluster = (addresses: Record<string, string>, state: EtcdClusterSpec["state"] = "new"): EtcdClusterSpec => ({
    members: Object.fromEntries(Object.entries(addresses).map(([name, address]) => [name, { address }])),
    state,
    token: "zerotouch-prod",
});
const ONE = cluster({ "cp-1": "203.0.113.11" });
const THREE = cluster({ "cp-3": "203.0.113.13", "cp-1": "203.0.113.11", "cp-2": "203.0.113.12" });
const V6 = cluster({ "cp-1": "2001:DB8:0:0::11", "cp-2": "2001:db8::12", "cp-3": "203.0.113.13" });
const FIVE = cluster(Object.fromEntries([5, 4, 3, 2, 1].map((i) => [`cp-${i}`, `198.51.100.${i}`])), "existing");

describe("etcdFlags", () => {
    test("one IPv4 member with the defaults, flag by flag and in order", () => {
        expect(etcdFlags({ name: "cp-1", dataDir: "/var/lib/etcd" }, ONE)).toEqual([
            "--name=cp-1",
            "--data-dir=/var/lib/etcd",
            "--listen-client-urls=https://203.0.113.11:2379,https://127.0.0.1:2379",
            "--advertise-client-urls=https://203.0.113.11:2379",
            "--listen-peer-urls=https://203.0.113.11:2380",
            "--initial-advertise-peer-urls=https://203.0.113.11:2380",
            "--initial-cluster=cp-1=https://203.0.113.11:2380",
            "--initial-cluster-state=new",
            "--initial-cluster-token=zerotouch-prod",
            "--client-cert-auth=true",
            "--trusted-ca-file=/etc/etcd/pki/ca.crt",
            "--cert-file=/etc/etcd/pki/server.crt",
            "--key-file=/etc/etcd/pki/server.key",
            "--peer-client-cert-auth=true",
            "--peer-trusted-ca-file=/etc/etcd/pki/ca.crt",
            "--peer-cert-file=/etc/etcd/pki/peer.crt",
            "--peer-key-file=/etc/etcd/pki/peer.key",
            "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305," +
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--heartbeat-interval=100",
            "--election-timeout=1000",
            "--quota-backend-bytes=8589934592",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=1h",
            "--snapshot-count=10000",
            "--logger=zap",
        ]);
    });

    test.each([
        ["1 member", ONE, "cp-1", "cp-1=https://203.0.113.11:2380"],
        ["3 members given out of order", THREE, "cp-2", "cp-1=https://203.0.113.11:2380,cp-2=https://203.0.113.12:2380,cp-3=https://203.0.113.13:2380"],
        [
            "5 members",
            FIVE,
            "cp-5",
            [1, 2, 3, 4, 5].map((i) => `cp-${i}=https://198.51.100.${i}:2380`).join(","),
        ],
        ["IPv6 in brackets, canonical", V6, "cp-3", "cp-1=https://[2001:db8::11]:2380,cp-2=https://[2001:db8::12]:2380,cp-3=https://203.0.113.13:2380"],
    ])("--initial-cluster of %s: sorted by name", (_what, cluster, member, expected) => {
        expect(flagMap(etcdFlags({ name: member, dataDir: "/var/lib/etcd" }, cluster))["initial-cluster"]).toBe(expected);
    });

    test.each([
        ["an IPv4 member", THREE, "cp-2", "203.0.113.12"],
        ["an IPv6 member", V6, "cp-1", "[2001:db8::11]"],
        ["a member in a 5-member cluster", FIVE, "cp-4", "198.51.100.4"],
    ])("%s listens and advertises on its own address; clients also on 127.0.0.1", (_what, cluster, member, host) => {
        const f = flagMap(etcdFlags({ name: member, dataDir: "/var/lib/etcd" }, cluster));
        expect(f.name).toBe(member);
        expect(f["listen-client-urls"]).toBe(`https://${host}:2379,https://127.0.0.1:2379`);
        expect(f["advertise-client-urls"]).toBe(`https://${host}:2379`);
        expect(f["listen-peer-urls"]).toBe(`https://${host}:2380`);
        expect(f["initial-advertise-peer-urls"]).toBe(`https://${host}:2380`);
        expect(f["listen-metrics-urls"]).toBe("http://127.0.0.1:2381");
    });

    test.each([
        ["new", THREE],
        ["existing", FIVE],
    ])("--initial-cluster-state %s", (state, cluster) => {
        const name = Object.keys(cluster.members)[0];
        expect(flagMap(etcdFlags({ name, dataDir: "/var/lib/etcd" }, cluster))["initial-cluster-state"]).toBe(state);
    });

    test("the node's data path and a PKI directory of choice", () => {
        const f = flagMap(etcdFlags({ name: "cp-1", dataDir: "/srv/etcd" }, ONE, { pkiDir: "/opt/pki" }));
        expect(f["data-dir"]).toBe("/srv/etcd");
        expect(f["trusted-ca-file"]).toBe("/opt/pki/ca.crt");
        expect(f["peer-key-file"]).toBe("/opt/pki/peer.key");
        expect(etcdPkiFiles("/opt/pki").serverCert).toBe("/opt/pki/server.crt");
    });

    test("ports per member: listen and advertise URLs and the peers' URLs follow them", () => {
        const cluster: EtcdClusterSpec = {
            members: {
                m1: { address: "127.0.0.1", ports: { client: 32379, peer: 32380, metrics: 32381 } },
                m2: { address: "127.0.0.1", ports: { client: 42379, peer: 42380, metrics: 42381 } },
            },
            state: "new",
            token: "t",
        };
        const f = flagMap(etcdFlags({ name: "m2", dataDir: "/tmp/m2" }, cluster));
        // The member's address is the loopback address: listed once.
        expect(f["listen-client-urls"]).toBe("https://127.0.0.1:42379");
        expect(f["listen-peer-urls"]).toBe("https://127.0.0.1:42380");
        expect(f["listen-metrics-urls"]).toBe("http://127.0.0.1:42381");
        expect(f["initial-cluster"]).toBe("m1=https://127.0.0.1:32380,m2=https://127.0.0.1:42380");
        expect(DEFAULT_ETCD_PORTS).toEqual({ client: 2379, peer: 2380, metrics: 2381 });
    });

    test("tuning options replace their defaults", () => {
        const f = flagMap(
            etcdFlags({ name: "cp-1", dataDir: "/var/lib/etcd" }, ONE, {
                heartbeatIntervalMs: 250,
                electionTimeoutMs: 2500,
                quotaBackendBytes: 2 * 1024 ** 3,
                autoCompactionRetention: "30m",
                snapshotCount: 5000,
            }),
        );
        expect([f["heartbeat-interval"], f["election-timeout"], f["quota-backend-bytes"], f["auto-compaction-retention"], f["snapshot-count"]]).toEqual([
            "250",
            "2500",
            "2147483648",
            "30m",
            "5000",
        ]);
    });

    test("TLS 1.2 suites: ECDHE with AEAD ciphers only", () => {
        for (const suite of ETCD_CIPHER_SUITES) {
            expect(suite).toMatch(/^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305)$/);
        }
    });

    test("deterministic: the same input, in any key order, gives the same flags", () => {
        const reordered: EtcdClusterSpec = { ...THREE, members: Object.fromEntries(Object.entries(THREE.members).reverse()) };
        const a = etcdFlags({ name: "cp-1", dataDir: "/var/lib/etcd" }, THREE);
        expect(etcdFlags({ name: "cp-1", dataDir: "/var/lib/etcd" }, reordered)).toEqual(a);
    });

    test.each([
        ["a member outside the cluster", { name: "cp-9", dataDir: "/var/lib/etcd" }, THREE, {}, /etcd member cp-9: name is "cp-9"; allowed: one of the cluster's members \(cp-1, cp-2, cp-3\)/],
        ["a relative data dir", { name: "cp-1", dataDir: "var/lib/etcd" }, ONE, {}, /etcd member cp-1: dataDir is "var\/lib\/etcd"/],
        ["a data dir with a space", { name: "cp-1", dataDir: "/var/lib/my etcd" }, ONE, {}, /dataDir is "\/var\/lib\/my etcd"/],
        ["a data dir of /", { name: "cp-1", dataDir: "/" }, ONE, {}, /dataDir is "\/"/],
        ["an election timeout under 5 heartbeats", { name: "cp-1", dataDir: "/d" }, ONE, { heartbeatIntervalMs: 300 }, /electionTimeoutMs is 1000; allowed: an integer from 1500 to 50000/],
        ["a quota above 8 GiB", { name: "cp-1", dataDir: "/d" }, ONE, { quotaBackendBytes: 16 * 1024 ** 3 }, /quotaBackendBytes is 17179869184/],
        ["a bad retention", { name: "cp-1", dataDir: "/d" }, ONE, { autoCompactionRetention: "1 hour" }, /autoCompactionRetention is "1 hour"/],
        ["a token with a space", { name: "cp-1", dataDir: "/d" }, { ...ONE, token: "a b" }, {}, /token is "a b"/],
        ["a state other than new/existing", { name: "cp-1", dataDir: "/d" }, { ...ONE, state: "join" }, {}, /state is "join"; allowed: new or existing/],
        ["a host name as address", { name: "cp-1", dataDir: "/d" }, { ...ONE, members: { "cp-1": { address: "cp-1.example" } } }, {}, /etcd member cp-1: address is "cp-1.example"/],
        ["two members on one address and port", { name: "a", dataDir: "/d" }, { ...ONE, members: { a: { address: "10.0.0.1" }, b: { address: "10.0.0.1" } } }, {}, /etcd member b: address is "10.0.0.1:2379"; allowed: an address and port no other member uses \(member a uses it\)/],
        ["the same port twice", { name: "a", dataDir: "/d" }, { ...ONE, members: { a: { address: "10.0.0.1", ports: { metrics: 2379 } } } }, {}, /etcd member a: ports is/],
        ["an empty cluster", { name: "a", dataDir: "/d" }, { ...ONE, members: {} }, {}, /members is empty/],
    ])("refuses %s", (_what, member, cluster, opts, message) => {
        expect(() => etcdFlags(member, cluster as EtcdClusterSpec, opts)).toThrow(message);
    });
});

describe("systemdQuote", () => {
    test.each([
        ["--name=cp-1", "--name=cp-1"],
        ["--initial-cluster=a=https://[2001:db8::1]:2380,b=https://10.0.0.2:2380", "--initial-cluster=a=https://[2001:db8::1]:2380,b=https://10.0.0.2:2380"],
        ["100%", "100%%"],
        ["$HOME", "$$HOME"],
        ["a b", '"a b"'],
        ['say "hi"', '"say \\"hi\\""'],
        ["back\\slash", '"back\\\\slash"'],
        ["it's", '"it\'s"'],
        [";", '";"'],
        ["", '""'],
    ])("%j → %s", (word, quoted) => {
        expect(systemdQuote(word)).toBe(quoted);
    });

    test("refuses a line break", () => {
        expect(() => systemdQuote("a\nb")).toThrow(/line break/);
    });
});

/** The ExecStart= command line of a unit, continuation lines joined, split into words (no quoting needed here). */
function execStart(unit: string): string[] {
    const m = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit);
    if (!m) {
        throw new Error("no ExecStart=");
    }
    return m[1].replace(/\\\n/g, " ").trim().split(/\s+/);
}

describe("etcdUnit", () => {
    const member = { name: "cp-2", dataDir: "/var/lib/etcd" };

    test("a notify service running the flags as the etcd user, restarted always, with an fd limit", () => {
        const unit = etcdUnit(member, THREE, { source: "release" });
        const lines = unit.split("\n");
        for (const line of [
            "[Unit]",
            "[Service]",
            "Type=notify",
            "User=etcd",
            "Group=etcd",
            "Restart=always",
            "RestartSec=5s",
            "LimitNOFILE=65536",
            "[Install]",
            "WantedBy=multi-user.target",
            "ExecStartPre=+/usr/bin/install -d -o etcd -g etcd -m 0700 /var/lib/etcd",
        ]) {
            expect(lines).toContain(line);
        }
        expect(execStart(unit)).toEqual(["/usr/local/bin/etcd", ...etcdFlags(member, THREE)]);
        // Everything is on the command line: no environment, no config file.
        expect(unit).not.toMatch(/^Environment(File)?=/m);
        expect(unit).not.toMatch(/--config-file/);
        expect(unit.endsWith("\n")).toBe(true);
    });

    test("ExecStart: the pinned release's binary or the OS package's", () => {
        expect(ETCD_BINARY).toEqual({ release: "/usr/local/bin/etcd", preinstalled: "/usr/bin/etcd" });
        expect(execStart(etcdUnit(member, THREE, { source: "preinstalled" }))[0]).toBe("/usr/bin/etcd");
        expect(execStart(etcdUnit(member, THREE, { source: "release" }))[0]).toBe("/usr/local/bin/etcd");
    });

    test("deterministic, and the flag options reach ExecStart", () => {
        const a = etcdUnit(member, THREE, { source: "release", heartbeatIntervalMs: 200, electionTimeoutMs: 2000 });
        expect(etcdUnit(member, { ...THREE, members: Object.fromEntries(Object.entries(THREE.members).reverse()) }, { source: "release", heartbeatIntervalMs: 200, electionTimeoutMs: 2000 })).toBe(a);
        expect(execStart(a)).toContain("--heartbeat-interval=200");
        expect(etcdUnit(member, THREE, { source: "release" })).not.toBe(a);
    });

    test("with a bootstrap environment file, the unit depends on the member alone", () => {
        const opts = { source: "release" as const, bootstrapEnvFile: "/etc/etcd/bootstrap.env" };
        const alone: EtcdClusterSpec = { members: { "cp-2": THREE.members["cp-2"] }, state: "new", token: THREE.token };
        const unit = etcdUnit(member, alone, opts);
        expect(unit.split("\n")).toContain("EnvironmentFile=-/etc/etcd/bootstrap.env");
        const flags = execStart(unit);
        expect(flags.filter((f) => f.startsWith("--initial-cluster=") || f.startsWith("--initial-cluster-state="))).toEqual([]);
        expect(flags).toContain("--initial-cluster-token=zerotouch-prod");
        // Adding members (or the state they are in) leaves the unit as it was.
        expect(etcdUnit(member, THREE, opts)).toBe(unit);
        expect(etcdUnit(member, { ...FIVE, members: { ...FIVE.members, "cp-2": THREE.members["cp-2"] } }, opts)).toBe(unit);
        expect(() => etcdUnit(member, alone, { ...opts, bootstrapEnvFile: "etc/etcd.env" })).toThrow(/bootstrapEnvFile is "etc\/etcd.env"; allowed: a normalized absolute path/);
    });

    test("another user owns the data directory and runs etcd; root is refused", () => {
        const unit = etcdUnit(member, THREE, { source: "release", user: "kv" });
        expect(unit).toContain("User=kv\nGroup=kv\n");
        expect(unit).toContain("install -d -o kv -g kv -m 0700 /var/lib/etcd");
        expect(() => etcdUnit(member, THREE, { source: "release", user: "root" })).toThrow(/user is "root"/);
        expect(() => etcdUnit(member, THREE, { source: "docker" as never })).toThrow(/source is "docker"; allowed: release or preinstalled/);
    });
});

/*
 * Real runs: Debian's etcd on loopback, with certificates made by openssl exactly as the PKI
 * component asks for them (same SANs, same usages), and the flags as rendered.
 */

const ETCD = ETCD_BINARY.preinstalled;
const ETCDCTL = "/usr/bin/etcdctl";
const OPENSSL = "/usr/bin/openssl";
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

function openssl(args: string[]): string {
    return execFileSync(OPENSSL, args, { encoding: "utf8", timeout: 15000, stdio: ["ignore", "pipe", "pipe"] });
}

/** A CA like the PKI component's (ECDSA P-256), in `dir`. */
function makeCa(dir: string): { cert: string; key: string } {
    mkdirSync(dir, { recursive: true });
    const key = path.join(dir, "ca.key");
    const cert = path.join(dir, "ca.crt");
    const ext = path.join(dir, "ca.ext");
    writeFileSync(ext, extensions(CA_USES, true));
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    openssl(["req", "-new", "-key", key, "-subj", "/O=zerotouch/CN=etcd-ca", "-out", `${key}.csr`]);
    openssl(["x509", "-req", "-in", `${key}.csr`, "-signkey", key, "-days", "1", "-extfile", ext, "-out", cert]);
    return { cert, key };
}

/** A certificate signed by `ca`, with the component's usages and SANs; written to `cert` and `key`. */
function issue(ca: { cert: string; key: string }, cn: string, uses: readonly string[], files: { cert: string; key: string }, sans?: { dnsNames: string[]; ipAddresses: string[] }): void {
    mkdirSync(path.dirname(files.cert), { recursive: true });
    const ext = `${files.cert}.ext`;
    writeFileSync(ext, extensions(uses, false, sans));
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", files.key]);
    openssl(["req", "-new", "-key", files.key, "-subj", `/O=zerotouch/CN=${cn}`, "-out", `${files.cert}.csr`]);
    openssl(["x509", "-req", "-in", `${files.cert}.csr`, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial", String(Date.now()), "-days", "1", "-extfile", ext, "-out", files.cert]);
}


interface Running {
    readonly name: string;
    readonly proc: ChildProcess;
    readonly log: string;
    exited: boolean;
}

function startEtcd(name: string, flags: string[], log: string): Running {
    const fd = openSync(log, "a");
    // A clean environment: no ETCD_* variable can change what the flags say.
    const proc = spawn(ETCD, flags, { stdio: ["ignore", fd, fd], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    closeSync(fd);
    const running: Running = { name, proc, log, exited: false };
    proc.on("exit", () => {
        running.exited = true;
    });
    return running;
}

/** Resolves true when `p` settles within `ms`, false otherwise; leaves no timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((res) => {
        timer = setTimeout(() => res(false), ms);
    });
    try {
        return await Promise.race([p.then(() => true), timeout]);
    } finally {
        clearTimeout(timer);
    }
}

/** SIGTERM, then SIGKILL after 5 s; waits for the exit, bounded. */
async function stopEtcd(r: Running): Promise<void> {
    if (r.exited || r.proc.pid === undefined) {
        return;
    }
    const exited = new Promise<void>((res) => r.proc.once("exit", () => res()));
    r.proc.kill("SIGTERM");
    if (!(await within(exited, 5000))) {
        r.proc.kill("SIGKILL");
        await within(exited, 2000);
    }
}

function logTail(r: Running): string {
    try {
        return readFileSync(r.log, "utf8").split("\n").slice(-15).join("\n");
    } catch {
        return "(no log)";
    }
}

interface ClientCreds {
    readonly cacert: string;
    readonly cert?: string;
    readonly key?: string;
}

async function etcdctl(endpoint: string, creds: ClientCreds, args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
    const tls = [`--cacert=${creds.cacert}`, ...(creds.cert ? [`--cert=${creds.cert}`, `--key=${creds.key}`] : [])];
    try {
        const { stdout, stderr } = await run(ETCDCTL, [`--endpoints=${endpoint}`, ...tls, "--dial-timeout=2s", "--command-timeout=3s", ...args], {
            timeout: 8000,
            env: { PATH: "/usr/bin:/bin", ETCDCTL_API: "3" },
        });
        return { ok: true, stdout, stderr };
    } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        return { ok: false, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err) };
    }
}

/** Polls `endpoint health` until it passes, at most `seconds`; fails early when a member exits. */
/**
 * Waits until `endpoint health` succeeds and, when `endpoints` is given, reports each of them
 * healthy: with `--cluster`, a member that has not published its client URLs yet is left out of
 * the check rather than reported, so success alone does not mean every member was checked.
 */
async function waitHealthy(endpoint: string, creds: ClientCreds, members: Running[], extra: string[] = [], seconds = 30, endpoints: readonly string[] = []): Promise<string> {
    const deadline = Date.now() + seconds * 1000;
    let last = "";
    while (Date.now() < deadline) {
        const dead = members.find((m) => m.exited);
        if (dead) {
            throw new Error(`etcd ${dead.name} exited:\n${logTail(dead)}`);
        }
        const r = await etcdctl(endpoint, creds, ["endpoint", "health", ...extra]);
        const out = r.stdout + r.stderr;
        if (r.ok && endpoints.every((e) => out.includes(`${e} is healthy`))) {
            return out;
        }
        last = r.ok ? `not every member reported yet:\n${out}` : r.stderr;
        await new Promise((res) => setTimeout(res, 300));
    }
    throw new Error(`etcd at ${endpoint} not healthy within ${seconds}s: ${last}\n${members.map((m) => `${m.name}:\n${logTail(m)}`).join("\n")}`);
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
    return new Promise((res, rej) => {
        const req = http.get(url, { timeout: 5000, agent: false }, (resp) => {
            let body = "";
            resp.setEncoding("utf8");
            resp.on("data", (c: string) => (body += c));
            resp.on("end", () => res({ status: resp.statusCode ?? 0, body }));
        });
        req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
        req.on("error", rej);
    });
}

/** A TLS 1.2 handshake with openssl offering only `cipher`; true when it succeeds. */
function handshake(port: number, cipher: string, creds: Required<ClientCreds>): boolean {
    try {
        execFileSync(
            OPENSSL,
            ["s_client", "-connect", `127.0.0.1:${port}`, "-tls1_2", "-cipher", cipher, "-CAfile", creds.cacert, "-cert", creds.cert, "-key", creds.key, "-verify_return_error", "-brief"],
            { input: "", timeout: 10000, stdio: ["pipe", "pipe", "pipe"] },
        );
        return true;
    } catch {
        return false;
    }
}

function pkiFor(root: string, ca: { cert: string; key: string }, member: string): string {
    const pkiDir = path.join(root, member, "pki");
    const files = etcdPkiFiles(pkiDir);
    mkdirSync(pkiDir, { recursive: true });
    writeFileSync(files.caCert, readFileSync(ca.cert, "utf8"));
    const sans = memberSans({ name: member, addresses: ["127.0.0.1"] });
    issue(ca, member, SERVER_USES, { cert: files.serverCert, key: files.serverKey }, sans);
    issue(ca, member, PEER_USES, { cert: files.peerCert, key: files.peerKey }, sans);
    return pkiDir;
}

describe("a single member on loopback (Debian's etcd, real TLS)", () => {
    let root = "";
    let member: Running | undefined;
    let ports: EtcdPorts;
    let client: Required<ClientCreds>;
    let stranger: Required<ClientCreds>;
    let endpoint = "";
    let pkiDir = "";
    let flags: string[] = [];

    beforeAll(async () => {
        root = mkdtempSync(path.join(os.tmpdir(), "zt-etcd-render-"));
        const [c, p, m] = await freePorts(3);
        ports = { client: c, peer: p, metrics: m };
        const ca = makeCa(path.join(root, "ca"));
        pkiDir = pkiFor(root, ca, "local");
        client = { cacert: ca.cert, cert: path.join(root, "clients", "kube-apiserver.crt"), key: path.join(root, "clients", "kube-apiserver.key") };
        issue(ca, "kube-apiserver", CLIENT_USES, client);
        // A client certificate from another CA, which etcd must not trust.
        const otherCa = makeCa(path.join(root, "other-ca"));
        stranger = { cacert: ca.cert, cert: path.join(root, "clients", "stranger.crt"), key: path.join(root, "clients", "stranger.key") };
        issue(otherCa, "kube-apiserver", CLIENT_USES, stranger);

        const dataDir = path.join(root, "local", "data");
        mkdirSync(dataDir, { mode: 0o700 });
        const cluster: EtcdClusterSpec = { members: { local: { address: "127.0.0.1", ports } }, state: "new", token: "zerotouch-test" };
        flags = etcdFlags({ name: "local", dataDir }, cluster, { pkiDir });
        member = startEtcd("local", flags, path.join(root, "local.log"));
        endpoint = `https://${hostPort("127.0.0.1", ports.client)}`;
        await waitHealthy(endpoint, client, [member]);
    }, 60000);

    afterAll(async () => {
        if (member) {
            await stopEtcd(member);
        }
        if (root) {
            rmSync(root, { recursive: true, force: true });
        }
    }, 20000);

    test("the server certificate carries exactly memberSans", () => {
        const text = openssl(["x509", "-in", etcdPkiFiles(pkiDir).serverCert, "-noout", "-ext", "subjectAltName"]);
        const sans = memberSans({ name: "local", addresses: ["127.0.0.1"] });
        const expected = [...sans.dnsNames.map((d) => `DNS:${d}`), ...sans.ipAddresses.map((i) => `IP Address:${i === "::1" ? "0:0:0:0:0:0:0:1" : i}`)];
        expect(text.split("\n")[1].trim().split(", ")).toEqual(expected);
    });

    test("healthy with a client certificate; a key can be put and read back", async () => {
        const health = await etcdctl(endpoint, client, ["endpoint", "health"]);
        expect(health.ok).toBe(true);
        expect(health.stdout + health.stderr).toMatch(/is healthy/);
        expect((await etcdctl(endpoint, client, ["put", "/zerotouch/probe", "hello"])).stdout.trim()).toBe("OK");
        const got = await etcdctl(endpoint, client, ["get", "/zerotouch/probe", "--print-value-only"]);
        expect(got.stdout.trim()).toBe("hello");
    });

    test("a connection without a client certificate is refused", async () => {
        const r = await etcdctl(endpoint, { cacert: client.cacert }, ["endpoint", "health"]);
        expect(r.ok).toBe(false);
        expect(r.stdout + r.stderr).toMatch(/is unhealthy/);
        // etcd itself says why.
        expect(readFileSync(member!.log, "utf8")).toMatch(/"rejected connection".*"error":"tls: client didn't provide a certificate"/);
    });

    test("a client certificate from another CA is refused", async () => {
        const r = await etcdctl(endpoint, stranger, ["get", "/zerotouch/probe"]);
        expect(r.ok).toBe(false);
        expect(readFileSync(member!.log, "utf8")).toMatch(/"rejected connection".*"error":"[^"]*certificate signed by unknown authority/);
    });

    test("the client port speaks TLS only", async () => {
        const r = await httpGet(`http://127.0.0.1:${ports.client}/health`).catch((e: Error) => ({ status: 0, body: e.message }));
        expect(r.status).not.toBe(200);
    });

    test("TLS 1.2 with an AEAD suite is accepted; a CBC suite is refused", () => {
        expect(handshake(ports.client, "ECDHE-ECDSA-AES128-GCM-SHA256", client)).toBe(true);
        expect(handshake(ports.client, "ECDHE-ECDSA-CHACHA20-POLY1305", client)).toBe(true);
        expect(handshake(ports.client, "ECDHE-ECDSA-AES128-SHA", client)).toBe(false);
        expect(handshake(ports.client, "ECDHE-ECDSA-AES128-SHA256", client)).toBe(false);
        expect(handshake(ports.peer, "ECDHE-ECDSA-AES256-GCM-SHA384", client)).toBe(true);
        expect(handshake(ports.peer, "ECDHE-ECDSA-AES256-SHA384", client)).toBe(false);
    });

    test("metrics and health answer over plain HTTP on 127.0.0.1", async () => {
        const metrics = await httpGet(`http://127.0.0.1:${ports.metrics}/metrics`);
        expect(metrics.status).toBe(200);
        expect(metrics.body).toMatch(/^etcd_server_has_leader 1$/m);
        expect(metrics.body).toMatch(/^etcd_disk_wal_fsync_duration_seconds_bucket/m);
        const health = await httpGet(`http://127.0.0.1:${ports.metrics}/health`);
        expect(health.status).toBe(200);
        expect(JSON.parse(health.body)).toMatchObject({ health: "true" });
    });

    test("etcd took every flag as rendered", () => {
        const log = readFileSync(member!.log, "utf8");
        expect(log).not.toMatch(/unknown flag|flag provided but not defined|invalid value/i);
        // etcd logs the settings it runs with.
        expect(log).toContain(`"quota-size-bytes":${8 * 1024 ** 3}`);
        expect(log).toContain('"heartbeat-interval":"100ms"');
        expect(log).toContain('"election-timeout":"1s"');
        expect(log).toContain('"snapshot-count":10000');
        expect(log).toContain('"auto-compaction-mode":"periodic"');
        expect(log).toContain('"auto-compaction-retention":"1h0m0s"');
    });

    test("systemd-analyze verify accepts the rendered unit", async () => {
        const dir = path.join(root, "unit");
        mkdirSync(dir);
        const file = path.join(dir, "etcd.service");
        const dataDir = path.join(root, "local", "data");
        const cluster: EtcdClusterSpec = { members: { local: { address: "127.0.0.1", ports } }, state: "new", token: "zerotouch-test" };
        writeFileSync(file, etcdUnit({ name: "local", dataDir }, cluster, { source: "preinstalled", pkiDir }));
        const { stdout, stderr } = await run(SYSTEMD_ANALYZE, ["verify", "--man=no", file], { timeout: 30000 });
        expect(stdout + stderr).toBe("");
        // A broken unit is reported: the check is live.
        writeFileSync(file, readFileSync(file, "utf8").replace("Restart=always", "Restart=sometimes"));
        const bad = await run(SYSTEMD_ANALYZE, ["verify", "--man=no", file], { timeout: 30000 }).then(
            (r) => r.stdout + r.stderr,
            (e: { stderr?: string }) => e.stderr ?? "",
        );
        expect(bad).toMatch(/Failed to parse service restart specifier/);
    }, 40000);
});

describe("three members on loopback form a cluster from --initial-cluster", () => {
    let root = "";
    const members: Running[] = [];
    let client: Required<ClientCreds>;
    let cluster: EtcdClusterSpec;
    const names = ["m1", "m2", "m3"];

    beforeAll(async () => {
        root = mkdtempSync(path.join(os.tmpdir(), "zt-etcd-render-"));
        const ports = await freePorts(9);
        cluster = {
            members: Object.fromEntries(
                names.map((n, i) => [n, { address: "127.0.0.1", ports: { client: ports[3 * i], peer: ports[3 * i + 1], metrics: ports[3 * i + 2] } }]),
            ),
            state: "new",
            token: "zerotouch-test-3",
        };
        const ca = makeCa(path.join(root, "ca"));
        client = { cacert: ca.cert, cert: path.join(root, "clients", "backup.crt"), key: path.join(root, "clients", "backup.key") };
        issue(ca, "backup", CLIENT_USES, client);
        for (const name of names) {
            const pkiDir = pkiFor(root, ca, name);
            const dataDir = path.join(root, name, "data");
            mkdirSync(dataDir, { mode: 0o700 });
            members.push(startEtcd(name, etcdFlags({ name, dataDir }, cluster, { pkiDir }), path.join(root, `${name}.log`)));
        }
    }, 30000);

    afterAll(async () => {
        await Promise.all(members.map((m) => stopEtcd(m)));
        if (root) {
            rmSync(root, { recursive: true, force: true });
        }
    }, 20000);

    const endpointOf = (name: string) => `https://${hostPort("127.0.0.1", cluster.members[name].ports!.client!)}`;

    test("endpoint health --cluster is green on every member; member list names all three", async () => {
        const health = await waitHealthy(endpointOf("m1"), client, members, ["--cluster"], 40, names.map(endpointOf));
        for (const name of names) {
            expect(health).toContain(`${endpointOf(name)} is healthy`);
        }
        const list = await etcdctl(endpointOf("m2"), client, ["member", "list", "-w", "json"]);
        const parsed = JSON.parse(list.stdout) as { members: { name: string; peerURLs: string[]; clientURLs: string[] }[] };
        expect(parsed.members.map((m) => m.name).sort()).toEqual(names);
        for (const m of parsed.members) {
            const ports = cluster.members[m.name].ports!;
            expect(m.peerURLs).toEqual([`https://127.0.0.1:${ports.peer}`]);
            expect(m.clientURLs).toEqual([`https://127.0.0.1:${ports.client}`]);
        }
    }, 50000);

    test("a write through one member is read through another", async () => {
        expect((await etcdctl(endpointOf("m1"), client, ["put", "/zerotouch/replicated", "yes"])).ok).toBe(true);
        const got = await etcdctl(endpointOf("m3"), client, ["get", "/zerotouch/replicated", "--print-value-only"]);
        expect(got.stdout.trim()).toBe("yes");
    });

    test("with one member stopped, the other two keep a quorum", async () => {
        await stopEtcd(members[2]);
        const r = await etcdctl(endpointOf("m2"), client, ["put", "/zerotouch/quorum", "2-of-3"]);
        expect(r.ok).toBe(true);
        const got = await etcdctl(endpointOf("m1"), client, ["get", "/zerotouch/quorum", "--print-value-only"]);
        expect(got.stdout.trim()).toBe("2-of-3");
    }, 20000);
});
