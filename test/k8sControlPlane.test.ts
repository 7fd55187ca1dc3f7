import { readFileSync } from "fs";
import * as path from "path";
import { parse as parseYaml } from "yaml";

import {
    apiServerUrl,
    K3S_FILES,
    K3S_SECRET_DIR,
    K3S_SERVER_SCRIPT,
    k3sAgentArgs,
    k3sAgentStep,
    k3sKubeconfigStep,
    k3sServerArgs,
    k3sServerStep,
    kubeconfigServer,
    parseKubeconfigResult,
    resolveK3sSource,
    rewriteKubeconfigServer,
} from "../components/k8s/k3s";
import type { ControlPlaneArgs } from "../components/k8s/controlPlane";
import type { Recorder } from "./support/mocks";
import { isSecret, resolve, wireSecret } from "./support/mocks";
import { refusedWithoutResources } from "./support/refused";

const COMMAND = "command:remote:Command";
const PASSWORD = "random:index/randomPassword:RandomPassword";
const K3S_YAML = readFileSync(path.join(__dirname, "fixtures", "k8s", "k3s.yaml"), "utf8");
/** base64 in the fixture's client-key-data; must only ever travel as a secret. */
const KUBE_KEY = "a3ViZWNvbmZpZy1rZXktWlRTRUNSRVQ=";
const CA_PEM = "-----BEGIN CERTIFICATE-----\nZXRjZC1jYS1mb3ItdGVzdHM=\n-----END CERTIFICATE-----\n";
const CERT_PEM = "-----BEGIN CERTIFICATE-----\nZXRjZC1jbGllbnQtY2VydA==\n-----END CERTIFICATE-----\n";
const KEY_PEM = "-----BEGIN EC PRIVATE KEY-----\nZXRjZC1jbGllbnQta2V5LVNFQ1JFVA==\n-----END EC PRIVATE KEY-----\n";
const SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nc3NoLWtleS1TRUNSRVQ=\n-----END OPENSSH PRIVATE KEY-----\n";
const ENDPOINTS = ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"];
const API = "api.cluster.example";

/** A mock token per RandomPassword, stable across runs (name-derived). */
const tokenFor = (name: string) => `tok${name.replace(/[^a-z0-9]/g, "")}SECRETx0123456789`;

// --- pure -------------------------------------------------------------------------------------

const k3s = resolveK3sSource({ source: "release" });
const cp1 = { node: "cp-1", address: "203.0.113.11", region: "oslo", zone: "osl1" };
const shared = { apiEndpoint: API, datastoreEndpoints: ENDPOINTS };
const secrets = { token: "t".repeat(32), agentToken: "a".repeat(32), etcdCaPem: CA_PEM, etcdCertPem: CERT_PEM, etcdKeyPem: KEY_PEM };

