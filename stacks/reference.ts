import * as pulumi from "@pulumi/pulumi";

import { KUBECONFIG_OUTPUT_NAME, OUTPUT_NAME, parsePlatformOutputs, PlatformOutputs } from "./outputs";

/** A fully qualified stack name: `<organization>/<project>/<stack>`. */
const STACK_NAME = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

/** What another stack reads from a zerotouch stack. */
export interface PlatformReference {
    /** The `platform` object, validated against the outputs contract. */
    readonly outputs: pulumi.Output<PlatformOutputs>;
    /** The admin kubeconfig; a secret here too. Required on first use: fails then when the platform has no Kubernetes layer. */
    readonly kubeconfig: pulumi.Output<string>;
    /** The StackReference resource, for `dependsOn`. */
    readonly reference: pulumi.StackReference;
}

/**
 * The zerotouch stack to read, from this stack's config key `platformStack`
 * (`<organization>/<project>/<stack>`). Throws naming the key, the value and what is allowed.
 */
export function platformStackName(config: pulumi.Config = new pulumi.Config()): string {
    const name = config.require("platformStack");
    if (!STACK_NAME.test(name)) {
        throw new pulumi.RunError(
            `${config.name}:platformStack: given ${JSON.stringify(name)}; allowed: a stack name as <organization>/<project>/<stack>, e.g. acme/zerotouch/prod`,
        );
    }
    return name;
}

/**
 * Reads a zerotouch stack's outputs through one StackReference: `platform` with
 * `requireOutput`, validated against the contract (a breaking change fails here, naming each
 * field), and the secret `kubeconfig`, which stays secret.
 *
 *     const platform = readPlatform(platformStackName());
 *     const provider = new k8s.Provider("platform", { kubeconfig: platform.kubeconfig });
 */
export function readPlatform(stackName: string, opts?: pulumi.CustomResourceOptions): PlatformReference {
    if (!STACK_NAME.test(stackName)) {
        throw new Error(`platform stack ${JSON.stringify(stackName)}: allowed: <organization>/<project>/<stack>`);
    }
    const reference = new pulumi.StackReference(`zerotouch-${stackName.replace(/[^A-Za-z0-9-]/g, "-")}`, { name: stackName }, opts);
    const outputs = reference
        .requireOutput(OUTPUT_NAME)
        .apply((value: unknown) => parsePlatformOutputs(value, `stack ${stackName}`));
    // Required only by a stack that uses it: a platform without a Kubernetes layer has no
    // kubeconfig, and its other outputs stay readable.
    let kubeconfig: pulumi.Output<string> | undefined;
    return {
        outputs,
        reference,
        get kubeconfig(): pulumi.Output<string> {
            kubeconfig ??= pulumi.secret(
                reference.requireOutput(KUBECONFIG_OUTPUT_NAME).apply((value: unknown) => {
                    if (typeof value !== "string" || value.length === 0) {
                        throw new Error(`stack ${stackName}: the "${KUBECONFIG_OUTPUT_NAME}" output is not a kubeconfig (value not shown)`);
                    }
                    return value;
                }),
            );
            return kubeconfig;
        },
    };
}

/**
 * The `platform` object alone (see `readPlatform`).
 *
 *     const platform = platformReference("acme/zerotouch/prod");
 *     export const apiNodes = platform.apply((p) => p.controlPlaneNodes);
 */
export function platformReference(stackName: string, opts?: pulumi.CustomResourceOptions): pulumi.Output<PlatformOutputs> {
    return readPlatform(stackName, opts).outputs;
}
