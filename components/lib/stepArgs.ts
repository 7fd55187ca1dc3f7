import { DNS_LABEL } from "./names";

/** How a step refuses its arguments before anything is registered. */
export interface StepArgChecks {
    /** The error for a refused argument: `<what> for node <node>: <key> is <given>; <allowed>`. */
    readonly invalid: (node: string, key: string, given: unknown, allowed: string) => Error;
    /** Throws unless the node name is a DNS label. */
    readonly checkNode: (node: string) => void;
}

/** The argument checks of one kind of step (`what`, e.g. "fsync gate"): each error names the node, the key, the value and what is allowed. */
export function stepArgChecks(what: string): StepArgChecks {
    const invalid = (node: string, key: string, given: unknown, allowed: string): Error =>
        new Error(`${what} for node ${node}: ${key} is ${JSON.stringify(given)}; ${allowed}`);
    return {
        invalid,
        checkNode: (node) => {
            if (!DNS_LABEL.test(node)) {
                throw invalid(node, "node", node, "a node name must be a DNS label (lowercase letters, digits, '-')");
            }
        },
    };
}
