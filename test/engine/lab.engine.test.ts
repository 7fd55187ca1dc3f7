/**
 * `pulumi up` for real on the lab: the CLI, language host and plugins built from Go modules
 * (test/lab/toolchain), the lab's command plugin standing in for the official one, a file
 * backend and a passphrase secrets provider under `.lab/engine/`. The stack is configured as the
 * lab stack `lab.sh up` writes (Pulumi.lab.yaml: every node, etcd from Debian's package, no
 * Kubernetes layer); run.sh starts the lab with every etcd disk fast.
 *
 * Checks: the first `up` creates everything and its gate figures are measured ones; a second `up`
 * changes nothing and opens no SSH connection to any node (sshd's journal); no private key is in
 * clear in the state file; a second stack reads the outputs through a StackReference; `destroy`
 * removes what the program installed and keeps etcd's data; with one etcd disk throttled, `up`
 * fails with the fsync gate's refusal, and what the engine did with the other nodes' steps (with
 * and without `--continue-on-error`) is what the README says.
 */
import { spawnSync } from "child_process";
import { readFileSync, rmSync } from "fs";
import * as path from "path";

import { Lab, loadLab, nodesByRole, sshRun } from "../lab/harness";
import { labPolicyConfig, PulumiCli, REPO_ROOT, raiseFsyncThreshold, writeLabStackFile } from "./pulumi";

/** A stack of its own, configured as the lab stack is (`Pulumi.lab.yaml`, which it leaves alone). */
const STACK = "lab-engine";
const STATE = path.join(REPO_ROOT, ".lab", "engine");
const READER = path.join(__dirname, "reader");

/** Names (the last URN part) of the stack's resources of one type, from `pulumi stack export`. */
function resourceNames(cli: PulumiCli, type: string): string[] {
    const exported = JSON.parse(cli.must(["stack", "export", "--stack", STACK]).stdout) as { deployment: { resources?: { urn: string; type: string }[] } };
    return (exported.deployment.resources ?? []).filter((r) => r.type === type).map((r) => r.urn.split("::").pop()!).sort();
}

/** Limits a running lab node's etcd disk to `iops` writes per second (0 lifts it). */
function throttle(node: string, iops: number): void {
    const r = spawnSync("bash", [path.join(REPO_ROOT, "test", "lab", "lab.sh"), "throttle", node, String(iops)], { encoding: "utf8", timeout: 330_000 });
    expect({ node, iops, code: r.status, stderr: r.stderr }).toMatchObject({ code: 0 });
}

/** sshd's accepted logins on a node so far (this count's own login included). */
function logins(lab: Lab, node: string): number {
    const r = sshRun(lab, node, "journalctl -u ssh -o cat --no-pager | grep -c 'Accepted publickey' || true");
    return Number(r.stdout.trim());
}

