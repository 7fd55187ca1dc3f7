import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";

/** The gate's real stdout, recorded on an ext4 loop device (test/fixtures/fio). */
const PASS_STDOUT = fs.readFileSync(path.join(__dirname, "fixtures", "fio", "gate-pass.stdout"), "utf8");
const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAzerotouchSECRET\n-----END OPENSSH PRIVATE KEY-----\n";

/** Fixtures and recorded inputs are read as loose JSON; the code under test does the validating. */
type Json = any;

/** What the mock saw per resource: inputs as the mock receives them (secrets unwrapped). */
interface Recorded {
    readonly type: string;
    readonly name: string;
    readonly inputs: Record<string, Json>;
}
const recorded: Recorded[] = [];

/** The registration as the engine receives it: secrets wrapped, dependencies as URNs. */
interface Registration {
    readonly parent: string;
    readonly dependencies: string[];
    readonly object: Record<string, Json>;
}
const registrations = new Map<string, Registration>();

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";
const isSecretWrapper = (v: unknown): v is { value: unknown } =>
    typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG] === SECRET_VALUE;

/** Whether the value at `keys` is secret: itself or one of the objects holding it is wrapped. */
function isSecretAt(root: unknown, keys: string[]): boolean {
    let v = root;
    let secret = false;
    for (const key of [...keys, ""]) {
        if (isSecretWrapper(v)) {
            secret = true;
            v = v.value;
        }
        if (key === "") {
            break;
        }
        v = (v as Record<string, unknown> | undefined)?.[key];
    }
    return secret && v !== undefined;
}

/** The value with every secret wrapper removed. */
function unwrap(v: unknown): unknown {
    if (isSecretWrapper(v)) {
        return unwrap(v.value);
    }
    if (Array.isArray(v)) {
        return v.map(unwrap);
    }
    if (typeof v === "object" && v !== null) {
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrap(x)]));
    }
    return v;
}

function resolve<T>(output: pulumi.Output<T>): Promise<T> {
    return new Promise((res) => output.apply(res));
}

type GateModule = typeof import("../components/fsync/fsyncGate");
type CommandModule = typeof import("@pulumi/command");
type ConnectionModule = typeof import("../components/lib/connection");
let gate: GateModule;
let command: CommandModule;
let connection: ConnectionModule;

interface RegisterRequest {
    getType(): string;
    getName(): string;
    getParent(): string;
    getDependenciesList(): string[];
    getObject(): { toJavaScript(): Record<string, Json> } | undefined;
}
interface MonitorLike {
    registerResource(req: RegisterRequest, callback: (...a: unknown[]) => void): void;
}

beforeAll(async () => {
    await pulumi.runtime.setMocks(
        {
            newResource: (args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult => {
                recorded.push({ type: args.type, name: args.name, inputs: args.inputs });
                const state =
                    args.type === "command:remote:Command" && args.name.endsWith("-fio")
                        ? { ...args.inputs, stdout: PASS_STDOUT, stderr: "" }
                        : { ...args.inputs, stdout: "", stderr: "" };
                return { id: `${args.name}-id`, state };
            },
            call: (args: pulumi.runtime.MockCallArgs) => args.inputs,
        },
        "zerotouch",
        "test",
        false,
    );
    // Also keep each raw registration: dependencies and secrets as the engine receives them.
    const monitor = pulumi.runtime.getMonitor() as unknown as MonitorLike;
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, callback) => {
        registrations.set(req.getName(), {
            parent: req.getParent(),
            dependencies: req.getDependenciesList(),
            object: req.getObject()?.toJavaScript() ?? {},
        });
        register(req, callback);
    };
    gate = await import("../components/fsync/fsyncGate");
    command = await import("@pulumi/command");
    connection = await import("../components/lib/connection");
});

const target = { host: "203.0.113.10", port: 22, user: "root" };

function newGate(name: string, thresholdMs: number, extra: Partial<import("../components/fsync/fsyncGate").FsyncGateArgs> = {}) {
    const preflight = new command.remote.Command(`${name}-preflight`, {
        connection: connection.sshConnection(target, PRIVATE_KEY),
        create: "true",
    });
    const g = new gate.FsyncGate(name, {
        node: "cp-1",
        target,
        connection: connection.sshConnection(target, pulumi.secret(PRIVATE_KEY)),
        dataPath: "/var/lib/etcd",
        thresholdMs,
        runs: 3,
        dependsOn: [preflight],
        ...extra,
    });
    return { g, preflight };
}

/** Waits for the gate's outputs, then returns what was recorded for its fio command. */
async function settle(name: string, g: InstanceType<GateModule["FsyncGate"]>): Promise<Recorded & Registration> {
    await resolve(g.command.urn);
    await resolve(g.p99Ms);
    const fio = recorded.find((r) => r.name === `${name}-fio`);
    const registration = registrations.get(`${name}-fio`);
    if (fio === undefined || registration === undefined) {
        throw new Error(`${name}-fio was not registered`);
    }
    return { ...fio, ...registration };
}

