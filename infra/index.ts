import * as pulumi from "@pulumi/pulumi";

import { projectConfig, secretConfigKeys, validateConfig } from "./config";
import { buildPlatform } from "./program";

// Validate the whole stack config first: a bad value stops the program here, before any
// resource exists, with one line per problem.
const cfg = validateConfig(projectConfig(pulumi.runtime.allConfig()), secretConfigKeys());
const privateKey = new pulumi.Config().requireSecret("sshPrivateKey");

const zerotouch = buildPlatform(cfg, privateKey);

/** The stack's one output: a typed object whose contract is `stacks/outputs.ts` (OUTPUT_NAME). */
export const platform = zerotouch.outputs;
