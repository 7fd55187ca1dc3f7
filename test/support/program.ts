import { readFileSync } from "fs";
import * as path from "path";

import { parseStackFile } from "../../infra/config";
import { TEST_KEY } from "./config";
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
    // Under jest each run gets fresh modules (a new program, new mocks); a one-shot process (the
    // benchmarks) runs it once as it is.
    const isolated = typeof jest === "undefined" ? async (run: () => Promise<void>) => run() : (run: () => Promise<void>) => jest.isolateModulesAsync(run);
    await isolated(async () => {
        recorder = await freshMocks(raw, secretKeys);
        // What the engine reads: the program's module.exports (the module uses `export =`).
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        exports = require("../../infra/index") as Record<string, any>;
        const { resolve, settle } = await import("./mocks");
        await resolve(exports.platform);
        if (exports.kubeconfig !== undefined) {
            await resolve(exports.kubeconfig);
        }
        await settle();
    });
    return { recorder, exports };
}

/** Test values for the secrets of Pulumi.prod.yaml (none is real). */
export const PROD_TEST_SECRETS = {
    sshPrivateKey: TEST_KEY,
    gitlabToken: "glpat-prodtoken-SECRET-0123456789",
    argocdSsoClientSecret: "gloas-sso-client-SECRET-0123456789",
} as const;

/** The shipped Pulumi.prod.yaml as the program gets it, with test values for its secrets; a fresh copy on every call. */
export function prodStack(secrets: Readonly<Record<string, string>> = PROD_TEST_SECRETS): { raw: Record<string, any>; secretKeys: string[] } {
    const text = readFileSync(path.join(__dirname, "..", "..", "Pulumi.prod.yaml"), "utf8");
    const { raw, secretKeys } = parseStackFile(text, secrets);
    return { raw: structuredClone(raw), secretKeys: [...secretKeys] };
}