describe("k3s server and agent flags", () => {
    it("renders a server's flags: its own node, the external etcd over TLS, tokens and secrets encryption", () => {
        expect(k3sServerArgs(cp1, shared)).toEqual([
            "server",
            "--node-name=cp-1",
            "--node-ip=203.0.113.11",
            "--node-label=topology.kubernetes.io/region=oslo",
            "--node-label=topology.kubernetes.io/zone=osl1",
            `--tls-san=${API}`,
            "--datastore-endpoint=https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379",
            "--datastore-cafile=/etc/zerotouch/k3s/etcd-ca.crt",
            "--datastore-certfile=/etc/zerotouch/k3s/etcd-client.crt",
            "--datastore-keyfile=/etc/zerotouch/k3s/etcd-client.key",
            "--token-file=/etc/zerotouch/k3s/token",
            "--agent-token-file=/etc/zerotouch/k3s/agent-token",
            "--secrets-encryption",
            "--write-kubeconfig-mode=0600",
        ]);
    });

    it("runs no embedded etcd: no --cluster-init, no --disable-etcd (k3s rejects it with --datastore-endpoint)", () => {
        const args = k3sServerArgs(cp1, shared).join(" ");
        expect(args).not.toMatch(/--cluster-init|--disable-etcd|--token=|--agent-token=/);
    });

    it("renders an agent's flags: joins through the API endpoint with the agent token file", () => {
        const w = { node: "worker-1", address: "2001:db8::21", region: "oslo", zone: "osl2" };
        expect(k3sAgentArgs(w, API)).toEqual([
            "agent",
            `--server=https://${API}:6443`,
            "--node-name=worker-1",
            "--node-ip=2001:db8::21",
            "--node-label=topology.kubernetes.io/region=oslo",
            "--node-label=topology.kubernetes.io/zone=osl2",
            "--token-file=/etc/zerotouch/k3s/agent-token",
        ]);
        expect(k3sAgentArgs(w, "2001:db8::1")[1]).toBe("--server=https://[2001:db8::1]:6443");
    });

    it("uses the secret file paths the scripts write", () => {
        const lib = readFileSync(path.join(path.dirname(K3S_SERVER_SCRIPT), "lib", "k3s.sh"), "utf8");
        expect(lib).toContain(`K3S_SECRETS=${K3S_SECRET_DIR}\n`);
        const server = readFileSync(K3S_SERVER_SCRIPT, "utf8");
        for (const file of Object.values(K3S_FILES)) {
            expect(server).toContain(`"$K3S_SECRETS/${path.basename(file)}"`);
        }
    });

    it.each([
        ["node", { ...cp1, node: "CP_1" }, /k3s on node CP_1: node is "CP_1"; allowed: a DNS label/],
        ["address", { ...cp1, address: "cp-1.example" }, /k3s on node cp-1: address is "cp-1.example"; allowed: the node's IPv4 or IPv6 address/],
        ["region", { ...cp1, region: "Oslo" }, /k3s on node cp-1: region is "Oslo"; allowed: a lower-case label .*location.region/],
        ["zone", { ...cp1, zone: "osl 1" }, /k3s on node cp-1: zone is "osl 1"; allowed: a lower-case label .*location.datacenter/],
    ])("refuses a bad %s naming the node, key, value and what is allowed", (_key, spec, message) => {
        expect(() => k3sServerArgs(spec, shared)).toThrow(message);
    });

    it.each([
        [{ ...shared, apiEndpoint: "https://api.example" }, /apiEndpoint is "https:\/\/api.example"; allowed: an IP address or a lower-case DNS name/],
        [{ ...shared, datastoreEndpoints: [] }, /etcd.endpoints is \[\]; allowed: one or more etcd client URLs/],
        [{ ...shared, datastoreEndpoints: ["http://10.0.0.1:2379"] }, /etcd.endpoints is "http:\/\/10.0.0.1:2379"; allowed: https:\/\/<ip or dns name>:<port>/],
        [{ ...shared, datastoreEndpoints: ["https://2001:db8::1:2379"] }, /etcd.endpoints is "https:\/\/2001:db8::1:2379"/],
        [{ ...shared, datastoreEndpoints: [ENDPOINTS[0], ENDPOINTS[0]] }, /each etcd client URL once/],
    ])("refuses shared settings %j", (bad, message) => {
        expect(() => k3sServerArgs(cp1, bad)).toThrow(message);
    });

    it("accepts bracketed IPv6 and DNS etcd endpoints", () => {
        expect(k3sServerArgs(cp1, { ...shared, datastoreEndpoints: ["https://[2001:db8::1]:2379", "https://etcd-1.example:2379"] })).toContain(
            "--datastore-endpoint=https://[2001:db8::1]:2379,https://etcd-1.example:2379",
        );
    });
});

describe("k3s steps", () => {
    it("server step: sensitive, with delete, secrets as parameters for the script to write to files", () => {
        const step = k3sServerStep(cp1, shared, k3s, secrets);
        expect(step).toMatchObject({ name: "server", hasDelete: true, sensitive: true });
        expect(step.params).toMatchObject({
            ZT_NODE: "cp-1",
            ZT_K3S_VERSION: k3s.version,
            ZT_K3S_ARGS: k3sServerArgs(cp1, shared),
            ZT_READY_TIMEOUT_SECONDS: 600,
            ZT_ETCD_CA_PEM: CA_PEM,
            ZT_ETCD_CERT_PEM: CERT_PEM,
            ZT_ETCD_KEY_PEM: KEY_PEM,
            ZT_K3S_TOKEN: secrets.token,
            ZT_K3S_AGENT_TOKEN: secrets.agentToken,
        });
    });

    it("agent step carries the agent token only", () => {
        const step = k3sAgentStep({ ...cp1, node: "w-1" }, API, k3s, secrets.agentToken);
        expect(Object.keys(step.params).sort()).toEqual(["ZT_K3S_AGENT_TOKEN", "ZT_K3S_ARGS", "ZT_K3S_VERSION", "ZT_NODE", "ZT_READY_TIMEOUT_SECONDS"]);
        expect(step).toMatchObject({ name: "agent", hasDelete: true, sensitive: true });
    });

    it("kubeconfig step is sensitive and only reads", () => {
        expect(k3sKubeconfigStep("cp-1", k3s)).toMatchObject({ name: "kubeconfig", hasDelete: false, sensitive: true, params: { ZT_NODE: "cp-1" } });
    });

    it.each([
        ["token", { ...secrets, token: "short" }, /k3s on node cp-1: token is not valid \(value not shown\)/],
        ["etcd.keyPem", { ...secrets, etcdKeyPem: "not a pem SECRETVALUE" }, /k3s on node cp-1: etcd.keyPem is not valid \(value not shown\)/],
    ])("refuses a malformed %s without showing it", (_key, bad, message) => {
        let error: unknown;
        try {
            k3sServerStep(cp1, shared, k3s, bad);
        } catch (err) {
            error = err;
        }
        expect(String(error)).toMatch(message);
        expect(String(error)).not.toMatch(/short|SECRETVALUE/);
    });
});

describe("kubeconfig", () => {
    it("rewrites every cluster's server to https://<apiEndpoint>:6443 and keeps the rest", () => {
        const rewritten = parseYaml(rewriteKubeconfigServer(K3S_YAML, API));
        const original = parseYaml(K3S_YAML);
        expect(rewritten.clusters[0].cluster.server).toBe(`https://${API}:6443`);
        expect({ ...rewritten, clusters: undefined }).toEqual({ ...original, clusters: undefined });
        expect(rewritten.clusters[0].cluster["certificate-authority-data"]).toBe(original.clusters[0].cluster["certificate-authority-data"]);
        expect(parseYaml(rewriteKubeconfigServer(K3S_YAML, "2001:db8::10")).clusters[0].cluster.server).toBe("https://[2001:db8::10]:6443");
        expect(apiServerUrl("203.0.113.5")).toBe("https://203.0.113.5:6443");
    });

    it("reads the kubeconfig from the step's result line; errors never show it", () => {
        const line = JSON.stringify({ node: "cp-1", action: "create", kubeconfig: K3S_YAML });
        expect(parseKubeconfigResult(`progress\n${line}\n`)).toBe(K3S_YAML);
        expect(() => parseKubeconfigResult(`not json ${KUBE_KEY}`)).toThrow(/output not shown/);
        expect(() => parseKubeconfigResult(`not json ${KUBE_KEY}`)).not.toThrow(new RegExp(KUBE_KEY));
        expect(() => rewriteKubeconfigServer(`{{{ ${KUBE_KEY}`, API)).toThrow(/not valid YAML \(content not shown\)/);
    });

    it("finds an existing kubeconfig's server through its current context", () => {
        expect(kubeconfigServer(K3S_YAML)).toEqual({ url: "https://127.0.0.1:6443", host: "127.0.0.1" });
        const two = parseYaml(K3S_YAML);
        two.clusters.push({ name: "prod", cluster: { server: "https://[2001:db8::7]:6443" } });
        two.contexts.push({ name: "prod", context: { cluster: "prod", user: "default" } });
        two["current-context"] = "prod";
        expect(kubeconfigServer(JSON.stringify(two))).toEqual({ url: "https://[2001:db8::7]:6443", host: "2001:db8::7" });
        two["current-context"] = "staging";
        expect(() => kubeconfigServer(JSON.stringify(two))).toThrow(/current-context "staging" is not among its contexts/);
    });
});

// --- component under mocks ---------------------------------------------------------------------

type Mod = typeof import("../components/k8s/controlPlane");

interface Run {
    readonly recorder: Recorder;
    readonly cp: InstanceType<Mod["ControlPlane"]>;
    readonly pre: Record<string, string>;
}

function kubeconfigStdout(type: string, name: string): string | undefined {
    if (type !== COMMAND) {
        return undefined;
    }
    if (name.endsWith("-kubeconfig")) {
        return `${JSON.stringify({ node: "cp-a", action: "create", kubeconfig: K3S_YAML })}\n`;
    }
    return "{}\n";
}

/**
 * Runs the component in a fresh module registry under the recording mocks. RandomPasswords get a
 * name-derived `result`; `build` returns the args, given a resource factory for dependencies.
 */
async function runComponent(build: (pre: (n: string) => unknown, connection: (host: string) => unknown) => ControlPlaneArgs): Promise<Run> {
    let out!: Run;
    await jest.isolateModulesAsync(async () => {
        const mocks = await import("./support/mocks");
        const recorder = await mocks.installMocks({ stdoutFor: kubeconfigStdout });
        const pulumi = await import("@pulumi/pulumi");
        const monitor = pulumi.runtime.getMonitor() as any;
        const inner = monitor.mocks;
        monitor.mocks = {
            newResource: async (a: { type: string; name: string }) => {
                const r = await inner.newResource(a);
                return a.type === PASSWORD ? { ...r, state: { ...r.state, result: tokenFor(a.name) } } : r;
            },
            call: (a: unknown) => inner.call(a),
        };
        const command = await import("@pulumi/command");
        const connection = await import("../components/lib/connection");
        const mod: Mod = await import("../components/k8s/controlPlane");
        const pre: Record<string, string> = {};
        const args = build(
            (n) => {
                const c = new command.local.Command(`${n}-firewall`, { create: "true" });
                pre[n] = `${n}-firewall`;
                return c;
            },
            (host) => connection.sshConnection({ host, port: 22, user: "root" }, pulumi.secret(SSH_KEY)),
        );
        const cp = new mod.ControlPlane("cp", args);
        await resolve(pulumi.all([cp.kubeconfig, cp.apiEndpoint, cp.provider.urn, ...cp.ready.map((r) => r.urn)]));
        await mocks.settle();
        out = { recorder, cp, pre };
    });
    return out;
}

const SERVER_NAMES = ["cp-a", "cp-b", "cp-c"];

function k3sArgs(servers: string[], workers: string[] = ["w-1", "w-2"]) {
    return (pre: (n: string) => unknown, connection: (host: string) => unknown): ControlPlaneArgs => {
        const node = (n: string, i: number) => ({
            target: { host: `203.0.113.${10 + i}`, port: 22, user: "root" },
            connection: connection(`203.0.113.${10 + i}`) as any,
            address: `203.0.113.${10 + i}`,
            region: "oslo",
            zone: `osl${i}`,
            dependsOn: [pre(n) as any],
        });
        return {
            mode: "k3s",
            servers: Object.fromEntries(servers.map((n, i) => [n, node(n, i)])),
            workers: Object.fromEntries(workers.map((n, i) => [n, node(n, 50 + i)])),
            apiEndpoint: API,
            k3s: { source: "release" },
            etcd: { endpoints: ENDPOINTS, caCertPem: CA_PEM, certPem: CERT_PEM, keyPem: KEY_PEM },
        };
    };
}

describe("ControlPlane, mode k3s", () => {
    let run: Run;

    beforeAll(async () => {
        run = await runComponent(k3sArgs(SERVER_NAMES));
    });

    it("registers under its token: per node install and server/agent, the kubeconfig read, two tokens, the provider", () => {
        const { recorder } = run;
        expect(recorder.ofType("zerotouch:k8s:ControlPlane").map((r) => r.name)).toEqual(["cp"]);
        const own = recorder.ofType(COMMAND).filter((c) => c.name.startsWith("cp-") && !c.name.endsWith("-firewall"));
        expect(own.map((c) => c.name).sort()).toEqual(
            [
                ...SERVER_NAMES.flatMap((n) => [`cp-${n}-install`, `cp-${n}-server`]),
                ...["w-1", "w-2"].flatMap((n) => [`cp-${n}-install`, `cp-${n}-agent`]),
                "cp-kubeconfig",
            ].sort(),
        );
        expect(recorder.ofType(PASSWORD).map((r) => r.name).sort()).toEqual(["cp-agent-token", "cp-token"]);
        expect(recorder.ofType("pulumi:providers:kubernetes").map((r) => r.name)).toEqual(["cp-provider"]);
        const component = recorder.byName("cp").urn;
        for (const c of own) {
            expect([c.name, c.parentUrn]).toEqual([c.name, component]);
        }
    });

    it("starts servers one at a time, each after the one before is ready, and each after its install", () => {
        const { recorder } = run;
        for (const n of SERVER_NAMES) {
            expect(recorder.dependsOn(`cp-${n}-server`, `cp-${n}-install`)).toBe(true);
            expect(recorder.dependsOn(`cp-${n}-install`, `${n}-firewall`)).toBe(true);
        }
        expect(recorder.dependsOn("cp-cp-b-server", "cp-cp-a-server")).toBe(true);
        expect(recorder.dependsOn("cp-cp-c-server", "cp-cp-b-server")).toBe(true);
        expect(recorder.dependsOn("cp-cp-a-server", "cp-cp-b-server")).toBe(false);
        expect(recorder.dependsOn("cp-cp-b-server", "cp-cp-c-server")).toBe(false);
        // Installs do not wait on other nodes.
        expect(recorder.dependsOn("cp-cp-b-install", "cp-cp-a-server")).toBe(false);
    });

    it("joins workers after all servers are ready; the kubeconfig comes from the first server", () => {
        const { recorder } = run;
        for (const w of ["w-1", "w-2"]) {
            for (const s of SERVER_NAMES) {
                expect(recorder.dependsOn(`cp-${w}-agent`, `cp-${s}-server`)).toBe(true);
            }
            expect(recorder.dependsOn(`cp-${w}-agent`, `cp-${w}-install`)).toBe(true);
        }
        // Workers join in parallel.
        expect(recorder.dependsOn("cp-w-2-agent", "cp-w-1-agent")).toBe(false);
        expect(recorder.dependsOn("cp-w-1-agent", "cp-w-2-agent")).toBe(false);
        expect(recorder.dependsOn("cp-kubeconfig", "cp-cp-a-server")).toBe(true);
        expect(recorder.byName("cp-kubeconfig").inputs.stdin).toContain("export ZT_NODE='cp-a'");
        expect(recorder.dependsOn("cp-provider", "cp-w-2-agent")).toBe(true);
        expect(run.cp.ready.length).toBe(SERVER_NAMES.length + 2 + 2);
    });

    it("keeps tokens, etcd key and certificate, SSH key and kubeconfig secret on the wire", async () => {
        const { recorder } = run;
        const token = tokenFor("cp-token");
        const agentToken = tokenFor("cp-agent-token");
        for (const n of SERVER_NAMES) {
            const s = recorder.byName(`cp-${n}-server`);
            expect([s.name, wireSecret(s.wire, ["stdin"]), wireSecret(s.wire, ["triggers"]) || wireSecret(s.wire, ["triggers", "0"])]).toEqual([
                s.name,
                true,
                true,
            ]);
            expect(s.inputs.logging).toBe("none");
            expect(s.inputs.stdin).toContain(token);
            expect(s.inputs.stdin).toContain(agentToken);
            expect(s.inputs.stdin).toContain("ZXRjZC1jbGllbnQta2V5LVNFQ1JFVA==");
            expect(wireSecret(s.wire, ["connection", "privateKey"])).toBe(true);
        }
        for (const w of ["w-1", "w-2"]) {
            const a = recorder.byName(`cp-${w}-agent`);
            expect(wireSecret(a.wire, ["stdin"])).toBe(true);
            expect(a.inputs.stdin).toContain(agentToken);
            expect(a.inputs.stdin).not.toContain(token);
            expect(a.inputs.stdin).not.toContain("ZXRjZC1jbGllbnQta2V5LVNFQ1JFVA==");
        }
        const read = recorder.byName("cp-kubeconfig");
        expect(read.inputs.logging).toBe("none");
        const provider = recorder.byName("cp-provider");
        expect(wireSecret(provider.wire, ["kubeconfig"])).toBe(true);
        expect(await isSecret(run.cp.kubeconfig)).toBe(true);
        // Nothing secret outside secret-wrapped values: installs carry none, command lines none.
        for (const c of recorder.ofType(COMMAND)) {
            expect(String(c.inputs.create)).not.toMatch(/SECRET|tok/);
        }
        for (const n of [...SERVER_NAMES, "w-1"]) {
            const install = JSON.stringify({ ...recorder.byName(`cp-${n}-install`).wire, connection: undefined });
            for (const secret of [token, agentToken, "ZXRjZC1jbGllbnQta2V5LVNFQ1JFVA==", "c3NoLWtleS1TRUNSRVQ="]) {
                expect(install).not.toContain(secret);
            }
        }
    });

    it("renders each server's own flags only: no other server in its payload", () => {
        const { recorder } = run;
        // The parameters only (the scripts follow them in the payload).
        const a = String(recorder.byName("cp-cp-a-server").inputs.stdin).split("# end of parameters\n")[0];
        expect(a).toContain("--node-name=cp-a");
        expect(a).toContain("--node-ip=203.0.113.10");
        expect(a).toContain("--node-label=topology.kubernetes.io/zone=osl0");
        expect(a).toContain(`--datastore-endpoint=${ENDPOINTS.join(",")}`);
        expect(a).toContain("--secrets-encryption");
        expect(a).not.toMatch(/cp-b|cp-c|203\.0\.113\.11|203\.0\.113\.12/);
        expect(a).not.toMatch(/--disable-etcd|--cluster-init/);
    });

    it("exposes the kubeconfig pointing at the API endpoint, the endpoint and its URL", async () => {
        const kubeconfig = parseYaml(await resolve(run.cp.kubeconfig));
        expect(kubeconfig.clusters[0].cluster.server).toBe(`https://${API}:6443`);
        expect(kubeconfig.users[0].user["client-key-data"]).toBe(KUBE_KEY);
        expect(await resolve(run.cp.apiEndpoint)).toBe(API);
        expect(await resolve(run.cp.apiServerUrl)).toBe(`https://${API}:6443`);
        expect(run.recorder.byName("cp-provider").inputs.kubeconfig).toContain(`server: https://${API}:6443`);
    });

    it("adding a fourth server changes no existing step's inputs", async () => {
        const after = await runComponent(k3sArgs([...SERVER_NAMES, "cp-d"]));
        for (const r of run.recorder.ofType(COMMAND)) {
            const same = after.recorder.byName(r.name);
            expect([r.name, same.inputs.stdin, same.inputs.triggers]).toEqual([r.name, r.inputs.stdin, r.inputs.triggers]);
        }
        expect(after.recorder.dependsOn("cp-cp-d-server", "cp-cp-c-server")).toBe(true);
        expect(after.recorder.dependsOn("cp-w-1-agent", "cp-cp-d-server")).toBe(true);
    });
});

describe("ControlPlane, mode existing", () => {
    it("bootstraps nothing; exposes the provider, the secret kubeconfig and the endpoint it names", async () => {
        const given = K3S_YAML.replace("https://127.0.0.1:6443", "https://198.51.100.7:6443");
        const run = await runComponent(() => ({ mode: "existing", kubeconfig: given }));
        expect(run.recorder.ofType(COMMAND).filter((c) => !c.name.endsWith("-firewall"))).toEqual([]);
        expect(run.recorder.ofType(PASSWORD)).toEqual([]);
        expect(run.recorder.ofType("zerotouch:k8s:ControlPlane").map((r) => r.name)).toEqual(["cp"]);
        const provider = run.recorder.byName("cp-provider");
        expect(wireSecret(provider.wire, ["kubeconfig"])).toBe(true);
        expect(await isSecret(run.cp.kubeconfig)).toBe(true);
        expect(await resolve(run.cp.kubeconfig)).toBe(given);
        expect(await resolve(run.cp.apiEndpoint)).toBe("198.51.100.7");
        expect(await isSecret(run.cp.apiEndpoint)).toBe(false);
        expect(await resolve(run.cp.apiServerUrl)).toBe("https://198.51.100.7:6443");
    });

    it("refuses a kubeconfig without clusters before registering anything, without showing it", async () => {
        const error = await refusedBeforeRegistering(() => ({
            mode: "existing",
            kubeconfig: `kind: Config\nusers: [{name: x, user: {token: ${KUBE_KEY}}}]\n`,
        }));
        expect(error).toMatch(/existing cluster: the kubeconfig has no clusters \(content not shown\)/);
        expect(error).not.toContain(KUBE_KEY);
    });
});

/** Builds the component from `args()` under fresh mocks; returns its error after checking nothing was registered. */
function refusedBeforeRegistering(args: () => unknown): Promise<string> {
    return refusedWithoutResources(
        () => import("../components/k8s/controlPlane"),
        (mod) => {
            new mod.ControlPlane("bad", args() as ControlPlaneArgs);
        },
    );
}

describe("ControlPlane, invalid args", () => {
    it.each([
        ["a bad zone", (a: any) => (a.servers["cp-b"].zone = "OSL"), /k3s on node cp-b: zone is "OSL"/],
        ["no servers", (a: any) => (a.servers = {}), /servers is empty/],
        ["a node in both roles", (a: any) => (a.workers["cp-a"] = a.servers["cp-a"]), /node cp-a is both a server and a worker/],
        ["an unpinned version without checksums", (a: any) => (a.k3s.version = "v1.20.0+k3s1"), /k3s.sha256 is undefined/],
        ["an API endpoint with a scheme", (a: any) => (a.apiEndpoint = "https://api"), /apiEndpoint is "https:\/\/api"/],
    ])("(%s) throws naming what is wrong before registering anything", async (_name, mutate, message) => {
        const error = await refusedBeforeRegistering(() => {
            const args: any = k3sArgs(SERVER_NAMES)(
                () => undefined,
                () => ({ host: "x" }),
            );
            mutate(args);
            return args;
        });
        expect(error).toMatch(message);
    });
});
