import * as pulumi from "@pulumi/pulumi";

import { OUTPUT_NAME, parsePlatformOutputs, PlatformOutputs } from "./outputs";

/**
 * Reads a zerotouch stack's outputs from another stack, validated against the contract.
 *
 *     const platform = platformReference("acme/zerotouch/prod");
 *     export const apiNodes = platform.apply((p) => p.controlPlaneNodes);
 */
export function platformReference(stackName: string, opts?: pulumi.CustomResourceOptions): pulumi.Output<PlatformOutputs> {
    const ref = new pulumi.StackReference(`zerotouch-${stackName.replace(/[^A-Za-z0-9-]/g, "-")}`, { name: stackName }, opts);
    return ref.requireOutput(OUTPUT_NAME).apply((value: unknown) => parsePlatformOutputs(value, `stack ${stackName}`));
}
