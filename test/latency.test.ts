/**
 * The latency preflight: endpoint parsing, config (defaults, every rejection and its message),
 * the node's own measurement and verdict (latency.sh and preflight.sh run for real on this host
 * against loopback listeners), the message the node prints held to formatLatencyRefusal, and the
 * program under mocks (parameters per node, gate overrides, outputs, secrecy).
 */
import { spawn } from "child_process";
import { readFileSync } from "fs";
import { AddressInfo, createServer, Server } from "net";
import * as path from "path";

import { parsePreflightResult } from "../components/node/facts";
import {
    endpointOfUrl,
    formatEndpoint,
    formatMs3,
    LATENCY_LIB,
    latencyParams,
    LatencyResult,
    latencyResultSchema,
    nsToMs,
    parseEndpoint,
} from "../components/node/latency";
import { VIRTUALIZATION_TYPES, latencyTargets, validateConfig } from "../infra/config";
import { planNodes } from "../infra/program";
import { location, problemsOf, TEST_SECRET_KEYS, validRawConfig } from "./support/config";
import { formatLatencyRefusal } from "./support/latencyRefusal";
import { isSecret, resolve } from "./support/mocks";
import { paramOf } from "./support/nodeStdout";
import { runProgram } from "./support/program";

const SECRET = TEST_SECRET_KEYS;
const COMMON = path.join(__dirname, "..", "components", "lib", "scripts", "common.sh");
const PREFLIGHT = path.join(__dirname, "..", "components", "node", "scripts", "preflight.sh");

describe("endpoints", () => {
    test.each([
        ["gitlab.example.com:443", { host: "gitlab.example.com", port: 443 }],
        ["10.213.200.10:7080", { host: "10.213.200.10", port: 7080 }],
        ["[2001:db8::1]:22", { host: "2001:db8::1", port: 22 }],
        ["ix-probe.nix.no:65535", { host: "ix-probe.nix.no", port: 65535 }],
    ])("%s parses", (text, endpoint) => {
        expect(parseEndpoint(text)).toEqual(endpoint);
        expect(formatEndpoint(endpoint)).toBe(text);
    });

    test.each(["gitlab.example.com", "gitlab.example.com:0", "gitlab.example.com:70000", "2001:db8::1:22", "[10.0.0.1]:22", "999.1.1.1:80", "https://gitlab.example.com:443", "-bad.example:22", "a b:22", ":22"])(
        "%s does not",
        (text) => {
            expect(parseEndpoint(text)).toBeUndefined();
        },
    );

    test("a URL's endpoint: its host, and its port or 443", () => {
        expect(endpointOfUrl("https://gitlab.example.com")).toEqual({ host: "gitlab.example.com", port: 443 });
        expect(endpointOfUrl("https://git.example.com:8443/platform/manifests.git")).toEqual({ host: "git.example.com", port: 8443 });
        expect(() => endpointOfUrl("http://gitlab.example.com")).toThrow(/not an https:\/\/ URL/);
    });

    test("the preflight parameters: one line per target, the threshold as written and in ns", () => {
        const params = latencyParams({ targets: { gitlab: { host: "gitlab.example.com", port: 443 }, probe: { host: "192.0.2.7", port: 80 } }, tries: 7, timeoutMs: 1500, maxLatencyMs: 12.5 });
        expect(params).toEqual({
            ZT_LATENCY_TARGETS: ["gitlab gitlab.example.com 443", "probe 192.0.2.7 80"],
            ZT_LATENCY_TRIES: 7,
            ZT_LATENCY_TIMEOUT_MS: 1500,
            ZT_MAX_LATENCY_MS: "12.5",
            ZT_MAX_LATENCY_NS: "12500000",
        });
        expect(latencyParams({ targets: {}, tries: 5, timeoutMs: 2000 })).toMatchObject({ ZT_LATENCY_TARGETS: [], ZT_MAX_LATENCY_MS: "", ZT_MAX_LATENCY_NS: "" });
    });
});

