/**
 * The latency preflight on real lab nodes, with the very preflight step the program builds from
 * the lab's stack config: every node times TCP connects to the lab's GitLab host and probe
 * target (netstandin listeners in the internet namespace, 10.213.200.10:7080 and :7081) and is
 * judged on the node by `preflight.maxLatencyMs` (20 ms in the lab stack). Then one node's link
 * from there is delayed (`lab.sh delay`, a TUN delay line: this kernel has no netem): that node
 * refuses itself with the documented message while the others pass, and its per-node override
 * lets it through. The figures per node are printed.
 */
import { spawnSync } from "child_process";
import * as path from "path";

import { parsePreflightResult, PreflightResult } from "../../components/node/facts";
import { formatMs3 } from "../../components/node/latency";
import { formatLatencyRefusal } from "../support/latencyRefusal";
import { VpsNodeSpec, vpsNodeSteps } from "../../components/node/vpsNode";
import type { NodePlan } from "../../infra/program";
import { Lab, LabNode, labStackPlans, loadLab, REPO_ROOT, runStep, RunResult } from "./harness";

const DELAY_MS = 50;

let lab: Lab;
let plans: Map<string, NodePlan>;
let delayed: LabNode;

function labSh(...args: string[]): void {
    const r = spawnSync("bash", [path.join(REPO_ROOT, "test", "lab", "lab.sh"), ...args], { encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0) {
        throw new Error(`lab.sh ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
    }
}

beforeAll(() => {
    lab = loadLab();
    ({ plans } = labStackPlans(lab));
    // The last node: the worker when the lab has one.
    delayed = lab.nodes[lab.nodes.length - 1];
});

afterAll(() => {
    labSh("delay", delayed.name, "0");
});

function spec(node: LabNode, change: Partial<VpsNodeSpec> = {}): VpsNodeSpec {
    const plan = plans.get(node.name);
    if (!plan) {
        throw new Error(`Pulumi.lab.yaml has no node ${node.name}`);
    }
    return { ...plan.vps, ...change };
}

function preflight(node: LabNode, change: Partial<VpsNodeSpec> = {}): { run: RunResult; facts: PreflightResult } {
    const run = runStep(lab, node, vpsNodeSteps(spec(node, change)).preflight);
    return { run, facts: parsePreflightResult(run.stdout, node.name) };
}

function figures(facts: PreflightResult): string {
    return facts.latency
        .map((r) => `${r.name} ${r.host}:${r.port} median ${r.medianNs === null ? "-" : formatMs3(r.medianNs)} ms, worst ${r.worstNs === null ? "-" : formatMs3(r.worstNs)} ms (${r.connected}/${r.tries})`)
        .join("; ");
}

test("the lab stack measures its GitLab host and probe target and gates at 20 ms", () => {
    const vps = plans.get(lab.nodes[0].name)!.vps;
    expect(vps.latency).toEqual({
        targets: { gitlab: { host: "10.213.200.10", port: 7080 }, probe: { host: "10.213.200.10", port: 7081 } },
        tries: 5,
        timeoutMs: 2000,
        maxLatencyMs: 20,
    });
});

test("every node connects to both targets on every try, well under the threshold, and passes", () => {
    const lines: string[] = [];
    for (const node of lab.nodes) {
        const { run, facts } = preflight(node);
        expect([node.name, run.code]).toEqual([node.name, 0]);
        lines.push(`${node.name.padEnd(13)} ${figures(facts)}`);
        expect(facts.latency.map((r) => [r.name, r.address, r.connected, r.passed])).toEqual([
            ["gitlab", "10.213.200.10", 5, true],
            ["probe", "10.213.200.10", 5, true],
        ]);
        for (const r of facts.latency) {
            expect(r.medianNs!).toBeLessThan(20e6);
        }
        if (node.name === "lab-cp-2") {
            console.log(`preflight result of lab-cp-2 (test/fixtures/node/preflight-lab.json):\n${run.stdout.trim().split("\n").pop()}`);
        }
    }
    console.log(`latency per node, no delay (threshold 20 ms):\n${lines.join("\n")}`);
});

test(`a node whose link is delayed by ${DELAY_MS} ms is refused with node, median, threshold and override; the others pass`, () => {
    labSh("delay", delayed.name, String(DELAY_MS));
    const lines: string[] = [];
    for (const node of lab.nodes) {
        const { run, facts } = preflight(node);
        lines.push(`${node.name.padEnd(13)} exit ${run.code}  ${figures(facts)}`);
        if (node.name !== delayed.name) {
            expect([node.name, run.code, facts.passed]).toEqual([node.name, 0, true]);
            continue;
        }
        expect(run.code).toBe(4);
        expect(facts.passed).toBe(false);
        for (const r of facts.latency) {
            // The delay is added to the round trip: the median is at least the delay.
            expect(r.medianNs!).toBeGreaterThanOrEqual(DELAY_MS * 1e6);
            expect(r.passed).toBe(false);
            const message = formatLatencyRefusal(node.name, r);
            expect(facts.problems).toContain(message);
            expect(run.stderr).toContain(`zerotouch: preflight failed on node ${node.name}: ${message}\n`);
        }
        const refusal = run.stderr.split("\n").find((l) => l.includes("preflight failed") && l.includes("GitLab host"));
        console.log(`${node.name} refused:\n${refusal}`);
        expect(refusal).toMatch(
            new RegExp(
                `^zerotouch: preflight failed on node ${node.name}: latency: the GitLab host 10\\.213\\.200\\.10:7080 \\(10\\.213\\.200\\.10\\): TCP connect took a median of (5\\d|[6-9]\\d)\\.\\d{3} ms over 5 of 5 tries \\(worst \\d+\\.\\d{3} ms\\), above the threshold of 20 ms\\. .*pulumi config set --path 'zerotouch:nodes\\.${node.name}\\.maxLatencyMs' <ms>, or for all nodes: pulumi config set --path 'zerotouch:preflight\\.maxLatencyMs' <ms>$`,
            ),
        );
    }
    console.log(`latency per node, ${delayed.name} delayed by ${DELAY_MS} ms (threshold 20 ms):\n${lines.join("\n")}`);

    // The node's own override (nodes.<node>.maxLatencyMs) lets it through with the same figures.
    const overridden = preflight(delayed, { latency: { ...spec(delayed).latency!, maxLatencyMs: 200 } });
    expect([overridden.run.code, overridden.facts.passed]).toEqual([0, true]);
    console.log(`${delayed.name} with maxLatencyMs 200: exit ${overridden.run.code}  ${figures(overridden.facts)}`);
});

test("lifting the delay brings the node back under the threshold", () => {
    labSh("delay", delayed.name, "0");
    const { run, facts } = preflight(delayed);
    expect(run.code).toBe(0);
    expect(facts.latency.every((r) => r.medianNs! < 20e6)).toBe(true);
});
