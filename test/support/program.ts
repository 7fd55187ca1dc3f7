import type { Recorder } from "./mocks";
import { nodeStdout } from "./nodeStdout";
import { providerState } from "./providerState";

/** The stack config as Pulumi hands it to the program: flat, JSON-encoded, namespaced. */
export function pulumiConfig(raw: Record<string, unknown>): Record<string, string> {
    return Object.fromEntries(
        Object.entries(raw).map(([k, v]) => [`zerotouch:${k}`, typeof v === "string" ? v : JSON.stringify(v)]),
    );
}

/**
 * Installs mocks from inside an isolated module registry, so that the program, the SDK and the
 * mocks share one fresh copy of each module and the program evaluates again. Scripts answer with
 * recorded real output (nodeStdout); tls and random resources with what their providers compute.
 */
export async function freshMocks(raw: Record<string, unknown>, secretKeys: readonly string[] = ["sshPrivateKey"]): Promise<Recorder> {
    const mocks = await import("./mocks");
    return mocks.installMocks({
        config: pulumiConfig(raw),
        secretKeys: secretKeys.map((k) => `zerotouch:${k}`),
        stdoutFor: (type, name, inputs) => nodeStdout(type, name, inputs),
        stateFor: (type, name, inputs) => providerState(type, name, inputs),
    });
}

/** Runs the whole program (infra/index.ts) under mocks; resolves once its outputs are known. */
export async function runProgram(
    raw: Record<string, unknown>,
    secretKeys?: readonly string[],
): Promise<{ recorder: Recorder; exports: Record<string, any> }> {
    let recorder!: Recorder;
    let exports!: Record<string, any>;
    await jest.isolateModulesAsync(async () => {
        recorder = await freshMocks(raw, secretKeys);
        exports = (await import("../../infra/index")) as Record<string, any>;
        const { resolve, settle } = await import("./mocks");
        await resolve(exports.platform);
        if (exports.kubeconfig !== undefined) {
            await resolve(exports.kubeconfig);
        }
        await settle();
    });
    return { recorder, exports };
}
