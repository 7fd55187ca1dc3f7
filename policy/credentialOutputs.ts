import type { StackValidationPolicy } from "@pulumi/policy";

import { configList, get, isObject, isUnknown, plain, stringListProperty } from "./lib";

export const CREDENTIAL_OUTPUTS = "credential-outputs-secret";

/** Outputs the program exports as secrets, the only ones that may hold credentials. Default of `secretOutputs`. */
export const SECRET_OUTPUTS: readonly string[] = ["kubeconfig"];

export const STACK_TYPE = "pulumi:pulumi:Stack";
const COMMAND_TYPES = ["command:remote:Command", "command:local:Command"];

/** What kind of credential a text holds, or undefined. The text itself is never shown. */
export function credentialKind(text: string): string | undefined {
    if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
        return "a private key";
    }
    if (/(^|\n|\\n)\s*kind:\s*["']?Config\b|"kind"\s*:\s*"Config"|\\"kind\\"\s*:\s*\\"Config\\"/.test(text) && /(client-key-data|client-key|token|password)\s*["']?\s*:/.test(text)) {
        return "a kubeconfig with credentials";
    }
    if (/\bgl(pat|dt|ptt|rt|oas|cbt)-[A-Za-z0-9_-]{20,}/.test(text)) {
        return "a GitLab token";
    }
    return undefined;
}

/** Keys whose non-empty string values are credentials by name. */
const CREDENTIAL_KEY = /^(kubeconfig|token|accessToken|deployToken|privateKey|privateKeyPem|keyPem|password|clientKey|clientKeyData|client-key-data)$/i;

/** Every credential in a value: its path and kind. */
function credentials(value: unknown, path: string): { path: string; kind: string }[] {
    if (typeof value === "string") {
        if (isUnknown(value)) {
            return [];
        }
        const kind = credentialKind(value);
        return kind === undefined ? [] : [{ path, kind }];
    }
    if (Array.isArray(value)) {
        return value.flatMap((v, i) => credentials(v, `${path}[${i}]`));
    }
    if (isObject(value)) {
        return Object.entries(value).flatMap(([k, v]) => {
            const here = `${path}.${k}`;
            const found = credentials(v, here);
            if (found.length === 0 && CREDENTIAL_KEY.test(k) && typeof v === "string" && v !== "" && !isUnknown(v)) {
                return [{ path: here, kind: `a value named ${k}` }];
            }
            return found;
        });
    }
    return [];
}

/**
 * Private keys, tokens and kubeconfigs never reach a plain output.
 *
 * CrossGuard decrypts secrets before a policy sees them and tells it nothing about which values
 * were secret (pulumi/pulumi-policy#241), so "is this output secret" cannot be asked directly.
 * What the engine does tell is checked instead:
 * - stack outputs: credentials may only be in the outputs listed in `secretOutputs` (which the
 *   program exports with `pulumi.secret`); a credential in any other output (e.g. `platform`,
 *   meant to be readable without --show-secrets) is a violation;
 * - commands: a `remote.Command`/`local.Command` whose stdout or stderr holds a credential must
 *   list that output in `additionalSecretOutputs` (the resource option the engine honours when it
 *   writes state). During preview a command's output is unknown: nothing has been read yet.
 * Messages name the output or resource, the path and the kind of credential, never the value.
 */
export const credentialOutputsSecret: StackValidationPolicy = {
    name: CREDENTIAL_OUTPUTS,
    description: "Private keys, tokens and kubeconfigs appear only in the secret stack outputs, and commands reading them keep stdout/stderr secret.",
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            secretOutputs: stringListProperty("Stack outputs that are exported as secrets and may hold credentials. Defaults to kubeconfig."),
        },
    },
    validateStack: (args, reportViolation) => {
        const secretOutputs = configList(args.getConfig<Record<string, unknown>>(), "secretOutputs", SECRET_OUTPUTS);
        for (const r of args.resources) {
            const props = plain(r.props);
            if (r.type === STACK_TYPE) {
                if (!isObject(props)) {
                    continue;
                }
                for (const [name, value] of Object.entries(props)) {
                    if (secretOutputs.includes(name)) {
                        continue;
                    }
                    for (const c of credentials(value, name)) {
                        reportViolation(
                            `stack output ${name}: ${c.path} holds ${c.kind} (value not shown) in an output that is not secret; allowed: credentials only in the secret outputs ${secretOutputs.join(", ") || "(none configured)"}`,
                            r.urn,
                        );
                    }
                }
                continue;
            }
            if (COMMAND_TYPES.includes(r.type)) {
                const secretOpts = r.opts.additionalSecretOutputs ?? [];
                for (const field of ["stdout", "stderr"]) {
                    const v = get(props, [field]);
                    const kind = typeof v === "string" && !isUnknown(v) ? credentialKind(v) : undefined;
                    if (kind !== undefined && !secretOpts.includes(field)) {
                        reportViolation(
                            `command ${r.name}: ${field} holds ${kind} (value not shown) but is not secret; allowed: ${field} listed in additionalSecretOutputs (with logging "none")`,
                            r.urn,
                        );
                    }
                }
            }
        }
    },
};
