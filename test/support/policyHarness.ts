/**
 * Runs CrossGuard policies without the CLI, the way `@pulumi/policy`'s analyzer server does
 * (server.js, `makeAnalyzeRpcFun` / `makeAnalyzeStackRpcFun`):
 *
 * - props arrive as the engine sends them (secrets wrapped, unknowns as the engine's markers) and
 *   go through the SDK's own `deserializeProperties(…, false)` (secrets decrypted, no marker) and
 *   `unknownCheckingProxy` (reading an unknown throws `UnknownValueError`);
 * - the enforcement level comes from the pack config, else the policy, else advisory; `disabled`
 *   skips the policy;
 * - a policy that throws `UnknownValueError` is reported as an advisory, as CrossGuard does: a
 *   mandatory rule that reads an unknown without handling it passes silently;
 * - `getConfig()` returns the policy's config without `enforcementLevel`; `notApplicable()` skips.
 *
 * `runPolicyProgram` runs the whole program under mocks (stack `prod` by default) and records what
 * CrossGuard would see: each resource's inputs (for resource policies), its outputs and options
 * (for stack policies), and the stack outputs.
 */
import type { PolicyPackConfig, ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";

import type { Recorder } from "./mocks";
import { nodeStdout } from "./nodeStdout";
import { pulumiConfig } from "./program";
import { providerState } from "./providerState";

// The SDK's internals, used as its server uses them.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { deserializeProperties } = require("@pulumi/policy/deserialize") as {
    deserializeProperties: (struct: { toJavaScript(): unknown }, proxySecrets: boolean) => Record<string, unknown>;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const proxy = require("@pulumi/policy/proxy") as {
    unknownCheckingProxy: <T>(value: T) => T;
    UnknownValueError: new (...args: unknown[]) => Error;
    unknownStringValue: string;
    unknownObjectValue: string;
    unknownArrayValue: string;
    unknownBooleanValue: string;
};

/** The engine's markers for unknown values, for fixtures. */
export const UNKNOWN_STRING = proxy.unknownStringValue;
export const UNKNOWN_OBJECT = proxy.unknownObjectValue;
export const UNKNOWN_ARRAY = proxy.unknownArrayValue;
export const UNKNOWN_BOOLEAN = proxy.unknownBooleanValue;

const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const SIG_KEY = "4dabf18193072939515e22adb298388d";

/** A value wrapped as a secret, as the engine sends it. */
export function secretValue(value: unknown): Record<string, unknown> {
    return { [SIG_KEY]: SECRET_SIG, value };
}

export type AnyPolicy = ResourceValidationPolicy | StackValidationPolicy;

/** One resource as the engine hands it to the pack. `props` in wire form. */
export interface PackResource {
    readonly type: string;
    readonly name: string;
    readonly urn: string;
    /** Inputs (resource policies). */
    readonly props: Record<string, unknown>;
    /** Outputs (stack policies); defaults to `props`. */
    readonly outputs?: Record<string, unknown>;
    readonly parent?: string;
    readonly additionalSecretOutputs?: readonly string[];
    readonly protect?: boolean;
    readonly dependencies?: readonly string[];
}

export interface Diagnostic {
    readonly policy: string;
    readonly enforcementLevel: string;
    readonly message: string;
    /** The resource the violation is about (a stack policy names it; a resource policy's own). */
    readonly urn?: string;
}

class NotApplicable extends Error {}

/** Props as a policy sees them: decrypted by the SDK, behind its unknown-checking proxy. */
export function crossGuardProps(wire: Record<string, unknown>): Record<string, unknown> {
    // The engine never sends undefined; JSON drops it as the protobuf Struct would.
    const plainWire = JSON.parse(JSON.stringify(wire ?? {})) as unknown;
    return proxy.unknownCheckingProxy(deserializeProperties({ toJavaScript: () => plainWire }, false));
}

function isResourcePolicy(p: AnyPolicy): p is ResourceValidationPolicy {
    return (p as ResourceValidationPolicy).validateResource !== undefined;
}

function isStackPolicy(p: AnyPolicy): p is StackValidationPolicy {
    return (p as StackValidationPolicy).validateStack !== undefined;
}

function levelOf(p: AnyPolicy, config: PolicyPackConfig): string {
    const c = config[p.name];
    const fromConfig = typeof c === "string" ? c : c?.enforcementLevel;
    return fromConfig ?? p.enforcementLevel ?? "advisory";
}

function configOf(p: AnyPolicy, config: PolicyPackConfig): Record<string, unknown> {
    const c = config[p.name];
    if (c === undefined || typeof c === "string") {
        return {};
    }
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    const { enforcementLevel, ...rest } = c;
    return rest;
}

function isTypeOf(type: string, resourceClass: unknown): boolean {
    const t = (resourceClass as { __pulumiType?: string }).__pulumiType;
    return typeof t === "string" && t === type;
}

function options(r: PackResource) {
    return {
        protect: r.protect ?? false,
        ignoreChanges: [],
        aliases: [],
        customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
        additionalSecretOutputs: [...(r.additionalSecretOutputs ?? [])],
        ...(r.parent ? { parent: r.parent } : {}),
    };
}

function notApplicable(reason?: string): never {
    throw new NotApplicable(reason ?? "");
}

function caught(p: AnyPolicy, e: unknown, diagnostics: Diagnostic[], urn?: string): void {
    if (e instanceof proxy.UnknownValueError) {
        diagnostics.push({ policy: p.name, enforcementLevel: "advisory", message: `can't run policy '${p.name}' during preview: ${e.message}`, ...(urn ? { urn } : {}) });
        return;
    }
    if (e instanceof NotApplicable) {
        return;
    }
    throw e;
}

/** Runs one resource policy on one resource. */
export async function validateResource(p: ResourceValidationPolicy, r: PackResource, config: PolicyPackConfig = {}): Promise<Diagnostic[]> {
    const level = levelOf(p, config);
    const diagnostics: Diagnostic[] = [];
    if (level === "disabled" || p.validateResource === undefined) {
        return diagnostics;
    }
    const validations = Array.isArray(p.validateResource) ? p.validateResource : [p.validateResource];
    for (const validation of validations) {
        const props = crossGuardProps(r.props);
        const args = {
            type: r.type,
            props,
            urn: r.urn,
            name: r.name,
            opts: options(r),
            stackTags: new Map<string, string>(),
            isType: (cls: unknown) => isTypeOf(r.type, cls),
            asType: (cls: unknown) => (isTypeOf(r.type, cls) ? props : undefined),
            getConfig: () => configOf(p, config),
            notApplicable,
        };
        const report = (message: string, urn?: string) => {
            diagnostics.push({ policy: p.name, enforcementLevel: level === "remediate" ? "mandatory" : level, message, urn: urn ?? r.urn });
        };
        try {
            await Promise.resolve(validation(args as never, report));
        } catch (e) {
            caught(p, e, diagnostics, r.urn);
        }
    }
    return diagnostics;
}

/** Runs one stack policy over every resource (their outputs). */
export async function validateStack(p: StackValidationPolicy, resources: readonly PackResource[], config: PolicyPackConfig = {}): Promise<Diagnostic[]> {
    const level = levelOf(p, config);
    const diagnostics: Diagnostic[] = [];
    if (level === "disabled") {
        return diagnostics;
    }
    type Built = { type: string; urn: string; parent?: Built; dependencies: Built[]; [key: string]: unknown };
    const built = resources.map((r): { source: PackResource; resource: Built } => {
        const props = crossGuardProps(r.outputs ?? r.props);
        return {
            source: r,
            resource: {
                type: r.type,
                props,
                urn: r.urn,
                name: r.name,
                opts: options(r),
                dependencies: [],
                propertyDependencies: {},
                isType: (cls: unknown) => isTypeOf(r.type, cls),
                asType: (cls: unknown) => (isTypeOf(r.type, cls) ? props : undefined),
            },
        };
    });
    const byUrn = new Map(built.map((b) => [b.resource.urn, b.resource]));
    for (const b of built) {
        if (b.source.parent) {
            b.resource.parent = byUrn.get(b.source.parent);
        }
        b.resource.dependencies = (b.source.dependencies ?? []).map((d) => byUrn.get(d)).filter((d) => d !== undefined);
    }
    const args = {
        resources: built.map((b) => b.resource),
        getConfig: () => configOf(p, config),
        stackTags: new Map<string, string>(),
        notApplicable,
    };
    const report = (message: string, urn?: string) => {
        diagnostics.push({ policy: p.name, enforcementLevel: level, message, ...(urn ? { urn } : {}) });
    };
    try {
        await Promise.resolve(p.validateStack(args as never, report));
    } catch (e) {
        caught(p, e, diagnostics);
    }
    return diagnostics;
}

/** Every policy over every resource (resource policies) and over the stack (stack policies). */
export async function runPack(policies: readonly AnyPolicy[], resources: readonly PackResource[], config: PolicyPackConfig = {}): Promise<Diagnostic[]> {
    const out: Diagnostic[] = [];
    for (const p of policies) {
        if (isResourcePolicy(p)) {
            for (const r of resources) {
                out.push(...(await validateResource(p, r, config)));
            }
        } else if (isStackPolicy(p)) {
            out.push(...(await validateStack(p, resources, config)));
        }
    }
    return out;
}

/** The mandatory violations among diagnostics, as `policy: message` lines. */
export function mandatory(diagnostics: readonly Diagnostic[]): string[] {
    return diagnostics.filter((d) => d.enforcementLevel === "mandatory").map((d) => `${d.policy}: ${d.message}`);
}

/** What the engine would hand the pack for one program run. */
export interface PolicyRun {
    readonly recorder: Recorder;
    readonly resources: PackResource[];
    readonly stack: string;
}

/**
 * Runs infra/index.ts under mocks as stack `stack` and returns every resource as CrossGuard sees
 * it, plus the root stack resource whose outputs are the program's exports.
 */
export async function runPolicyProgram(raw: Record<string, unknown>, secretKeys: readonly string[], stack = "prod"): Promise<PolicyRun> {
    let recorder!: Recorder;
    let stackOutputs: Record<string, unknown> = {};
    const extra = new Map<string, { additionalSecretOutputs: string[]; protect: boolean; outputs: Record<string, unknown> }>();
    await jest.isolateModulesAsync(async () => {
        const mocks = await import("./mocks");
        const pulumi = await import("@pulumi/pulumi");
        recorder = await mocks.installMocks({
            config: pulumiConfig(raw),
            secretKeys: secretKeys.map((k) => `zerotouch:${k}`),
            stdoutFor: (type, name, inputs) => nodeStdout(type, name, inputs),
            stateFor: (type, name, inputs) => providerState(type, name, inputs),
            stack,
        });
        // Options and outputs the recorder leaves out: what stack policies read.
        const monitor = pulumi.runtime.getMonitor() as any;
        const register = monitor.registerResource.bind(monitor);
        monitor.registerResource = (req: any, callback: any) =>
            register(req, (err: unknown, resp: any) => {
                if (resp) {
                    extra.set(resp.getUrn(), {
                        additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
                        protect: req.getProtect(),
                        outputs: resp.getObject()?.toJavaScript() ?? {},
                    });
                }
                callback(err, resp);
            });
        const exports = (await import("../../infra/index")) as Record<string, any>;
        const outputs: Record<string, unknown> = {};
        for (const [name, value] of Object.entries(exports)) {
            if (pulumi.Output.isInstance(value)) {
                const resolved = await mocks.resolve(value);
                outputs[name] = (await mocks.isSecret(value)) ? secretValue(resolved) : resolved;
            }
        }
        stackOutputs = outputs;
        await mocks.settle();
    });
    const stackUrn = `urn:pulumi:${stack}::zerotouch::pulumi:pulumi:Stack::zerotouch-${stack}`;
    const resources: PackResource[] = recorder.resources.map((r) => {
        const e = extra.get(r.urn);
        return {
            type: r.type,
            name: r.name,
            urn: r.urn,
            props: r.wire,
            outputs: { ...r.wire, ...(e?.outputs ?? {}) },
            parent: r.parentUrn || stackUrn,
            additionalSecretOutputs: e?.additionalSecretOutputs ?? [],
            protect: e?.protect ?? false,
            dependencies: r.dependencies,
        };
    });
    resources.unshift({ type: "pulumi:pulumi:Stack", name: `zerotouch-${stack}`, urn: stackUrn, props: {}, outputs: stackOutputs });
    return { recorder, resources, stack };
}
