import * as pulumi from "@pulumi/pulumi";

import { projectConfig, secretConfigKeys, validateConfig } from "./config";
import { buildPlatform } from "./program";

// Validate the whole stack config first: a bad value stops the program here, before any
// resource exists, with one line per problem.
const cfg = validateConfig(projectConfig(pulumi.runtime.allConfig()), secretConfigKeys());
const config = new pulumi.Config();
const privateKey = config.requireSecret("sshPrivateKey");
const existingKubeconfig = cfg.kubernetes.mode === "existing" ? config.requireSecret("kubeconfig") : undefined;

const gitlabToken = cfg.gitops !== undefined ? config.requireSecret("gitlabToken") : undefined;

const zerotouch = buildPlatform(cfg, privateKey, existingKubeconfig, gitlabToken);

/** The stack's typed outputs object; its contract is `stacks/outputs.ts` (OUTPUT_NAME). */
export const platform = zerotouch.outputs;

/**
 * The admin kubeconfig, a secret (KUBECONFIG_OUTPUT_NAME). Its own output, so that `platform`
 * stays readable without --show-secrets; absent with `kubernetes.mode: none`.
 */
export const kubeconfig = zerotouch.kubeconfig === undefined ? undefined : pulumi.secret(zerotouch.kubeconfig);
