/**
 * The connect and preflight phases on real lab nodes (systemd-nspawn containers), driven with
 * the very steps the program builds from the lab's stack config.
 */
import { parseConnectResult, parsePreflightResult } from "../../components/node/facts";
import { VpsNodeSpec, vpsNodeSteps } from "../../components/node/vpsNode";
import type { NodePlan } from "../../infra/program";
import { Lab, LabNode, labStackPlans, loadLab, runStep, sshRun } from "./harness";

let lab: Lab;
let plans: Map<string, NodePlan>;

beforeAll(() => {
    lab = loadLab();
    ({ plans } = labStackPlans(lab));
});

function spec(node: LabNode, change: Partial<VpsNodeSpec> = {}): VpsNodeSpec {
    const plan = plans.get(node.name);
    if (!plan) {
        throw new Error(`Pulumi.lab.yaml has no node ${node.name}`);
    }
    return { ...plan.vps, ...change };
}

/** What a read-only phase must leave as it was. */
function nodeState(node: LabNode): string {
    const r = sshRun(lab, node, "ls -la --time-style=full-iso /var/lib/etcd /usr/local/bin 2>&1; dpkg-query -W | sha256sum; systemctl list-unit-files --no-legend | sha256sum; ls -la --time-style=full-iso /etc/systemd/system | sha256sum");
    return r.stdout;
}

describe("connect", () => {
    test("answers on every node with the host key the lab recorded, twice the same", () => {
        for (const node of lab.nodes) {
            const step = vpsNodeSteps(spec(node)).connect;
            const first = runStep(lab, node, step);
            const second = runStep(lab, node, step);
            expect([node.name, first.code, second.code]).toEqual([node.name, 0, 0]);
            const result = parseConnectResult(first.stdout, node.name);
            expect(result.hostKey).toBe(node.hostKey);
            expect(result.hostname).toBe(node.name);
            expect(["running", "degraded"]).toContain(result.bootState);
            expect(second.stdout).toBe(first.stdout);
        }
    });
});

describe("preflight", () => {
    test("passes under the lab's policy and reports systemd-nspawn and each etcd disk; a second run changes nothing", () => {
        for (const node of lab.nodes) {
            const step = vpsNodeSteps(spec(node)).preflight;
            const before = nodeState(node);
            const first = runStep(lab, node, step);
            const second = runStep(lab, node, step);
            // On stderr only the latency figures (one line per target); on stdout the same facts
            // twice, the measured connect times aside.
            expect([node.name, first.code, first.stderr.split("\n").filter((l) => l !== "" && !/^zerotouch: node [a-z0-9-]+: latency to /.test(l))]).toEqual([node.name, 0, []]);
            expect(second.code).toBe(0);
            const withoutLatency = (stdout: string) => ({ ...parsePreflightResult(stdout, node.name), latency: [] });
            expect(withoutLatency(second.stdout)).toEqual(withoutLatency(first.stdout));
            expect(nodeState(node)).toBe(before);
            const facts = parsePreflightResult(first.stdout, node.name);
            console.log(`${node.name}: ${facts.virtualization}, ${facts.os.prettyName}; etcd disk ${facts.etcdDisk.description}`);
            expect(facts.virtualization).toBe("systemd-nspawn");
            expect(facts.os).toMatchObject({ id: "debian", versionId: "12" });
            expect(facts.passed).toBe(true);
            if (node.role === "control-plane") {
                // Each control-plane node has its own non-rotational disk under /var/lib/etcd.
                expect(facts.etcdDisk).toMatchObject({ rotational: "0", transport: "loop", mountpoint: "/var/lib/etcd" });
            }
        }
    });

    test("fails under the default kvm-only policy with the documented message", () => {
        const node = lab.nodes[0];
        const r = runStep(lab, node, vpsNodeSteps(spec(node, { allowedVirtualization: ["kvm"] })).preflight);
        console.log(`${node.name} under [kvm]: exit ${r.code}: ${r.stderr.trim()}`);
        expect(r.code).toBe(4);
        expect(r.stderr).toContain(
            `zerotouch: preflight failed on node ${node.name}: virtualization: systemd-detect-virt reports 'systemd-nspawn'; allowed: kvm (set zerotouch:preflight.allowedVirtualization to allow it)`,
        );
        const facts = parsePreflightResult(r.stdout, node.name);
        expect(facts.passed).toBe(false);
        expect(facts.problems).toHaveLength(1);
    });

    test("refuses a control-plane etcd disk that is not NVMe when NVMe is required, saying what it found", () => {
        const node = lab.nodes.find((n) => n.role === "control-plane")!;
        const r = runStep(lab, node, vpsNodeSteps(spec(node, { requireNvme: true })).preflight);
        console.log(`${node.name} with requireNvme: exit ${r.code}: ${r.stderr.trim()}`);
        expect(r.code).toBe(4);
        expect(r.stderr).toMatch(
            new RegExp(`preflight failed on node ${node.name}: etcd disk: /var/lib/etcd is not on NVMe: found loop\\d+ \\(source /dev/loop\\d+, ext4 at /var/lib/etcd, non-rotational, transport loop\\); expected an NVMe disk`),
        );
    });

    test("refuses a control-plane etcd path that is not on a block device", () => {
        const node = lab.nodes.find((n) => n.role === "control-plane")!;
        const r = runStep(lab, node, vpsNodeSteps(spec(node, { etcdDataPath: "/srv/etcd" })).preflight);
        expect(r.code).toBe(4);
        expect(r.stderr).toContain(`preflight failed on node ${node.name}: etcd disk: /srv/etcd is not on a block device: found no block device (source overlay`);
    });

    test("refuses an unsupported OS, naming what it found", () => {
        const node = lab.nodes[0];
        const step = vpsNodeSteps(spec(node)).preflight;
        const r = runStep(lab, node, { ...step, params: { ...step.params, ZT_SUPPORTED_OS: ["ubuntu 24.04"] } });
        expect(r.code).toBe(4);
        expect(r.stderr).toContain(`preflight failed on node ${node.name}: operating system: found Debian GNU/Linux 12 (bookworm) (debian 12); supported: ubuntu 24.04`);
    });
});
