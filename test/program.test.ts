import { readdirSync, readFileSync } from "fs";
import * as path from "path";

import type { Recorder } from "./support/mocks";
import { resolve, wireSecret } from "./support/mocks";
import { location, TEST_KEY, validRawConfig } from "./support/config";
import { freshMocks, runProgram } from "./support/program";
import { validateConfig } from "../infra/config";
import { nodeSteps, planNodes } from "../infra/program";
import { stepPayload } from "../components/lib/nodeScript";

const COMMAND = "command:remote:Command";

function rawConfig(extraNodes: Record<string, unknown> = {}): Record<string, any> {
    const raw = validRawConfig(1);
    raw.nodes = { ...raw.nodes, ...extraNodes };
    return raw;
}

/** Commands of the node layer (each node's own chain), not of the etcd and Kubernetes layers. */
function nodeLayer(recorder: Recorder) {
    return recorder.ofType(COMMAND).filter((r) => !r.name.startsWith("etcd-") && !r.name.startsWith("kubernetes-"));
}

function nodeNames(cfg: Record<string, unknown>): string[] {
    return Object.keys(cfg.nodes as Record<string, unknown>);
}

describe("the program under mocks", () => {
    let run: { recorder: Recorder; exports: Record<string, any> };

    beforeAll(async () => {
        run = await runProgram(rawConfig());
    });

    test("creates each node's components with fixed tokens", () => {
        const { recorder } = run;
        const count = (t: string) => recorder.ofType(t).length;
        expect(count("zerotouch:node:VpsNode")).toBe(4);
        expect(count("zerotouch:fsync:FsyncGate")).toBe(4);
        expect(count("zerotouch:firewall:HostFirewall")).toBe(4);
        expect(count("zerotouch:etcd:EtcdCluster")).toBe(1);
        expect(count("zerotouch:k8s:ControlPlane")).toBe(1);
        expect(nodeLayer(recorder).map((r) => r.name).sort()).toEqual(
            nodeNames(rawConfig())
                .flatMap((n) => [
                    `${n}-connect`,
                    `${n}-preflight`,
                    `${n}-fsync-fio`,
                    `${n}-firewall-apply`,
                    `${n}-firewall-confirm`,
                ])
                .sort(),
        );
    });

    test("each node's phases run in order: connect, preflight, firewall, fsync gate, as nodeSteps lists them", () => {
        const { recorder } = run;
        const cfg = validateConfig(rawConfig(), new Set(["sshPrivateKey"]));
        for (const plan of planNodes(cfg)) {
            const n = plan.name;
            // The one phase list (the lab runner runs it as is) and the program's wiring agree.
            expect(nodeSteps(plan).map((s) => s.name)).toEqual(["connect", "preflight", "apply", "confirm", "fio"]);
            const chain = [`${n}-connect`, `${n}-preflight`, `${n}-firewall-apply`, `${n}-firewall-confirm`, `${n}-fsync-fio`];
            for (let i = 1; i < chain.length; i++) {
                expect([chain[i], chain[i - 1], recorder.dependsOn(chain[i], chain[i - 1])]).toEqual([chain[i], chain[i - 1], true]);
                expect(recorder.dependsOn(chain[i - 1], chain[i])).toBe(false);
            }
            // The gate never runs on a node whose firewall is not confirmed.
            expect(recorder.directDependencies(`${n}-fsync-fio`)).toContain(`${n}-firewall-confirm`);
            // And each command runs exactly the payload of its step in that list.
            nodeSteps(plan).forEach((step, i) => expect({ step: chain[i], stdin: recorder.byName(chain[i]).inputs.stdin }).toEqual({ step: chain[i], stdin: stepPayload(step).stdin }));
        }
    });

    test("nodes bootstrap in parallel: no node's phase waits on another node", () => {
        const { recorder } = run;
        const names = nodeNames(rawConfig());
        for (const r of nodeLayer(recorder)) {
            const own = names.find((n) => r.name.startsWith(`${n}-`))!;
            for (const other of names.filter((n) => n !== own)) {
                expect(recorder.dependsOn(r.name, `${other}-connect`)).toBe(false);
            }
        }
    });

    test("the SSH private key is a secret in every command's connection", () => {
        const commands = run.recorder.ofType(COMMAND);
        expect(commands.length).toBeGreaterThan(0);
        for (const c of commands) {
            expect([c.name, wireSecret(c.wire, ["connection", "privateKey"])]).toEqual([c.name, true]);
        }
    });

    test("no secret in any script or payload", () => {
        const keyBody = TEST_KEY.split("\n")[1];
        for (const c of run.recorder.ofType(COMMAND)) {
            expect(String(c.inputs.stdin)).not.toContain(keyBody);
            expect(String(c.inputs.create)).not.toContain(keyBody);
        }
        const scripts = readdirSync(path.join(__dirname, "..", "components"), { recursive: true, encoding: "utf8" })
            .filter((f) => f.endsWith(".sh"))
            .map((f) => path.join(__dirname, "..", "components", f));
        expect(scripts.length).toBeGreaterThanOrEqual(7);
        for (const file of scripts) {
            expect([file, readFileSync(file, "utf8")]).not.toEqual([file, expect.stringMatching(/PRIVATE KEY-----|password\s*=/i)]);
        }
    });

    test("each node's connect and firewall apply carry the node's facts for policy packs", () => {
        const connect = run.recorder.byName("cp-1-connect").inputs.triggers[1];
        expect(connect).toEqual({
            zerotouchNode: {
                node: "cp-1",
                host: "203.0.113.11",
                role: "control-plane",
                location: { country: "NO", region: "oslo", datacenter: "osl1", provider: "example-vps" },
                etcdDataPath: "/var/lib/etcd",
            },
        });
        const firewall = run.recorder.byName("cp-1-firewall-apply").inputs.triggers[1].zerotouchFirewall;
        const api = firewall.rules.find((r: { name: string }) => r.name === "kube-apiserver");
        expect(api).toEqual({
            name: "kube-apiserver",
            protocol: "tcp",
            ports: "6443",
            sources: ["10.42.0.0/16", "10.8.0.0/24", "203.0.113.11/32", "203.0.113.12/32", "203.0.113.13/32", "203.0.113.21/32"],
        });
        expect(firewall.rules.find((r: { name: string }) => r.name === "http").sources).toEqual(["any"]);
    });

    test("commands carry the script hash as trigger and run through the fixed runner", () => {
        for (const c of run.recorder.ofType(COMMAND)) {
            expect(c.inputs.triggers[0]).toMatch(/^[0-9a-f]{64}$/);
            // The second element, where there is one, is the step's facts for policy packs.
            expect(c.inputs.triggers.length).toBeLessThanOrEqual(2);
            expect(c.inputs.create).toMatch(/^bash -c 'umask 077; f=\$\(mktemp\)/);
        }
    });

    test("exports one typed outputs object that satisfies the contract", async () => {
        const { parsePlatformOutputs } = await import("../stacks/outputs");
        const value = await resolve(run.exports.platform);
        const outputs = parsePlatformOutputs(value, "test");
        expect(Object.keys(outputs.nodes).sort()).toEqual(nodeNames(rawConfig()).sort());
        expect(outputs.controlPlaneNodes).toEqual(["cp-1", "cp-2", "cp-3"]);
        expect(outputs.workerNodes).toEqual(["worker-1"]);
        expect(outputs.nodes["cp-1"].fsyncP99Ms).toBeGreaterThan(0);
        expect(outputs.nodes["cp-1"].location.country).toBe("NO");
        expect(outputs.nodes["cp-1"].virtualization).toBe("systemd-nspawn");
        // Only the outputs this config has (no gitopsWebhookSecret: no GitOps here), none undefined.
        expect(Object.keys(run.exports).sort()).toEqual(["kubeconfig", "platform"]);
    });
});

describe("adding a node", () => {
    test("keeps every existing resource's name, and changes no existing node's phases but the firewall sets", async () => {
        const before = await runProgram(rawConfig());
        const after = await runProgram(rawConfig({ "worker-2": { host: "203.0.113.22", role: "worker", location: location("osl2") } }));
        const afterByName = new Map(after.recorder.resources.map((r) => [r.name, r]));
        for (const r of before.recorder.resources) {
            const same = afterByName.get(r.name);
            expect([r.name, same?.type]).toEqual([r.name, r.type]);
            if (r.type !== COMMAND) {
                continue;
            }
            if (r.name.endsWith("-firewall-apply") || r.name.endsWith("-firewall-confirm")) {
                // The new node's address joins the cluster sets of every ruleset.
                expect(same!.inputs.triggers).not.toEqual(r.inputs.triggers);
            } else {
                expect([r.name, same!.inputs.triggers, same!.inputs.stdin]).toEqual([r.name, r.inputs.triggers, r.inputs.stdin]);
            }
        }
        expect(after.recorder.resources.length).toBeGreaterThan(before.recorder.resources.length);
    });
});

describe("an invalid config", () => {
    test.each([
        ["two control-plane nodes", (r: any) => delete r.nodes["cp-3"], /zerotouch:nodes: 2 control-plane nodes/],
        ["an open VPN range", (r: any) => (r.vpnCidr = "0.0.0.0/0"), /zerotouch:vpnCidr: a CIDR of the whole address space/],
        ["a missing SSH key", (r: any) => delete r.sshPrivateKey, /zerotouch:sshPrivateKey: given nothing \(missing\)/],
        ["a typo", (r: any) => (r.managementCidr = ["198.51.100.0/28"]), /zerotouch:managementCidr: unknown key/],
    ])("(%s) stops the program before any resource is created", async (_name, mutate, message) => {
        const raw = rawConfig();
        mutate(raw);
        let recorder!: Recorder;
        let error: unknown;
        await jest.isolateModulesAsync(async () => {
            recorder = await freshMocks(raw);
            try {
                await import("../infra/index");
            } catch (err) {
                error = err;
            }
        });
        expect(String(error)).toMatch(message);
        expect(String(error)).not.toContain(TEST_KEY.split("\n")[1]);
        await new Promise((r) => setTimeout(r, 50));
        expect(recorder.resources).toEqual([]);
    });
});