describe("pulumi up on the lab with the real engine", () => {
    let lab: Lab;
    let cli: PulumiCli;
    let outputs: Record<string, any>;

    beforeAll(() => {
        lab = loadLab();
        rmSync(STATE, { recursive: true, force: true });
        cli = new PulumiCli(STATE);
        rmSync(path.join(REPO_ROOT, `Pulumi.${STACK}.yaml`), { force: true });
        writeLabStackFile(STACK, { edit: raiseFsyncThreshold });
        cli.must(["stack", "init", STACK, "--secrets-provider", "passphrase"]);
        cli.must(["config", "set", "--secret", "--stack", STACK, "zerotouch:sshPrivateKey"], { input: readFileSync(lab.keyPath, "utf8") });
    });

    test("the first up creates every resource; the gates' figures are measured", () => {
        const up = cli.must(["up", "--stack", STACK, "--yes", "--skip-preview"]);
        const created = /\+ (\d+) created/.exec(up.stdout);
        expect(created).not.toBeNull();
        outputs = cli.outputs(STACK);
        const platform = outputs.platform as { nodes: Record<string, { fsyncP99Ms: number; fsyncThresholdMs: number }>; etcd: { members: Record<string, { walFsyncP99Ms: number; walFsyncThresholdMs: number; version: string }> } };
        expect(Object.keys(platform.nodes).sort()).toEqual(lab.nodes.map((n) => n.name).sort());
        for (const [name, node] of Object.entries(platform.nodes)) {
            expect({ name, measured: node.fsyncP99Ms > 0 && node.fsyncP99Ms < node.fsyncThresholdMs }).toEqual({ name, measured: true });
        }
        const members = Object.entries(platform.etcd.members);
        expect(members.map(([n]) => n).sort()).toEqual(nodesByRole(lab, "control-plane").map((n) => n.name).sort());
        for (const [name, m] of members) {
            expect({ name, measured: m.walFsyncP99Ms > 0 && m.walFsyncP99Ms <= m.walFsyncThresholdMs }).toEqual({ name, measured: true });
        }
        const figures = Object.entries(platform.nodes).map(([n, v]) => `${n} fio p99 ${v.fsyncP99Ms.toFixed(2)} ms`);
        const wal = members.map(([n, m]) => `${n} WAL p99 ${m.walFsyncP99Ms.toFixed(2)} ms (etcd ${m.version})`);
        console.log(`pulumi up: ${created![1]} resources created in ${up.seconds.toFixed(1)} s\n${[...figures, ...wal].join("\n")}`);
    });

    test("a second up changes nothing and runs no remote command", () => {
        const before = Object.fromEntries(lab.nodes.map((n) => [n.name, logins(lab, n.name)]));
        const up = cli.must(["up", "--stack", STACK, "--yes", "--skip-preview", "--expect-no-changes"]);
        const after = Object.fromEntries(lab.nodes.map((n) => [n.name, logins(lab, n.name)]));
        // Only the counting logins themselves: the one after the up.
        expect(Object.fromEntries(lab.nodes.map((n) => [n.name, after[n.name] - before[n.name]]))).toEqual(Object.fromEntries(lab.nodes.map((n) => [n.name, 1])));
        expect(up.stdout).toMatch(/(\d+) unchanged/);
        console.log(`second pulumi up: ${/(\d+) unchanged/.exec(up.stdout)![1]} unchanged in ${up.seconds.toFixed(1)} s, no SSH login on any node`);
    });

    test("no private key is in clear in the state; the SSH key config stays a secret", () => {
        const state = readFileSync(path.join(STATE, ".pulumi", "stacks", "zerotouch", `${STACK}.json`), "utf8");
        expect(state).not.toMatch(/BEGIN [A-Z ]*PRIVATE KEY/);
        const keyBody = readFileSync(lab.keyPath, "utf8").split("\n")[1];
        expect(keyBody.length).toBeGreaterThan(20);
        expect(state).not.toContain(keyBody);
        const secrets = (state.match(/"ciphertext"/g) ?? []).length;
        expect(secrets).toBeGreaterThan(0);
        const config = cli.must(["config", "--stack", STACK, "--json"]);
        expect((JSON.parse(config.stdout) as Record<string, { secret: boolean }>)["zerotouch:sshPrivateKey"].secret).toBe(true);
        console.log(`state file: no private key in clear; ${secrets} secret values encrypted`);
    });

    test("a second stack reads the outputs through a StackReference", () => {
        cli.must(["stack", "init", "reader", "--secrets-provider", "passphrase"], { cwd: READER });
        cli.must(["config", "set", "--stack", "reader", "platformStack", `organization/zerotouch/${STACK}`], { cwd: READER });
        cli.must(["up", "--stack", "reader", "--yes", "--skip-preview"], { cwd: READER });
        const read = cli.outputs("reader", false, READER);
        const platform = outputs.platform as { controlPlaneNodes: string[]; etcd: { clientEndpoints: string[] }; nodes: Record<string, { fsyncP99Ms: number }> };
        expect(read).toEqual({
            controlPlaneNodes: platform.controlPlaneNodes,
            etcdClientEndpoints: platform.etcd.clientEndpoints,
            fsyncP99Ms: Object.fromEntries(Object.entries(platform.nodes).map(([n, v]) => [n, v.fsyncP99Ms])),
        });
        cli.must(["destroy", "--stack", "reader", "--yes", "--skip-preview"], { cwd: READER });
        cli.must(["stack", "rm", "reader", "--yes"], { cwd: READER });
    });

    /**
     * The policy packs through the CLI (`pulumi preview --policy-pack policy`), with the EEA
     * configuration whose management-port sources are the lab's VPN range and the pod range.
     * Each changed config is a preview only, then the stack file is put back.
     */
    describe("the policy packs through the CLI", () => {
        let policyConfig: string;
        const preview = (): ReturnType<PulumiCli["run"]> =>
            cli.run(["preview", "--stack", STACK, "--policy-pack", "policy", "--policy-pack-config", policyConfig, "--diff"]);
        /** Runs `run` with the stack's config changed by `edit`, then writes the stack file back. */
        const withConfig = <T>(edit: (config: Record<string, any>) => void, run: () => T): T => {
            writeLabStackFile(STACK, { edit: (config) => (raiseFsyncThreshold(config), edit(config)) });
            try {
                return run();
            } finally {
                writeLabStackFile(STACK, { edit: raiseFsyncThreshold });
            }
        };

        beforeAll(() => {
            policyConfig = labPolicyConfig(lab, STATE);
        });

        test("the lab stack passes every policy", () => {
            const r = preview();
            expect({ code: r.code, out: r.stdout.slice(-3000) }).toMatchObject({ code: 0 });
            expect(r.stdout).not.toMatch(/mandatory/);
            console.log(`policy preview on the lab stack: passed in ${r.seconds.toFixed(1)} s`);
        });

        test("a node located in the US fails the preview, naming the policy and the node", () => {
            const node = lab.nodes[0].name;
            const r = withConfig((config) => (config["zerotouch:nodes"][node].location.country = "US"), preview);
            expect(r.code).not.toBe(0);
            expect(r.stdout).toMatch(/node-location-allowed/);
            expect(r.stdout).toContain(node);
            console.log(`policy preview with ${node} in the US: failed as it must:\n${r.stdout.split("\n").filter((l) => /node-location-allowed|mandatory/.test(l)).slice(0, 4).join("\n")}`);
        });

        test("an off-node snapshot target in the US fails the preview, naming the policy and each snapshot command", () => {
            const secrets = { etcdOffsiteAccessKeyId: "ZTLABACCESSKEY0001", etcdOffsiteSecretAccessKey: "zt-lab/offsite+SECRET-0123456789" };
            for (const [key, value] of Object.entries(secrets)) {
                cli.must(["config", "set", "--secret", "--stack", STACK, `zerotouch:${key}`], { input: value });
            }
            try {
                const offsite = { type: "s3", endpoint: "https://s3.us-east-1.amazonaws.com", bucket: "zt-etcd-lab" };
                const r = withConfig((config) => (config["zerotouch:etcd"] = { ...config["zerotouch:etcd"], snapshots: { ...config["zerotouch:etcd"]?.snapshots, offsite } }), preview);
                expect({ code: r.code, stderr: r.stderr.slice(-2000) }).not.toMatchObject({ code: 0 });
                expect(r.stdout).toMatch(/endpoint-hosts-allowed/);
                for (const node of nodesByRole(lab, "control-plane")) {
                    expect(r.stdout).toContain(`etcd-${node.name}-snapshots`);
                }
                expect(r.stdout).toContain('is on host "s3.us-east-1.amazonaws.com"');
                expect(`${r.stdout}\n${r.stderr}`).not.toContain(secrets.etcdOffsiteSecretAccessKey);
                console.log(
                    `policy preview with the off-node snapshot target in the US: failed as it must:\n${r.stdout.split("\n").filter((l) => /endpoint-hosts-allowed|zerotouchOffsite/.test(l)).slice(0, 4).join("\n")}`,
                );
            } finally {
                for (const key of Object.keys(secrets)) {
                    cli.must(["config", "rm", "--stack", STACK, `zerotouch:${key}`]);
                }
            }
        });

        test("6443 opened outside the VPN fails the preview, naming the policy and the firewall", () => {
            const r = withConfig((config) => (config["zerotouch:firewall"] = { extraRules: [{ name: "api-public", protocol: "tcp", ports: 6443, from: "any" }] }), preview);
            expect({ code: r.code, stderr: r.stderr.slice(-2000) }).not.toMatchObject({ code: 0 });
            expect(r.stdout).toMatch(/firewall-management-ports/);
            expect(r.stdout).toMatch(/lab-cp-1-firewall-apply/);
            console.log(`policy preview with 6443 open to everyone: failed as it must:\n${r.stdout.split("\n").filter((l) => /firewall-management-ports|mandatory/.test(l)).slice(0, 4).join("\n")}`);
        });
    });

    test("destroy removes what the program installed and keeps etcd's data", () => {
        const down = cli.must(["destroy", "--stack", STACK, "--yes", "--skip-preview"]);
        expect(down.stdout).toMatch(/(\d+) deleted/);
        for (const node of nodesByRole(lab, "control-plane")) {
            expect({ node: node.name, unit: sshRun(lab, node, "test -e /etc/systemd/system/etcd.service").code }).not.toEqual({ node: node.name, unit: 0 });
            // The last member keeps member/; a member removed from the cluster before it is moved aside (member.removed-<time>).
            const wal = sshRun(lab, node, `for d in ${node.etcdDataPath}/member ${node.etcdDataPath}/member.removed-*; do ls -A "$d/wal" 2>/dev/null | head -n1; done`).stdout.trim();
            expect({ node: node.name, kept: wal !== "" }).toEqual({ node: node.name, kept: true });
        }
        for (const node of lab.nodes) {
            expect({ node: node.name, table: sshRun(lab, node, "nft list table inet zerotouch").code }).not.toEqual({ node: node.name, table: 0 });
        }
        console.log(`pulumi destroy: ${/(\d+) deleted/.exec(down.stdout)![1]} deleted in ${down.seconds.toFixed(1)} s; etcd's data kept on every member`);
    });

    /**
     * After the destroy, the same (empty) stack again with lab-cp-3's etcd disk throttled to 40
     * write IOPS, as lab.sh does for a slow node. The gate refuses it; the stack's 50 ms threshold
     * stands for the 10 ms default (see beforeAll).
     */
    describe("a slow etcd disk stops pulumi up at the fsync gate", () => {
        const slow = "lab-cp-3";
        const remote = "command:remote:Command";
        const refusal = new RegExp(
            `fsync gate failed on node ${slow}: fio measured an fdatasync p99 of ([0-9.]+) ms \\(worst of \\d+ runs?\\) on \\S+,\\s+above the threshold of 50 ms`,
        );

        beforeAll(() => throttle(slow, 40));
        afterAll(() => throttle(slow, 0));

        const expectRefused = (args: string[]): { commands: string[]; p99: string; seconds: number } => {
            const up = cli.run(["up", "--stack", STACK, "--yes", "--skip-preview", ...args]);
            expect({ code: up.code, out: up.stdout.slice(-3000) }).not.toMatchObject({ code: 0 });
            const out = `${up.stdout}\n${up.stderr}`;
            const figure = refusal.exec(out);
            expect({ refusal: figure !== null, out: out.slice(-3000) }).toMatchObject({ refusal: true });
            expect(out).toContain(`pulumi config set --path 'zerotouch:nodes.${slow}.fsyncThresholdMs' <ms>`);
            const commands = resourceNames(cli, remote);
            // Every other node's node layer finished: its gate passed and is in the state.
            for (const node of lab.nodes.filter((n) => n.name !== slow)) {
                expect({ node: node.name, gate: commands.includes(`${node.name}-fsync-fio`) }).toEqual({ node: node.name, gate: true });
            }
            // The refused gate is not; nothing was installed for etcd on any node.
            expect(commands).not.toContain(`${slow}-fsync-fio`);
            expect(commands.filter((c) => c.startsWith("etcd-"))).toEqual([]);
            return { commands, p99: figure![1], seconds: up.seconds };
        };

        test("up fails with the gate's message; the other nodes' steps finish; etcd is not started", () => {
            const r = expectRefused([]);
            console.log(`pulumi up with ${slow} throttled: failed after ${r.seconds.toFixed(1)} s, fio p99 ${r.p99} ms > 50 ms; ` +
                `${r.commands.length} remote commands in the state (every other node's layer up to its gate), no etcd step`);
        });

        test("with --continue-on-error the outcome is the same: nothing else depends on fewer than every gate", () => {
            const r = expectRefused(["--continue-on-error"]);
            console.log(`pulumi up --continue-on-error with ${slow} throttled: failed after ${r.seconds.toFixed(1)} s, fio p99 ${r.p99} ms; ` +
                `${r.commands.length} remote commands in the state, no etcd step`);
        });

        test("after the fix, the next up would run the refused gate and what follows it, nothing else", () => {
            throttle(slow, 0);
            const r = cli.must(["preview", "--stack", STACK, "--json"]);
            const steps = (JSON.parse(r.stdout) as { steps: { op: string; urn: string; type?: string }[] }).steps.filter((s) => s.urn.split("::")[2].split("$").pop() === remote);
            // The JSON preview lists the steps that would do something ("same" steps are left out).
            const names = (pick: (op: string) => boolean): string[] => steps.filter((s) => pick(s.op)).map((s) => s.urn.split("::").pop()!).sort();
            const created = names((op) => op === "create");
            expect(names((op) => op !== "create" && op !== "same")).toEqual([]);
            expect(created).toContain(`${slow}-fsync-fio`);
            expect(created.filter((c) => c !== `${slow}-fsync-fio` && !c.startsWith("etcd-"))).toEqual([]);
            const unchanged = resourceNames(cli, remote).filter((n) => !created.includes(n));
            expect(unchanged).toHaveLength(lab.nodes.length * 5 - 1);
            console.log(`preview after the fix: ${unchanged.length} remote commands unchanged, ${created.length} to create (${slow}-fsync-fio and etcd's ${created.length - 1})`);
        });
    });
});
