import { readFileSync } from "fs";
import * as path from "path";

import type { Recorder } from "./support/mocks";
import { resolve, wireSecret } from "./support/mocks";
import { nodeStdout, paramOf } from "./support/nodeStdout";

const KEY = readFileSync(path.join(__dirname, "fixtures", "test-ssh-key"), "utf8");
const CONNECT = JSON.parse(readFileSync(path.join(__dirname, "fixtures", "node", "connect.json"), "utf8")) as { hostKey: string };
const PINNED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILWvkNWpyAzs58YI0beTDhC9KCztmoxTVHtHfzNQ+1Cf";

async function build(hostKey?: string) {
    let recorder!: Recorder;
    let node!: any;
    await jest.isolateModulesAsync(async () => {
        const mocks = await import("./support/mocks");
        recorder = await mocks.installMocks({ stdoutFor: (t, n, i) => nodeStdout(t, n, i) });
        const { VpsNode } = await import("../components/node/vpsNode");
        node = new VpsNode("cp-1", {
            node: "cp-1",
            target: { host: "203.0.113.11", port: 2222, user: "debian", ...(hostKey ? { hostKey } : {}) },
            role: "control-plane",
            etcdDataPath: "/srv/etcd",
            privateKey: KEY,
            allowedVirtualization: ["kvm"],
            requireNvme: true,
        });
        await resolve(node.facts);
        await mocks.settle();
    });
    return { recorder, node };
}

describe("VpsNode", () => {
    test("token, children and order: connect, then preflight", async () => {
        const { recorder } = await build();
        expect(recorder.byName("cp-1").type).toBe("zerotouch:node:VpsNode");
        expect(recorder.byName("cp-1-connect").parentUrn).toBe(recorder.byName("cp-1").urn);
        expect(recorder.byName("cp-1-preflight").parentUrn).toBe(recorder.byName("cp-1").urn);
        expect(recorder.dependsOn("cp-1-preflight", "cp-1-connect")).toBe(true);
        expect(recorder.dependsOn("cp-1-connect", "cp-1-preflight")).toBe(false);
    });

    test("a non-root user runs the scripts through sudo -n, on the configured port", async () => {
        const { recorder } = await build();
        for (const name of ["cp-1-connect", "cp-1-preflight"]) {
            const c = recorder.byName(name).inputs;
            expect(c.create).toMatch(/^sudo -n bash -c /);
            expect(c.connection).toMatchObject({ host: "203.0.113.11", port: 2222, user: "debian" });
            expect(wireSecret(recorder.byName(name).wire, ["connection", "privateKey"])).toBe(true);
            expect(c.stdin).not.toContain(KEY.split("\n")[1]);
        }
    });

    test("preflight gets the policy as parameters", async () => {
        const { recorder } = await build();
        const stdin = recorder.byName("cp-1-preflight").inputs.stdin as string;
        expect(paramOf(stdin, "ZT_ROLE")).toBe("control-plane");
        expect(paramOf(stdin, "ZT_ETCD_DATA_PATH")).toBe("/srv/etcd");
        expect(paramOf(stdin, "ZT_ALLOWED_VIRT")).toBe("kvm");
        expect(paramOf(stdin, "ZT_REQUIRE_NVME")).toBe("true");
        expect(stdin).toContain("export ZT_SUPPORTED_OS='debian 12\nubuntu 22.04\nubuntu 24.04'");
    });

    test("without a pinned key, later phases pin the key seen on first connect", async () => {
        const { recorder, node } = await build();
        expect(recorder.byName("cp-1-connect").inputs.connection.hostKey).toBeUndefined();
        expect(recorder.byName("cp-1-preflight").inputs.connection.hostKey).toBe(CONNECT.hostKey);
        expect(await resolve(node.hostKey)).toBe(CONNECT.hostKey);
    });

    test("a pinned key is used from the first connect on", async () => {
        const { recorder } = await build(PINNED);
        expect(recorder.byName("cp-1-connect").inputs.connection.hostKey).toBe(PINNED);
        expect(recorder.byName("cp-1-preflight").inputs.connection.hostKey).toBe(PINNED);
    });

    test("facts come from the preflight's output", async () => {
        const { node } = await build();
        const facts: any = await resolve(node.facts);
        expect(facts.virtualization).toBe("systemd-nspawn");
        expect(facts.etcdDisk.rotational).toBe("0");
    });

    test("triggers change with the policy and not otherwise", async () => {
        const a = (await build()).recorder.byName("cp-1-preflight").inputs.triggers;
        const b = (await build()).recorder.byName("cp-1-preflight").inputs.triggers;
        const c = (await build(PINNED)).recorder.byName("cp-1-preflight").inputs.triggers;
        expect(a).toEqual(b);
        expect(c).toEqual(a); // pinning changes the connection, not the script or its parameters
    });
});

describe("phase results", () => {
    test("a recorded failing preflight parses, with its problems", async () => {
        const { parsePreflightResult } = await import("../components/node/facts");
        const stdout = readFileSync(path.join(__dirname, "fixtures", "node", "preflight-lab-kvm-only.json"), "utf8");
        const result = parsePreflightResult(stdout, "lab-cp-2");
        expect(result.passed).toBe(false);
        expect(result.problems).toEqual([
            expect.stringMatching(/^virtualization: systemd-detect-virt reports 'systemd-nspawn'; allowed: kvm/),
            expect.stringMatching(/^etcd disk: \/var\/lib\/etcd is not on NVMe: found loop\d/),
        ]);
    });

    test.each([
        ["no output", ""],
        ["not JSON", "apt-get noise\n"],
        ["missing fields", '{"node":"x","passed":true}\n'],
    ])("an unexpected preflight output (%s) is an error naming node and phase", async (_what, stdout) => {
        const { parsePreflightResult } = await import("../components/node/facts");
        expect(() => parsePreflightResult(stdout, "cp-9")).toThrow(/^node cp-9: preflight: /);
    });
});