function gitops(over: Record<string, unknown> = {}): Record<string, unknown> {
    return {
        gitlab: { baseUrl: "https://gitlab.example.com" },
        argocd: { hostname: "argocd.vpn.example.net", webhookHostname: "argocd-hooks.example.net" },
        manifests: { project: "platform/manifests", mode: "create", namespaceId: 42 },
        ...over,
    };
}


describe("config", () => {
    test("defaults: nothing measured without gitops or targets; 5 tries of at most 2000 ms; no gate", () => {
        const cfg = validateConfig(validRawConfig(), SECRET);
        expect(cfg.preflight.latency).toEqual({ tries: 5, timeoutMs: 2000 });
        expect(cfg.preflight.maxLatencyMs).toBeUndefined();
        expect(latencyTargets(cfg)).toEqual({});
        expect(planNodes(cfg)[0].vps.latency).toEqual({ targets: {}, tries: 5, timeoutMs: 2000 });
    });

    test("the GitLab host comes from gitops.gitlab.baseUrl, or the manifests URL without GitLab wiring; an explicit one wins", () => {
        const raw = { ...validRawConfig(), kubernetes: { mode: "k3s" }, gitops: gitops(), gitlabToken: "glpat-x" };
        expect(latencyTargets(validateConfig(raw, SECRET))).toEqual({ gitlab: { host: "gitlab.example.com", port: 443 } });
        const byHand = {
            ...validRawConfig(),
            kubernetes: { mode: "k3s" },
            gitops: gitops({ gitlab: undefined, manifests: { url: "https://git.example.com:8443/platform/manifests.git", username: "reader" } }),
            manifestsPassword: "secret-pass",
        };
        expect(latencyTargets(validateConfig(byHand, new Set(["sshPrivateKey", "manifestsPassword"])))).toEqual({ gitlab: { host: "git.example.com", port: 8443 } });
        const explicit = { ...raw, preflight: { latency: { gitlab: "gitlab-ssh.example.com:22", probe: "[2001:db8::7]:443" } } };
        expect(latencyTargets(validateConfig(explicit, SECRET))).toEqual({ gitlab: { host: "gitlab-ssh.example.com", port: 22 }, probe: { host: "2001:db8::7", port: 443 } });
    });

    test("the gate per node: the node's override, else the cluster's", () => {
        const raw = validRawConfig();
        raw.preflight = { latency: { probe: "192.0.2.7:443", tries: 9, timeoutMs: 500 }, maxLatencyMs: 20 };
        raw.nodes["cp-2"].maxLatencyMs = 45.5;
        const plans = planNodes(validateConfig(raw, SECRET));
        expect(Object.fromEntries(plans.map((p) => [p.name, p.vps.latency?.maxLatencyMs]))).toEqual({ "cp-1": 20, "cp-2": 45.5, "cp-3": 20, "worker-1": 20 });
        expect(plans[0].vps.latency).toMatchObject({ targets: { probe: { host: "192.0.2.7", port: 443 } }, tries: 9, timeoutMs: 500 });
    });

    type Case = [string, (raw: Record<string, any>) => void, RegExp[]];
    const rejections: Case[] = [
        [
            "a GitLab host without a port",
            (r) => (r.preflight = { latency: { gitlab: "gitlab.example.com" } }),
            [/^zerotouch:preflight\.latency\.gitlab: given "gitlab\.example\.com"; allowed: host:port of the GitLab host \(a DNS name or an IPv4 address, \[IPv6\] in brackets; port 1-65535\)/],
        ],
        [
            "a probe on port 70000",
            (r) => (r.preflight = { latency: { probe: "192.0.2.7:70000" } }),
            [/^zerotouch:preflight\.latency\.probe: given "192\.0\.2\.7:70000"; allowed: host:port of a probe target/],
        ],
        ["no tries", (r) => (r.preflight = { latency: { tries: 0 } }), [/^zerotouch:preflight\.latency\.tries: given 0; allowed: an integer from 1 to 20 \(default 5\)/]],
        ["a timeout of 50 ms", (r) => (r.preflight = { latency: { timeoutMs: 50 } }), [/^zerotouch:preflight\.latency\.timeoutMs: given 50; allowed: a whole number of milliseconds from 100 to 10000 \(default 2000\)/]],
        ["a typo under latency", (r) => (r.preflight = { latency: { tryes: 3 } }), [/^zerotouch:preflight\.latency\.tryes: unknown key \(given 3\)/]],
        [
            "a threshold of 0",
            (r) => (r.preflight = { latency: { probe: "192.0.2.7:443" }, maxLatencyMs: 0 }),
            [/^zerotouch:preflight\.maxLatencyMs: given 0; allowed: a number of milliseconds greater than 0 and at most 1000, at most 6 decimals: largest median TCP connect time/],
        ],
        [
            "a per-node threshold above 1000 ms",
            (r) => {
                r.preflight = { latency: { probe: "192.0.2.7:443" } };
                r.nodes["worker-1"].maxLatencyMs = 2000;
            },
            [/^zerotouch:nodes\.worker-1\.maxLatencyMs \(node worker-1\): given 2000; allowed: a number of milliseconds greater than 0 and at most 1000, at most 6 decimals, overriding preflight\.maxLatencyMs for this node$/],
        ],
        [
            "a gate with nothing to measure, for the cluster and for a node",
            (r) => {
                r.preflight = { maxLatencyMs: 20 };
                r.nodes["cp-3"].maxLatencyMs = 30;
            },
            [
                /^zerotouch:nodes\.cp-3\.maxLatencyMs \(node cp-3\): a latency threshold, but nothing to measure: set preflight\.latency\.gitlab or preflight\.latency\.probe \(host:port\), or gitops\.gitlab\.baseUrl; given 30; allowed: /,
                /^zerotouch:preflight\.maxLatencyMs: a latency threshold, but nothing to measure: .*; given 20; allowed: /,
            ],
        ],
    ];

    test.each(rejections)("rejects %s", (_name, mutate, expected) => {
        const raw = validRawConfig();
        mutate(raw);
        const problems = problemsOf(raw).sort();
        expect(problems).toHaveLength(expected.length);
        expected.forEach((re, i) => expect(problems[i]).toMatch(re));
    });
});

