import * as pulumi from "@pulumi/pulumi";

import { projectConfig, secretConfigKeys, validateConfig } from "./config";
import { buildPlatform } from "./program";

// Validate the whole stack config first: a bad value stops the program here, before any
// resource exists, with one line per problem.
const cfg = validateConfig(projectConfig(pulumi.runtime.allConfig()), secretConfigKeys());
const config = new pulumi.Config();
// Each secret is read only where the validated config needs it.
const zerotouch = buildPlatform(cfg, {
    privateKey: config.requireSecret("sshPrivateKey"),
    ...(cfg.kubernetes.mode === "existing" ? { kubeconfig: config.requireSecret("kubeconfig") } : {}),
    ...(cfg.gitops?.gitlab !== undefined ? { gitlabToken: config.requireSecret("gitlabToken") } : {}),
    ...(cfg.gitops?.argocd.sso !== undefined ? { argocdSsoClientSecret: config.requireSecret("argocdSsoClientSecret") } : {}),
    ...(cfg.gitops !== undefined && cfg.gitops.gitlab === undefined ? { manifestsPassword: config.requireSecret("manifestsPassword") } : {}),
    ...(cfg.etcd.snapshots.offsite?.type === "sftp" ? { etcdOffsite: pulumi.output({ sshPrivateKey: config.requireSecret("etcdOffsiteSshKey") }) } : {}),
    ...(cfg.etcd.snapshots.offsite?.type === "s3"
        ? { etcdOffsite: pulumi.output({ accessKeyId: config.requireSecret("etcdOffsiteAccessKeyId"), secretAccessKey: config.requireSecret("etcdOffsiteSecretAccessKey") }) }
        : {}),
});

/**
 * The stack's outputs. Only those that exist for this config are exported: an undefined export
 * makes the engine warn on every `up`.
 * - `platform`: the typed outputs object; its contract is `stacks/outputs.ts` (OUTPUT_NAME).
 * - `kubeconfig`: the admin kubeconfig, a secret (KUBECONFIG_OUTPUT_NAME). Its own output, so that
 *   `platform` stays readable without --show-secrets; absent with `kubernetes.mode: none`.
 * - `gitopsWebhookSecret`: the secret GitLab's push webhook must send, a secret: without
 *   `gitops.gitlab` the webhook is wired by hand (`pulumi stack output --show-secrets
 *   gitopsWebhookSecret`); absent otherwise.
 */
export = {
    platform: zerotouch.outputs,
    ...(zerotouch.kubeconfig === undefined ? {} : { kubeconfig: pulumi.secret(zerotouch.kubeconfig) }),
    ...(zerotouch.gitops !== undefined && zerotouch.gitops.gitlab === undefined
        ? { gitopsWebhookSecret: pulumi.secret(zerotouch.gitops.webhookSecret) }
        : {}),
};
