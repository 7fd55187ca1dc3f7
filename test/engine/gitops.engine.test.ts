/**
 * The GitOps layer through the real engine: the lab stack with `kubernetes.mode: existing` on a
 * real kube-apiserver v1.36.3 (the test API server on loopback, test/k8s/cluster.ts) and the GitOps
 * layer without GitLab wiring, Argo CD from the argo-cd chart tarball. `pulumi preview
 * --policy-pack policy` runs the kubernetes plugin built here: `helm.v4.Chart` is rendered by the
 * provider, with the program's post-renderer, so the policies see the chart's real children, not
 * the program's idea of them.
 *
 * Checks: the preview passes every policy; the rendered children are the chart's workloads, each
 * container (init containers too) carrying the residency variable the post-renderer adds; a
 * policy config that refuses the chart's image registry fails the preview naming the child
 * workloads.
 */
import { readFileSync, rmSync } from "fs";
import * as path from "path";

import { RESIDENCY_ENV, RESIDENCY_VALUE, WORKLOAD_POD_SPEC } from "../../policy/lib";
import { TestCluster } from "../k8s/cluster";
import { Lab, loadLab } from "../lab/harness";
import { LAB_GITOPS_SECRETS, labGitopsConfig } from "../lab/kubeApi";
import { referenceFile } from "../support/reference";
import { labPolicyConfig, PulumiCli, REPO_ROOT, raiseFsyncThreshold, writeLabStackFile } from "./pulumi";

const STACK = "lab-gitops";
const STATE = path.join(REPO_ROOT, ".lab", "engine-gitops");
const CHART = "kubernetes:helm.sh/v4:Chart";

interface PreviewStep {
    op: string;
    urn: string;
    newState?: { type: string; inputs: Record<string, any> };
}

/** The chart's children in a `pulumi preview --json`: resources whose parent chain holds the chart. */
function chartChildren(steps: readonly PreviewStep[]): PreviewStep[] {
    return steps.filter((s) => s.urn.split("::")[2].includes(`${CHART}$`));
}

/** Each container of a workload (init containers too) and its residency variable's value. */
function residency(step: PreviewStep): { container: string; value: unknown }[] {
    let spec: any = step.newState!.inputs;
    for (const key of WORKLOAD_POD_SPEC[step.newState!.type]) {
        spec = spec?.[key];
    }
    return ["initContainers", "containers"].flatMap((list) =>
        ((spec?.[list] ?? []) as { name: string; env?: { name: string; value?: string }[] }[]).map((c) => ({
            container: `${list}/${c.name}`,
            value: c.env?.find((e) => e.name === RESIDENCY_ENV)?.value,
        })),
    );
}

describe("the GitOps layer through the engine on a real Kubernetes API server", () => {
    const cluster = new TestCluster();
    let lab: Lab;
    let cli: PulumiCli;

    beforeAll(async () => {
        lab = loadLab();
        await cluster.start();
        rmSync(STATE, { recursive: true, force: true });
        rmSync(path.join(REPO_ROOT, `Pulumi.${STACK}.yaml`), { force: true });
        cli = new PulumiCli(STATE);
        writeLabStackFile(STACK, {
            edit: (config) => {
                raiseFsyncThreshold(config);
                config["zerotouch:kubernetes"] = { mode: "existing" };
                config["zerotouch:gitops"] = labGitopsConfig(lab, referenceFile("charts", "argo-cd-10.1.1.tgz"));
            },
        });
        cli.must(["stack", "init", STACK, "--secrets-provider", "passphrase"]);
        const secrets: Record<string, string> = {
            sshPrivateKey: readFileSync(lab.keyPath, "utf8"),
            kubeconfig: readFileSync(cluster.kubeconfig, "utf8"),
            manifestsPassword: LAB_GITOPS_SECRETS.manifestsPassword,
        };
        for (const [key, value] of Object.entries(secrets)) {
            cli.must(["config", "set", "--secret", "--stack", STACK, `zerotouch:${key}`], { input: value });
        }
    }, 600_000);

    afterAll(() => {
        cluster.stop();
    });

    test("preview passes every policy; the chart's workloads are rendered and carry the residency variable", () => {
        const policy = labPolicyConfig(lab, STATE);
        // The policies' verdicts are in the text output; the planned objects in the JSON one.
        const checked = cli.run(["preview", "--stack", STACK, "--policy-pack", "policy", "--policy-pack-config", policy]);
        if (checked.code !== 0) {
            throw new Error(`preview --policy-pack: exit ${checked.code}\n${checked.stdout.slice(-6000)}\n${checked.stderr.slice(-3000)}`);
        }
        const r = cli.must(["preview", "--stack", STACK, "--json"]);
        const preview = JSON.parse(r.stdout) as { steps: PreviewStep[] };
        const children = chartChildren(preview.steps);
        const workloads = children.filter((s) => s.newState !== undefined && s.newState.type in WORKLOAD_POD_SPEC);
        const names = workloads.map((w) => w.urn.split("::").pop()!).sort();
        expect(names).toEqual(expect.arrayContaining([expect.stringMatching(/argocd-server$/), expect.stringMatching(/argocd-repo-server$/), expect.stringMatching(/argocd-application-controller$/)]));
        const missing = workloads.flatMap((w) => residency(w).filter((c) => c.value !== RESIDENCY_VALUE).map((c) => `${w.urn.split("::").pop()} ${c.container}: ${String(c.value)}`));
        expect(missing).toEqual([]);
        const containers = workloads.reduce((n, w) => n + residency(w).length, 0);
        console.log(
            `pulumi preview --policy-pack policy with the GitOps layer on ${cluster.apiServerUrl}: passed in ${checked.seconds.toFixed(1)} s; ` +
                `the chart rendered by the kubernetes plugin: ${children.length} children, ${workloads.length} workloads (${names.join(", ")}), ` +
                `${containers} containers, each with ${RESIDENCY_ENV}=${RESIDENCY_VALUE}`,
        );
    });

    test("a policy config that refuses the chart's image registry fails the preview, naming the chart's children", () => {
        const policy = labPolicyConfig(lab, STATE, (config) => {
            config["image-registries-allowed"].allowedRegistries = (config["image-registries-allowed"].allowedRegistries as string[]).filter((r) => r !== "quay.io");
        });
        const r = cli.run(["preview", "--stack", STACK, "--policy-pack", "policy", "--policy-pack-config", policy]);
        expect({ code: r.code, out: r.stdout.slice(-3000) }).not.toMatchObject({ code: 0 });
        const lines = r.stdout.split("\n").filter((l) => /image-registries-allowed/.test(l));
        expect(lines.length).toBeGreaterThan(0);
        expect(r.stdout).toMatch(/quay\.io\/argoproj\/argocd/);
        expect(r.stdout).toMatch(/argocd-server/);
        console.log(`preview with quay.io refused: failed as it must, ${lines.length} violation line(s), e.g.:\n${lines.slice(0, 3).join("\n")}`);
    });
});
