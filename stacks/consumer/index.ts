/**
 * A team's stack on a zerotouch platform. It holds no cluster credential of its own: the
 * platform stack's outputs (read through a StackReference, validated against the contract)
 * give the kubeconfig (still a secret here), the manifests repository and Argo CD's namespace.
 * It declares the team's AppProject (sources: the manifests repository only; destinations: the
 * team's namespace only) and its Application; Argo CD does the rest from Git.
 *
 *     pulumi config set platformStack acme/zerotouch/prod
 *     pulumi config set team payments
 *     pulumi config set path apps/payments
 *     pulumi config set namespace payments
 *     pulumi up
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

import { application, appProject } from "../../components/gitops/applications";
import { PlatformOutputs } from "../outputs";
import { platformStackName, readPlatform } from "../reference";

const config = new pulumi.Config();
const team = config.require("team");
const path = config.require("path");
const namespace = config.require("namespace");
const valueFiles = config.getObject<string[]>("valueFiles") ?? [];

const platform = readPlatform(platformStackName(config));

/** The platform's GitOps outputs; a platform without them cannot take Applications. */
function gitopsOf(p: PlatformOutputs): NonNullable<PlatformOutputs["gitops"]> {
    if (p.gitops === null) {
        throw new pulumi.RunError(`stack ${p.stack} has no GitOps layer (zerotouch:gitops is not set there); this stack needs it`);
    }
    return p.gitops;
}

const provider = new k8s.Provider("platform", { kubeconfig: platform.kubeconfig, enableServerSideApply: true });

const project = platform.outputs.apply((p) => {
    const g = gitopsOf(p);
    return appProject(team, { repoUrl: g.manifestsRepoUrl, namespaces: [namespace], argoCdNamespace: g.argocdNamespace });
});
const app = platform.outputs.apply((p) => {
    const g = gitopsOf(p);
    return application(team, { project: team, repoUrl: g.manifestsRepoUrl, path, namespace, valueFiles, argoCdNamespace: g.argocdNamespace });
});

const appProjectResource = new k8s.apiextensions.CustomResource(
    `${team}-project`,
    { apiVersion: "argoproj.io/v1alpha1", kind: "AppProject", metadata: project.metadata, spec: project.spec },
    { provider },
);

new k8s.apiextensions.CustomResource(
    `${team}-application`,
    { apiVersion: "argoproj.io/v1alpha1", kind: "Application", metadata: app.metadata, spec: app.spec },
    { provider, dependsOn: [appProjectResource] },
);

/** Where the team's manifests live and where Argo CD shows them. */
export const manifestsRepoUrl = platform.outputs.apply((p) => gitopsOf(p).manifestsRepoUrl);
export const argocdUrl = platform.outputs.apply((p) => gitopsOf(p).argocdUrl);
