import * as fs from "fs";

import { COMMON_LIB, GATE_LIBRARIES, NodeStep, stepPayload } from "../../components/lib/nodeScript";

/** Node cp-1 as the gate tests reach it over SSH. */
export const CP1_TARGET = { host: "203.0.113.10", port: 22, user: "root" };

/** The parameters a gate step passes for CP1_TARGET. */
export const CP1_PARAMS = { ZT_NODE: "cp-1", ZT_HOST: "203.0.113.10" };

/** A gate's step arguments for node cp-1 at CP1_TARGET. */
export const CP1 = { node: "cp-1", target: CP1_TARGET };

/** A step as a plain node script returns it: no delete, not sensitive, with the common library. */
export function plainStep(name: string, script: string, params: NodeStep["params"]): NodeStep {
    return { name, script, params, hasDelete: false, sensitive: false, libraries: [COMMON_LIB] };
}

/** Checks that a gate is the one plain step `name` of `script` (with the gates' libraries), for node cp-1 with `params` besides. */
export function expectGateStep(steps: NodeStep[], name: string, script: string, params: NodeStep["params"]): void {
    expect(steps).toEqual([{ ...plainStep(name, script, { ...CP1_PARAMS, ...params }), libraries: GATE_LIBRARIES }]);
    expect(fs.existsSync(steps[0].script)).toBe(true);
}

/** Checks that the step's script exists and that its payload carries json_string ahead of `scriptLine`. */
export function expectJsonLibraryAhead(step: NodeStep, scriptLine: string): void {
    expect(fs.existsSync(step.script)).toBe(true);
    const { stdin } = stepPayload(step);
    expect(stdin.indexOf("json_string() {")).toBeGreaterThan(0);
    expect(stdin.indexOf("json_string() {")).toBeLessThan(stdin.indexOf(scriptLine));
}
