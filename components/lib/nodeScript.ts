import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";

import { SshTarget } from "./connection";
import { loadScript, remoteRunner, ScriptParams, ScriptPayload, scriptPayload } from "./script";

/**
 * One phase of a node's bootstrap as plain data: which script runs with which parameters.
 * Components turn steps into `remote.Command`s; the lab runner runs the very same steps over
 * SSH, so both execute identical payloads in the same order.
 */
export interface NodeStep {
    /** Suffix of the resource name: the command is named `${componentName}-${step.name}`. */
    readonly name: string;
    /** Absolute path of the script file. */
    readonly script: string;
    /** Parameters, passed as `ZT_*` environment variables. */
    readonly params: ScriptParams;
    /** Whether the script has a `delete` branch that undoes its `create`. */
    readonly hasDelete: boolean;
    /** Whether the output may carry a credential: not logged, `stdout`/`stderr` secret. */
    readonly sensitive: boolean;
    /**
     * Shell libraries (absolute paths) whose functions the script uses: their text goes into the
     * payload ahead of the script, in this order. A script run by hand sources them itself.
     */
    readonly libraries?: readonly string[];
    /**
     * Facts about the step that policy packs read from the command's inputs (component inputs are
     * invisible to them): the second element of `triggers`, so a change also runs the step again.
     * Plain JSON, no secrets.
     */
    readonly meta?: Readonly<Record<string, unknown>>;
}

/**
 * The shell library every node script uses (log lines, exits, JSON output): first among a step's
 * libraries. A script run by hand sources it from the checkout.
 */
export const COMMON_LIB = path.join(__dirname, "scripts", "common.sh");

/** The shell library of the disk gates (fsync-gate.sh, wal-fsync-gate.sh): their threshold's spelling. */
export const GATE_LIB = path.join(__dirname, "scripts", "gate.sh");

/** A gate's libraries: common.sh, then gate.sh. */
export const GATE_LIBRARIES: readonly string[] = [COMMON_LIB, GATE_LIB];

/** The payload a step sends: parameters, then its libraries, then the script. */
export function stepPayload(step: NodeStep): ScriptPayload {
    const parts = [...(step.libraries ?? []), step.script].map((file) => loadScript(file));
    return scriptPayload(parts.join("\n"), step.params);
}

/** Where a step's command runs (SSH connection and target) and its resource options. */
type Placement = [
    connection: pulumi.Input<command.types.input.remote.ConnectionArgs>,
    target: SshTarget,
    opts: pulumi.CustomResourceOptions,
];

/** What a step's command sends and how: the payload on stdin, its triggers, a delete branch or not, secret or not. */
interface CommandSpec {
    readonly stdin: pulumi.Input<string>;
    readonly triggers: pulumi.Input<unknown>[];
    readonly hasDelete: boolean;
    readonly sensitive: boolean;
}

/** The `remote.Command` for a payload: fixed runner, payload on stdin, its hash (and facts) as triggers. */
function stepCommand(name: string, spec: CommandSpec, ...[connection, target, opts]: Placement): command.remote.Command {
    const { hasDelete, sensitive } = spec;
    return new command.remote.Command(
        name,
        {
            connection,
            create: remoteRunner(target.user, "create"),
            ...(hasDelete ? { delete: remoteRunner(target.user, "delete") } : {}),
            stdin: spec.stdin,
            triggers: spec.triggers,
            addPreviousOutputInEnv: false,
            ...(sensitive ? { logging: "none" as const } : {}),
        },
        { ...opts, ...(sensitive ? { additionalSecretOutputs: ["stdout", "stderr"] } : {}) },
    );
}

/**
 * Creates the `remote.Command` for a step. It runs again only when the script text or its
 * parameters change (their sha256 is the trigger), so an unchanged `pulumi up` runs nothing.
 */
export function nodeScript(name: string, step: NodeStep, ...placement: Placement): command.remote.Command {
    const payload = stepPayload(step);
    const triggers = step.meta !== undefined ? [payload.hash, step.meta] : [payload.hash];
    return stepCommand(name, { stdin: payload.stdin, triggers, hasDelete: step.hasDelete, sensitive: step.sensitive }, ...placement);
}

/** What a secret step's command must know before its values are: its delete branch, and its facts. */
export interface SecretStepShape {
    readonly hasDelete: boolean;
    readonly meta?: Readonly<Record<string, unknown>>;
}

/**
 * Creates the `remote.Command` for a step whose parameters hold secrets (private keys, tokens):
 * the step is built from resolved values inside an Output, so its payload and trigger stay
 * secret in state and diffs, the command is not logged, and its output is secret. Whether the step
 * has a delete branch must be known before the values are (it shapes the command's inputs), and so
 * must its facts for policy packs (`meta`, plain JSON without secrets: the second trigger, known at
 * preview); the step's own `meta` must then be the same.
 */
export function secretNodeScript(name: string, step: pulumi.Output<NodeStep>, shape: boolean | SecretStepShape, ...placement: Placement): command.remote.Command {
    const { hasDelete, meta } = typeof shape === "boolean" ? { hasDelete: shape, meta: undefined } : shape;
    const payload = step.apply((s) => {
        if (s.hasDelete !== hasDelete) {
            throw new Error(`step ${name}: hasDelete is ${s.hasDelete}, but the command was declared with ${hasDelete}`);
        }
        if (JSON.stringify(s.meta) !== JSON.stringify(meta)) {
            throw new Error(`step ${name}: its facts (meta) are not the ones the command was declared with`);
        }
        return stepPayload(s);
    });
    const facts = meta !== undefined ? [meta] : [];
    const spec = { stdin: pulumi.secret(payload.stdin), triggers: [pulumi.secret(payload.hash), ...facts], hasDelete, sensitive: true };
    return stepCommand(name, spec, ...placement);
}
