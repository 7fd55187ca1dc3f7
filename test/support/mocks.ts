import * as pulumi from "@pulumi/pulumi";

/** Pulumi's marker for a secret value in serialized properties. */
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const SIG_KEY = "4dabf18193072939515e22adb298388d";

/** One resource as the engine would have seen it. */
export interface Recorded {
    readonly type: string;
    readonly name: string;
    readonly urn: string;
    readonly parentUrn: string;
    /** Inputs with secrets unwrapped. */
    readonly inputs: Record<string, any>;
    /** Inputs as serialized on the wire: secrets still wrapped, so secrecy can be asserted. */
    readonly wire: Record<string, any>;
    /** URNs this resource depends on (`dependsOn`, parent-implied and input dependencies). */
    readonly dependencies: readonly string[];
    /** The aliases it was registered with, as the engine receives them. */
    readonly aliases: readonly AliasSpec[];
}

/** An alias as sent to the engine: a whole URN, or the parts that differ from the resource's own. */
export interface AliasSpec {
    readonly urn?: string;
    readonly name?: string;
    readonly type?: string;
    readonly parentUrn?: string;
    readonly noParent?: boolean;
}

export type StdoutFor = (type: string, name: string, inputs: Record<string, any>) => string | undefined;
/** Extra state a mocked resource reports (what its provider would compute), or undefined. */
export type StateFor = (type: string, name: string, inputs: Record<string, any>) => Record<string, any> | undefined;

interface Pending {
    parentUrn: string;
    wire: Record<string, any>;
    dependencies: string[];
    aliases: AliasSpec[];
}

/** Records every registered resource, with its dependencies, under `pulumi.runtime.setMocks`. */
export class Recorder {
    readonly resources: Recorded[] = [];
    private readonly pending = new Map<string, Pending>();

    byName(name: string): Recorded {
        const found = this.resources.find((r) => r.name === name);
        if (!found) {
            throw new Error(`no resource named ${name}; have: ${this.resources.map((r) => r.name).join(", ")}`);
        }
        return found;
    }

    ofType(type: string): Recorded[] {
        return this.resources.filter((r) => r.type === type);
    }

    /** Names of the resources `name` depends on directly (its own dependencies, not theirs). */
    directDependencies(name: string): string[] {
        const urns = new Set(this.byName(name).dependencies);
        return this.resources.filter((r) => urns.has(r.urn)).map((r) => r.name);
    }

    /** Whether `name` depends (directly or through other resources) on `other`. */
    dependsOn(name: string, other: string): boolean {
        const target = this.byName(other).urn;
        const seen = new Set<string>();
        const stack = [...this.byName(name).dependencies];
        while (stack.length > 0) {
            const urn = stack.pop()!;
            if (urn === target) {
                return true;
            }
            if (seen.has(urn)) {
                continue;
            }
            seen.add(urn);
            const r = this.resources.find((x) => x.urn === urn);
            if (r) {
                stack.push(...r.dependencies);
                // A component's children count as part of it.
                stack.push(...this.resources.filter((c) => c.parentUrn === urn).map((c) => c.urn));
            }
        }
        return false;
    }

    /** @internal */
    notePending(type: string, name: string, entry: Pending): void {
        this.pending.set(`${type}::${name}`, entry);
    }

    /** @internal */
    take(type: string, name: string): Pending {
        const key = `${type}::${name}`;
        const entry = this.pending.get(key) ?? { parentUrn: "", wire: {}, dependencies: [], aliases: [] };
        this.pending.delete(key);
        return entry;
    }
}

function urnOf(project: string, stack: string, parentUrn: string, type: string, name: string): string {
    let qualified = type;
    if (parentUrn) {
        const parentType = parentUrn.split("::")[2].split("$").pop();
        qualified = `${parentType}$${type}`;
    }
    return `urn:pulumi:${stack}::${project}::${qualified}::${name}`;
}

/**
 * Installs mocks that record resources. `stdoutFor` supplies a command's stdout (by type and
 * name) so components can parse it as they would a real run's.
 */