describe("FsyncGate", () => {
    it("registers under its token with one child, ${name}-fio, after the preflight", async () => {
        const { g, preflight } = newGate("cp-1-fsync", 10);
        const fio = await settle("cp-1-fsync", g);
        const component = recorded.find((r) => r.name === "cp-1-fsync");
        expect(component?.type).toBe("zerotouch:fsync:FsyncGate");
        expect(fio.type).toBe("command:remote:Command");
        expect(fio.parent).toBe(await resolve(g.urn));
        expect(fio.dependencies).toContain(await resolve(preflight.urn));
        expect(await resolve(g.command.urn)).toMatch(/zerotouch:fsync:FsyncGate\$command:remote:Command::cp-1-fsync-fio$/);
        // Measurement only: no delete command, no secret outputs, output is logged.
        expect(fio.inputs.delete).toBeUndefined();
        expect(fio.inputs.logging).toBeUndefined();
    });

    it("keeps the private key secret and out of the payload", async () => {
        const { g } = newGate("cp-2-fsync", 10);
        const fio = await settle("cp-2-fsync", g);
        expect(isSecretAt(fio.object, ["connection", "privateKey"])).toBe(true);
        // The mock may see secrets wrapped or not, depending on the SDK; hold both views to it.
        expect(isSecretAt(fio.inputs, ["connection", "privateKey"])).toBe(true);
        expect((unwrap(fio.inputs) as { connection: { privateKey: string } }).connection.privateKey).toBe(PRIVATE_KEY);
        const notConnection = JSON.stringify(unwrap({ ...fio.inputs, connection: undefined }));
        expect(notConnection).not.toContain("zerotouchSECRET");
        expect(notConnection).not.toContain("PRIVATE KEY");
        expect(fio.inputs.stdin).toContain("export ZT_NODE='cp-1'");
        expect(fio.inputs.stdin).toContain("export ZT_HOST='203.0.113.10'");
        expect(fio.inputs.stdin).toContain("export ZT_THRESHOLD_MS='10'");
        // Parameters travel in the payload only, never on the command line.
        expect(fio.inputs.create).not.toMatch(/cp-1|203\.0\.113|etcd/);
    });

    it("measures again when the threshold, the runs, the node or its host change, and only then", async () => {
        const triggersOf = async (name: string, thresholdMs: number, extra = {}): Promise<unknown> => {
            const { g } = newGate(name, thresholdMs, extra);
            return (await settle(name, g)).inputs.triggers;
        };
        const base = await triggersOf("t-base", 10);
        expect(base).toHaveLength(1);
        expect(await triggersOf("t-same", 10)).toEqual(base);
        expect(await triggersOf("t-key", 10, { connection: connection.sshConnection(target, "another key") })).toEqual(base);
        expect(await triggersOf("t-port", 10, { target: { ...target, port: 2222 } })).toEqual(base);
        expect(await triggersOf("t-threshold", 12)).not.toEqual(base);
        expect(await triggersOf("t-runs", 10, { runs: 5 })).not.toEqual(base);
        expect(await triggersOf("t-node", 10, { node: "cp-9" })).not.toEqual(base);
        expect(await triggersOf("t-host", 10, { target: { ...target, host: "203.0.113.99" } })).not.toEqual(base);
        expect(await triggersOf("t-path", 10, { dataPath: "/srv/etcd" })).not.toEqual(base);
    });

    it("derives p99Ms and runsP99Ms from fio's figures in the command's stdout", async () => {
        const { g } = newGate("cp-3-fsync", 10);
        await settle("cp-3-fsync", g);
        const line = JSON.parse(PASS_STDOUT.trim());
        const p99s: number[] = line.runs.map((r: { fio: { jobs: { sync: { lat_ns: { percentile: Record<string, number> } } }[] } }) =>
            r.fio.jobs[0].sync.lat_ns.percentile["99.000000"],
        );
        expect(await resolve(g.runsP99Ms)).toEqual(p99s.map((ns) => ns / 1e6));
        expect(await resolve(g.p99Ms)).toBe(Math.max(...p99s) / 1e6);
        const result = await resolve(g.result);
        expect(result.passed).toBe(true);
        expect(result.node).toBe("cp-1");
    });

    it("refuses invalid args before registering anything", async () => {
        expect(() => newGate("bad-fsync", 0)).toThrow(/fsync gate for node cp-1: thresholdMs is 0/);
        await new Promise((r) => setTimeout(r, 200));
        expect(registrations.has("bad-fsync-preflight")).toBe(true);
        expect([...registrations.keys()].filter((n) => n.startsWith("bad-fsync") && n !== "bad-fsync-preflight")).toEqual([]);
    });
});