/** A TCP listener on loopback that accepts and closes; resolves with it once it listens. */
function listener(): Promise<Server> {
    return new Promise((res) => {
        const server = createServer((c) => c.destroy());
        server.listen(0, "127.0.0.1", () => res(server));
    });
}

const portOf = (s: Server) => (s.address() as AddressInfo).port;

/** Runs bash with only `env`, asynchronously (the listeners live in this process). */
function bash(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((res) => {
        const child = spawn("bash", args, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("close", (code) => {
            clearTimeout(timer);
            res({ code, stdout, stderr });
        });
    });
}

/** latency_run through the library, as the payload has it (common.sh first); one result per line, then the problems. */
async function latencyRun(node: string, targets: string, tries: number, timeoutMs: number, maxMs: string) {
    const maxNs = maxMs === "" ? "" : String(Math.round(Number(maxMs) * 1e6));
    const script = `set -euo pipefail; . "$0"; . "$1"; latency_run "$2" "$3" "$4" "$5" "$6" "$7"; printf 'R %s\\n' "\${latency_results[@]}"; printf 'P %s\\n' "\${latency_problems[@]+"\${latency_problems[@]}"}"`;
    const r = await bash(["-c", script, COMMON, LATENCY_LIB, node, targets, String(tries), String(timeoutMs), maxMs, maxNs], {});
    const lines = r.stdout.split("\n");
    return {
        ...r,
        results: lines.filter((l) => l.startsWith("R ")).map((l) => latencyResultSchema.parse(JSON.parse(l.slice(2)))),
        problems: lines.filter((l) => l.startsWith("P ") && l.length > 2).map((l) => l.slice(2)),
    };
}

describe("the node's measurement and verdict (latency.sh, run on this host)", () => {
    let up: Server;
    let closedPort: number;

    beforeAll(async () => {
        up = await listener();
        const gone = await listener();
        closedPort = portOf(gone);
        await new Promise((res) => gone.close(res));
    });
    afterAll(() => new Promise((res) => up.close(res)));

    test("figures: every try connects; median and worst from the samples; passes under a threshold", async () => {
        const r = await latencyRun("cp-1", `gitlab 127.0.0.1 ${portOf(up)}`, 6, 1000, "1000");
        expect(r.code).toBe(0);
        const [g] = r.results;
        expect(g).toMatchObject({ name: "gitlab", host: "127.0.0.1", address: "127.0.0.1", tries: 6, connected: 6, thresholdMs: 1000, passed: true });
        const sorted = [...g.samplesUs].sort((a, b) => a - b);
        expect(g.samplesUs).toEqual(sorted);
        expect(g.medianNs).toBe((sorted[2] + sorted[3]) * 500);
        expect(g.worstNs).toBe(sorted[5] * 1000);
        expect(g.medianNs!).toBeGreaterThan(0);
        expect(r.problems).toEqual([]);
        console.log(`loopback: median ${formatMs3(g.medianNs!)} ms, worst ${formatMs3(g.worstNs!)} ms over ${g.connected} connects`);
        expect(r.stderr).toContain(`zerotouch: node cp-1: latency to the GitLab host 127.0.0.1:${portOf(up)} (127.0.0.1): median ${formatMs3(g.medianNs!)} ms, worst ${formatMs3(g.worstNs!)} ms over 6 of 6 connects (threshold 1000 ms)`);
    });

    test("above the threshold: refused, with node, median, threshold and overrides, in the wording of formatLatencyRefusal", async () => {
        const r = await latencyRun("worker-1", `probe localhost ${portOf(up)}`, 3, 1000, "0.000001");
        const [p] = r.results;
        expect(p).toMatchObject({ name: "probe", host: "localhost", connected: 3, thresholdMs: 0.000001, passed: false });
        expect(r.problems).toEqual([formatLatencyRefusal("worker-1", p)]);
        expect(r.problems[0]).toMatch(
            /^latency: the probe target localhost:\d+ \(127\.0\.0\.1\): TCP connect took a median of \d+\.\d{3} ms over 3 of 3 tries \(worst \d+\.\d{3} ms\), above the threshold of 0\.000001 ms\. .* pulumi config set --path 'zerotouch:nodes\.worker-1\.maxLatencyMs' <ms>, or for all nodes: pulumi config set --path 'zerotouch:preflight\.maxLatencyMs' <ms>$/,
        );
    });

    test("a target that does not answer: no figures; refused only under a threshold", async () => {
        const gated = await latencyRun("cp-2", `gitlab 127.0.0.1 ${closedPort}`, 2, 300, "20");
        const [g] = gated.results;
        expect(g).toMatchObject({ connected: 0, samplesUs: [], medianNs: null, worstNs: null, passed: false, timeoutMs: 300 });
        expect(gated.problems).toEqual([formatLatencyRefusal("cp-2", g)]);
        expect(gated.problems[0]).toContain(`no TCP connect to 127.0.0.1 succeeded in 2 tries of at most 300 ms each, so the threshold of 20 ms cannot be checked`);
        const free = await latencyRun("cp-2", `gitlab 127.0.0.1 ${closedPort}\nprobe name.invalid 443`, 2, 300, "");
        expect(free.results.map((x) => [x.name, x.address, x.connected, x.passed, x.thresholdMs])).toEqual([
            ["gitlab", "127.0.0.1", 0, true, null],
            ["probe", "", 0, true, null],
        ]);
        expect(free.problems).toEqual([]);
        const unresolved = await latencyRun("cp-2", "probe name.invalid 443", 1, 300, "20");
        expect(unresolved.problems).toEqual([formatLatencyRefusal("cp-2", unresolved.results[0])]);
        expect(unresolved.problems[0]).toMatch(/^latency: the probe target name\.invalid:443: name\.invalid did not resolve, so the threshold of 20 ms cannot be checked/);
    });

    test("each connect is bounded by the timeout (a listener whose accept queue is full drops SYNs)", async () => {
        // A loopback socket that listens with a backlog of 0 and never accepts: once its queue
        // holds a connection, the kernel drops further SYNs, so those connects hang.
        const full = spawn("python3", ["-c", "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)"], {
            stdio: ["ignore", "pipe", "inherit"],
        });
        try {
            const port = await new Promise<number>((res) => full.stdout.once("data", (d: Buffer) => res(Number(d.toString().trim()))));
            const started = Date.now();
            const r = await latencyRun("cp-1", `probe 127.0.0.1 ${port}`, 4, 300, "");
            const took = Date.now() - started;
            console.log(`full accept queue: ${r.results[0].connected} of 4 connects, ${took} ms in all (bound 300 ms each)`);
            const missed = 4 - r.results[0].connected;
            expect(missed).toBeGreaterThan(0);
            expect(took).toBeGreaterThanOrEqual(missed * 300);
            expect(took).toBeLessThan(4 * 300 + 2000);
        } finally {
            full.kill("SIGKILL");
        }
    });

    test("median of an even and an odd count, and ms with 3 decimals rounded as formatMs3 does", async () => {
        const r = await bash(["-c", '. "$0"; . "$1"; latency_median_ns 10 20 30 41; latency_median_ns 5 7 9; for n in 0 499 500 1499 1500 20000499 20000500; do latency_ms3 "$n"; echo; done', COMMON, LATENCY_LIB], {});
        expect(r.stdout.trim().split("\n")).toEqual(["25000", "7000", ...[0, 499, 500, 1499, 1500, 20000499, 20000500].map(formatMs3)]);
        expect(formatMs3(20000500)).toBe("20.001");
    });
});

describe("preflight.sh with latency targets (run on this host)", () => {
    let up: Server;
    beforeAll(async () => {
        up = await listener();
    });
    afterAll(() => new Promise((res) => up.close(res)));

    /** preflight.sh for a worker whose other checks accept this host as it is. */
    async function preflight(maxMs: string) {
        const os = readFileSync("/etc/os-release", "utf8");
        const field = (k: string) => (new RegExp(`^${k}="?([^"\\n]*)"?$`, "m").exec(os)?.[1] ?? "unknown");
        const env: Record<string, string> = {
            ZT_NODE: "worker-9",
            ZT_ROLE: "worker",
            ZT_ETCD_DATA_PATH: "/var/lib/etcd",
            ZT_ALLOWED_VIRT: [...VIRTUALIZATION_TYPES, "unknown"].join("\n"),
            ZT_SUPPORTED_OS: `${field("ID")} ${field("VERSION_ID")}`,
            ZT_REQUIRED_TOOLS: "",
        };
        const params = latencyParams({ targets: { gitlab: { host: "127.0.0.1", port: portOf(up) } }, tries: 3, timeoutMs: 1000, ...(maxMs !== "" ? { maxLatencyMs: Number(maxMs) } : {}) });
        for (const [k, v] of Object.entries(params)) {
            env[k] = Array.isArray(v) ? v.join("\n") : String(v);
        }
        return bash([PREFLIGHT], env);
    }

    test("passes with the figures in its result, and refuses (exit 4) above the threshold with the documented line", async () => {
        const pass = await preflight("1000");
        expect([pass.code, pass.stderr]).toEqual([0, expect.stringContaining("zerotouch: node worker-9: latency to the GitLab host 127.0.0.1:")]);
        const facts = parsePreflightResult(pass.stdout, "worker-9");
        expect(facts.passed).toBe(true);
        expect(facts.latency).toHaveLength(1);
        expect(facts.latency[0]).toMatchObject({ name: "gitlab", connected: 3, passed: true, thresholdMs: 1000 });

        const refused = await preflight("0.000001");
        expect(refused.code).toBe(4);
        const result = parsePreflightResult(refused.stdout, "worker-9");
        const g: LatencyResult = result.latency[0];
        expect(result.passed).toBe(false);
        expect(result.problems).toEqual([formatLatencyRefusal("worker-9", g)]);
        expect(refused.stderr).toContain(`zerotouch: preflight failed on node worker-9: ${formatLatencyRefusal("worker-9", g)}\n`);
    });
});

describe("the program under mocks", () => {
    function raw(): Record<string, any> {
        const r = validRawConfig(1);
        r.preflight = { latency: { gitlab: "gitlab.example.com:443", probe: "192.0.2.7:443", tries: 7 }, maxLatencyMs: 20 };
        r.nodes["worker-1"].maxLatencyMs = 80;
        return r;
    }

    test("every node's preflight measures the targets and is judged by its own threshold", async () => {
        const run = await runProgram(raw());
        for (const [node, max] of [["cp-1", "20"], ["cp-2", "20"], ["cp-3", "20"], ["worker-1", "80"]]) {
            const c = run.recorder.byName(`${node}-preflight`);
            const stdin = c.inputs.stdin as string;
            expect([node, paramOf(stdin, "ZT_LATENCY_TARGETS"), paramOf(stdin, "ZT_LATENCY_TRIES"), paramOf(stdin, "ZT_MAX_LATENCY_MS")]).toEqual([
                node,
                "gitlab gitlab.example.com 443\nprobe 192.0.2.7 443",
                "7",
                max,
            ]);
            // The verdict is the node's: the library is in the preflight's payload, ahead of the script.
            expect(stdin.indexOf("latency_run() {")).toBeGreaterThan(0);
            expect(stdin.indexOf("latency_run() {")).toBeLessThan(stdin.indexOf("# Preflight phase:"));
            expect(c.inputs.logging).toBeUndefined();
        }
    });

    test("the outputs carry each node's figures and threshold; secrecy is that of the stack without them", async () => {
        const run = await runProgram(raw());
        const platform: any = await resolve(run.exports.platform);
        // The mocks answer with the preflight recorded on a lab node, for the targets configured here.
        const recorded = parsePreflightResult(readFileSync(path.join(__dirname, "fixtures", "node", "preflight-lab.json"), "utf8"), "lab-cp-2").latency;
        const figures = (r: LatencyResult) => ({ address: r.address, tries: r.tries, connected: r.connected, medianMs: nsToMs(r.medianNs), worstMs: nsToMs(r.worstNs) });
        expect(platform.nodes["cp-1"].latency).toEqual({
            gitlab: { target: "gitlab.example.com:443", ...figures(recorded[0]) },
            probe: { target: "192.0.2.7:443", ...figures(recorded[1]) },
            maxLatencyMs: 20,
        });
        expect(platform.nodes["cp-1"].latency.gitlab.medianMs).toBeGreaterThan(0);
        expect(platform.nodes["worker-1"].latency.maxLatencyMs).toBe(80);
        const plain = await runProgram(validRawConfig(1));
        const plainPlatform: any = await resolve(plain.exports.platform);
        expect(plainPlatform.nodes["cp-1"].latency).toEqual({ gitlab: null, probe: null, maxLatencyMs: null });
        expect(paramOf(plain.recorder.byName("cp-1-preflight").inputs.stdin as string, "ZT_LATENCY_TARGETS")).toBe("");
        expect([await isSecret(run.exports.platform), await isSecret(run.exports.kubeconfig)]).toEqual([
            await isSecret(plain.exports.platform),
            await isSecret(plain.exports.kubeconfig),
        ]);
        expect(await isSecret(run.exports.platform)).toBe(false);
    });

    test("a node added with its own threshold changes no other node's preflight", async () => {
        const before = await runProgram(raw());
        const more = raw();
        more.nodes["worker-2"] = { host: "203.0.113.22", role: "worker", location: location("osl2"), maxLatencyMs: 5 };
        const after = await runProgram(more);
        for (const node of ["cp-1", "worker-1"]) {
            expect(after.recorder.byName(`${node}-preflight`).inputs.triggers).toEqual(before.recorder.byName(`${node}-preflight`).inputs.triggers);
        }
        expect(paramOf(after.recorder.byName("worker-2-preflight").inputs.stdin as string, "ZT_MAX_LATENCY_MS")).toBe("5");
    });
});
