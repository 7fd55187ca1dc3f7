import { CP1_PARAMS } from "./nodeSteps";
import { Run } from "./scriptRun";

/**
 * What the two gate scripts (fsync-gate.sh, wal-fsync-gate.sh) and their result readers share
 * in the tests: both only measure, take the same ZT_ACTION and ZT_NODE, and print their result
 * as the last line of stdout.
 */

/** A gate's delete: nothing to undo, exit 0, the delete's result on stdout. */
function itHasNothingToUndo(run: (env: Record<string, string>) => Run): void {
    it("has nothing to undo on delete", () => {
        const r = run({ ZT_ACTION: "delete", ZT_NODE: "cp-1" });
        expect(r.status).toBe(0);
        expect(JSON.parse(r.stdout.trim())).toEqual({ action: "delete", node: "cp-1", changed: false });
        expect(r.stderr).toMatch(/nothing to undo/);
    });
}

/** Refusals of an action and a node name, shared by the gate scripts (which also evaluate). */
const ACTION_AND_NODE_REFUSALS: [string, Record<string, string>, RegExp][] = [
    ["an unknown action", { ZT_ACTION: "update" }, /ZT_ACTION must be create, delete or evaluate/],
    ["a node name that is not a DNS label", { ZT_NODE: "cp_1" }, /ZT_NODE must be a DNS label/],
    ["no host", { ZT_HOST: "" }, /ZT_HOST must be set/],
];

/**
 * A gate script's checks that need nothing but bash: its delete has nothing to undo, and a create
 * for node cp-1 with `valid` parameters is refused (exit 2) with each change of `table`, and with
 * an unknown action, a node that is not a DNS label or no host. `after` checks more after each.
 */
export function itChecksParameters(
    run: (env: Record<string, string>) => Run,
    valid: Record<string, string>,
    table: [string, Record<string, string>, RegExp][],
    after: () => void = () => undefined,
): void {
    itHasNothingToUndo(run);
    it.each<[string, Record<string, string>, RegExp]>([...ACTION_AND_NODE_REFUSALS, ...table])("refuses %s with exit 2", (_name, change, message) => {
        expectInvalid(run({ ZT_ACTION: "create", ...CP1_PARAMS, ...valid, ...change }), message);
        after();
    });
}

/** A refused parameter: exit 2, the reason on stderr, nothing on stdout. */
export function expectInvalid(r: Run, message: RegExp): void {
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
}

/** Output a gate's result reader refuses, whatever the gate: `tool` names what failed to run. */
export const NOT_A_RESULT = (tool: string): [string, string, RegExp][] => [
    ["a delete result", '{"action":"delete","node":"n1","changed":false}', /unexpected result line/],
    ["no output", "\n", /printed no result line/],
    ["output that is not JSON", `${tool}: command not found`, /not JSON/],
];