export async function installMocks(
    options: { config?: Record<string, string>; secretKeys?: string[]; stdoutFor?: StdoutFor; stateFor?: StateFor; project?: string; stack?: string } = {},
): Promise<Recorder> {
    const project = options.project ?? "zerotouch";
    const stack = options.stack ?? "test";
    pulumi.runtime.setAllConfig(options.config ?? {}, options.secretKeys ?? []);
    const recorder = new Recorder();
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                const entry = recorder.take(args.type, args.name);
                const urn = urnOf(project, stack, entry.parentUrn, args.type, args.name);
                const inputs = unwrapSecrets(args.inputs) as Record<string, any>;
                recorder.resources.push({
                    type: args.type,
                    name: args.name,
                    urn,
                    parentUrn: entry.parentUrn,
                    inputs,
                    wire: entry.wire,
                    dependencies: entry.dependencies,
                    aliases: entry.aliases,
                });
                const stdout = options.stdoutFor?.(args.type, args.name, inputs);
                const state = { ...inputs, ...(stdout === undefined ? {} : { stdout, stderr: "" }), ...options.stateFor?.(args.type, args.name, inputs) };
                return { id: `${args.name}-id`, state };
            },
            call(args) {
                return args.inputs as Record<string, any>;
            },
        },
        project,
        stack,
        false,
    );
    // Wrap the mock monitor to see what MockResourceArgs leaves out: parent and dependencies.
    const monitor = pulumi.runtime.getMonitor() as any;
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: any) => {
        recorder.notePending(req.getType(), req.getName(), {
            parentUrn: req.getParent(),
            wire: req.getObject()?.toJavaScript() ?? {},
            dependencies: req.getDependenciesList(),
            aliases: (req.getAliasesList() as any[]).map(aliasOf),
        });
        return register(req, callback);
    };
    return recorder;
}

/** An alias of the register request (pulumirpc.Alias) as plain data. */
function aliasOf(a: any): AliasSpec {
    if (a.getUrn() !== "") {
        return { urn: a.getUrn() as string };
    }
    const spec = a.getSpec();
    const text = (v: string): string | undefined => (v === "" ? undefined : v);
    return {
        name: text(spec.getName()),
        type: text(spec.getType()),
        parentUrn: text(spec.getParenturn()),
        ...(spec.getNoparent() === true ? { noParent: true } : {}),
    };
}

/** `value` with every secret wrapper replaced by what `onSecret` makes of the wrapped value. */
function mapSecrets(value: any, onSecret: (wrapped: any) => any): any {
    if (Array.isArray(value)) {
        return value.map((v) => mapSecrets(v, onSecret));
    }
    if (value && typeof value === "object") {
        if (value[SIG_KEY] === SECRET_SIG) {
            return onSecret(value.value);
        }
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapSecrets(v, onSecret)]));
    }
    return value;
}

/** Replaces every secret wrapper by its value. */
export function unwrapSecrets(value: any): any {
    return mapSecrets(value, unwrapSecrets);
}

/** The wire form with every secret replaced by "[secret]": what would be readable in clear. */
export function withoutSecrets(value: any): any {
    return mapSecrets(value, () => "[secret]");
}

/** Resolves an Output's value (mocks resolve everything). */
export function resolve<T>(output: pulumi.Output<T>): Promise<T> {
    return new Promise((res) => output.apply((v) => res(v)));
}

/** Whether an Output is secret. */
export async function isSecret<T>(output: pulumi.Output<T>): Promise<boolean> {
    return (output as any).isSecret as Promise<boolean>;
}

/** Whether the serialized value at `path` is wrapped as a secret on the wire. */
export function wireSecret(wire: Record<string, any>, path: readonly string[]): boolean {
    let cur: any = wire;
    for (const key of path) {
        if (cur && typeof cur === "object" && cur[SIG_KEY] === SECRET_SIG) {
            return true; // a secret object: everything inside is secret
        }
        cur = cur?.[key];
    }
    return Boolean(cur && typeof cur === "object" && cur[SIG_KEY] === SECRET_SIG);
}

/**
 * Waits until the runtime has no RPC in flight (e.g. a component's registerOutputs), so the
 * next test's mocks never receive a call meant for this one's.
 */
export async function settle(): Promise<void> {
    const runtime = pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> };
    if (runtime.waitForRPCs) {
        await runtime.waitForRPCs();
    }
    await new Promise((r) => setTimeout(r, 10));
}
