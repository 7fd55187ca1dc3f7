/**
 * The GitOps layer of the whole program, run under mocks with the shipped Pulumi.prod.yaml:
 * the Argo CD chart and the values that carry each requirement, Applications after the chart,
 * AppProjects restricting sources, the GitLab wiring (deploy token read-only, GITOPS_TOKEN masked
 * and protected, the webhook secret shared with Argo CD and secret), and the outputs contract.
 */
import { readFileSync } from "fs";
import * as path from "path";

import { ARGOCD_CHART, argoCdValuesIndex } from "../components/gitops/argocd";
import { unreadValues } from "../components/gitops/chartValues";
import { parseStackFile } from "../infra/config";
import { parsePlatformOutputs } from "../stacks/outputs";
import { TEST_KEY } from "./support/config";
import { crdValidator, errorsOf } from "./support/crdSchema";
import type { Recorded, Recorder } from "./support/mocks";
import { isSecret, resolve, wireSecret } from "./support/mocks";
import { PROD_TEST_SECRETS, prodStack, runProgram } from "./support/program";
import { providerState } from "./support/providerState";

const GITLAB_TOKEN = PROD_TEST_SECRETS.gitlabToken;
const SSO_CLIENT_SECRET = PROD_TEST_SECRETS.argocdSsoClientSecret;
const CHART = "kubernetes:helm.sh/v4:Chart";
const APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application";
const APP_PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject";
const REPO = "https://gitlab.example.com/platform/manifests.git";

type Run = { recorder: Recorder; exports: Record<string, any> };

function only(recorder: Recorder, type: string): Recorded {
    const found = recorder.ofType(type);
    expect([type, found.length]).toEqual([type, 1]);
    return found[0];
}

describe("the GitOps layer, whole program with Pulumi.prod.yaml", () => {
    let run: Run;
    let webhookSecret: string;

    beforeAll(async () => {
        const { raw, secretKeys } = prodStack();
        run = await runProgram(raw, secretKeys);
        webhookSecret = String(providerState("random:index/randomPassword:RandomPassword", "gitops-webhook-secret")?.result);
    });

    test("the Argo CD chart is pinned, and its values carry the requirements", () => {
        const chart = only(run.recorder, CHART);
        expect(chart.inputs).toMatchObject({
            chart: ARGOCD_CHART.chart,
            version: ARGOCD_CHART.version,
            repositoryOpts: { repo: ARGOCD_CHART.repo },
            namespace: "argocd",
        });
        const values = chart.inputs.values as Record<string, any>;
        expect(values.configs.cm["admin.enabled"]).toBe("false");
        expect(values.configs.cm["timeout.reconciliation"]).toBe("180s");
        expect(values.configs.rbac["policy.default"]).toBe("role:readonly");
        expect(values.configs.rbac["policy.csv"]).toContain("platform/argocd-admins");
        // The values are known at preview (no secret in them); the webhook secret GitLab's hook
        // sends is patched into argocd-secret, as a secret.
        expect(wireSecret(chart.wire, ["values"])).toBe(false);
        expect(JSON.stringify(values)).not.toContain(webhookSecret);
        const patch = only(run.recorder, "kubernetes:core/v1:SecretPatch");
        expect(patch.inputs.stringData["webhook.gitlab.secret"]).toBe(webhookSecret);
        expect(wireSecret(patch.wire, ["stringData", "webhook.gitlab.secret"])).toBe(true);
        // Every workload declares the residency mode: global.env reaches every component's main
        // container, the post-renderer the init containers; no component list the chart ignores.
        expect(values.global.env).toEqual([{ name: "DATA_RESIDENCY_MODE", value: "strict_eea" }]);
        expect(chart.inputs.postRenderer.args).toContain("DATA_RESIDENCY_MODE=strict_eea");
        expect(unreadValues(argoCdValuesIndex(), values)).toEqual([]);
        // Redis' password Secret comes from the program, secret, before the chart.
        expect(values.redisSecretInit.enabled).toBe(false);
        const redis = run.recorder.byName("argocd-redis");
        expect(redis.inputs.metadata.name).toBe("argocd-redis");
        expect(redis.inputs.stringData.auth).toBe(providerState("random:index/randomPassword:RandomPassword", "argocd-redis-password")?.result);
        expect(wireSecret(redis.wire, ["stringData", "auth"])).toBe(true);
        expect(run.recorder.dependsOn(chart.name, "argocd-redis")).toBe(true);
        expect(values.global.image).toEqual({ repository: "quay.io/argoproj/argocd", tag: ARGOCD_CHART.appVersion });
    });

    test("the UI is reachable from the VPN only; only /api/webhook is public", () => {
        const ingresses = run.recorder.ofType("kubernetes:networking.k8s.io/v1:Ingress");
        const ui = ingresses.find((i) => i.inputs.spec.rules[0].host === "argocd.vpn.osl.example.net")!;
        const hook = ingresses.find((i) => i.inputs.spec.rules[0].host === "argocd-hooks.osl.example.net")!;
        expect(ui).toBeDefined();
        expect(hook).toBeDefined();
        const middlewares = run.recorder.ofType("kubernetes:traefik.io/v1alpha1:Middleware");
        const allow = middlewares.find((m) => m.inputs.spec?.ipAllowList !== undefined)!;
        expect(allow.inputs.spec.ipAllowList.sourceRange).toEqual(["10.8.0.0/24"]);
        expect(JSON.stringify(ui.inputs.metadata.annotations)).toContain(allow.inputs.metadata.name);
        const paths = hook.inputs.spec.rules[0].http.paths as { path: string; pathType: string }[];
        expect(paths.map((p) => [p.path, p.pathType])).toEqual([["/api/webhook", "Exact"]]);
    });

    test("Applications come after the chart, validate against the CRD, and sync automatically", () => {
        const { recorder } = run;
        const chart = only(recorder, CHART);
        const app = only(recorder, APPLICATION);
        const project = only(recorder, APP_PROJECT);
        expect(recorder.dependsOn(app.name, chart.name)).toBe(true);
        expect(recorder.dependsOn(app.name, project.name)).toBe(true);
        expect(app.inputs.metadata).toMatchObject({ name: "backend-service-prod", namespace: "argocd" });
        expect(app.inputs.spec).toMatchObject({
            project: "prod",
            source: { repoURL: REPO, targetRevision: "main", path: "apps/backend-service", helm: { valueFiles: ["values-prod.yaml"] } },
            destination: { server: "https://kubernetes.default.svc", namespace: "backend" },
            syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: expect.arrayContaining(["CreateNamespace=true"]) },
        });
        expect(project.inputs.spec.sourceRepos).toEqual([REPO]);
        expect(project.inputs.spec.destinations).toEqual([expect.objectContaining({ namespace: "backend", server: "https://kubernetes.default.svc" })]);
        const strip = (r: Recorded) => {
            const { apiVersion, kind, metadata, spec } = r.inputs;
            return { apiVersion, kind, metadata: { name: metadata.name, namespace: metadata.namespace }, spec };
        };
        const validApp = crdValidator("application-crd.yaml");
        expect([validApp(strip(app)), errorsOf(validApp)]).toEqual([true, []]);
        const validProject = crdValidator("appproject-crd.yaml");
        expect([validProject(strip(project)), errorsOf(validProject)]).toEqual([true, []]);
        // The check can fail.
        const broken = strip(app);
        broken.spec = { ...broken.spec, syncPolicy: { automated: { prune: "yes" } } };
        expect(validApp(broken)).toBe(false);
    });

    test("GitLab: read-only deploy token for Argo CD, GITOPS_TOKEN masked and protected, push webhook with the shared secret", () => {
        const { recorder } = run;
        const deploy = only(recorder, "gitlab:index/projectDeployToken:ProjectDeployToken");
        expect(deploy.inputs.scopes).toEqual(["read_repository"]);
        const access = only(recorder, "gitlab:index/projectAccessToken:ProjectAccessToken");
        expect(access.inputs.scopes).toEqual(["write_repository"]);
        const variable = only(recorder, "gitlab:index/projectVariable:ProjectVariable");
        expect(variable.inputs).toMatchObject({ key: "GITOPS_TOKEN", masked: true, protected: true, project: "shop/backend-service" });
        expect(wireSecret(variable.wire, ["value"])).toBe(true);
        const hook = only(recorder, "gitlab:index/projectHook:ProjectHook");
        expect(hook.inputs).toMatchObject({ url: "https://argocd-hooks.osl.example.net/api/webhook", pushEvents: true, enableSslVerification: true });
        expect(hook.inputs.token).toBe(webhookSecret);
        expect(wireSecret(hook.wire, ["token"])).toBe(true);
        // The Argo CD repository Secret holds the deploy token, as a secret.
        const repoSecret = recorder
            .ofType("kubernetes:core/v1:Secret")
            .find((s) => s.inputs.metadata?.labels?.["argocd.argoproj.io/secret-type"] === "repository")!;
        expect(repoSecret.inputs.stringData.url).toBe(REPO);
        expect(wireSecret(repoSecret.wire, ["stringData"])).toBe(true);
        // Every GitLab resource goes through the one provider, whose token is secret.
        const provider = only(recorder, "pulumi:providers:gitlab");
        expect(provider.inputs.baseUrl).toBe("https://gitlab.example.com/api/v4/");
        expect(wireSecret(provider.wire, ["token"])).toBe(true);
    });

    test("no token or secret appears in clear on the wire or in the outputs", async () => {
        const secrets = [GITLAB_TOKEN, SSO_CLIENT_SECRET, webhookSecret, "glpat-", "gldt-"];
        for (const r of run.recorder.resources) {
            const clear = JSON.stringify(r.wire, (_k, v: unknown) =>
                v !== null && typeof v === "object" && (v as Record<string, unknown>)["4dabf18193072939515e22adb298388d"] !== undefined ? "[secret]" : v,
            );
            for (const s of secrets) {
                expect([r.name, clear.includes(s)]).toEqual([r.name, false]);
            }
        }
        expect(await isSecret(run.exports.platform)).toBe(false);
        const platform = JSON.stringify(await resolve(run.exports.platform));
        for (const s of secrets) {
            expect(platform.includes(s)).toBe(false);
        }
    });

    test("single sign-on through Dex and GitLab: the client secret only in argocd-secret, as a secret", () => {
        const values = only(run.recorder, CHART).inputs.values as Record<string, any>;
        expect(values.dex.enabled).toBe(true);
        expect(values.configs.cm["dex.config"]).toContain("baseURL: https://gitlab.example.com");
        expect(values.configs.cm["dex.config"]).toContain("clientSecret: $dex.gitlab.clientSecret");
        expect(values.configs.rbac["policy.csv"]).toBe("g, platform/argocd-admins, role:admin\n");
        const patch = only(run.recorder, "kubernetes:core/v1:SecretPatch");
        expect(patch.inputs.stringData["dex.gitlab.clientSecret"]).toBe(SSO_CLIENT_SECRET);
        expect(wireSecret(patch.wire, ["stringData", "dex.gitlab.clientSecret"])).toBe(true);
    });

    test("the outputs object carries the GitOps layer and matches its contract", async () => {
        const outputs = parsePlatformOutputs(await resolve(run.exports.platform), "prod");
        expect(outputs.gitops).toEqual({
            argocdUrl: "https://argocd.vpn.osl.example.net",
            argocdNamespace: "argocd",
            webhookUrl: "https://argocd-hooks.osl.example.net/api/webhook",
            manifestsRepoUrl: REPO,
            gitopsTokenExpiresAt: "2027-05-25",
            appProjects: ["shop/backend-service"],
            applications: ["backend-service-prod"],
        });
        expect(outputs.kubernetes.apiEndpoint).toBe("api.osl.example.net");
    });
});

describe("the GitOps layer without GitLab wiring (the repository and its webhook wired by hand)", () => {
    const URL = "https://git.example.eu/platform/manifests.git";
    const PASSWORD = "reader-SECRET-0123456789";
    let run: Run;

    beforeAll(async () => {
        const text = readFileSync(path.join(__dirname, "..", "Pulumi.prod.yaml"), "utf8");
        const { raw, secretKeys } = parseStackFile(text, { sshPrivateKey: TEST_KEY, manifestsPassword: PASSWORD });
        const g = raw.gitops as Record<string, any>;
        delete g.gitlab;
        delete g.argocd.sso;
        delete g.argocd.breakGlassGroup;
        g.argocd.chart = { path: "/srv/charts/argo-cd-10.1.1.tgz" };
        g.manifests = { url: URL, username: "argocd-reader" };
        g.appProjects = [];
        delete raw.gitlabToken;
        delete raw.argocdSsoClientSecret;
        secretKeys.delete("gitlabToken");
        secretKeys.delete("argocdSsoClientSecret");
        run = await runProgram(raw, [...secretKeys]);
    });

    test("no GitLab resource; Argo CD reads the given repository with the given credential, kept secret", () => {
        expect(run.recorder.resources.filter((r) => r.type.startsWith("gitlab:") || r.type.startsWith("pulumi:providers:gitlab"))).toEqual([]);
        const repo = run.recorder.byName("argocd-repository");
        expect(repo.inputs.stringData).toMatchObject({ url: URL, username: "argocd-reader", password: PASSWORD });
        expect(wireSecret(repo.wire, ["stringData", "password"])).toBe(true);
        for (const app of run.recorder.ofType(APPLICATION)) {
            expect(app.inputs.spec.source.repoURL).toBe(URL);
        }
    });

    test("the chart from a local tarball; no SSO, so no one logs in to the UI and the kubeconfig is the way in", () => {
        const chart = only(run.recorder, CHART);
        expect(chart.inputs).toMatchObject({ chart: "/srv/charts/argo-cd-10.1.1.tgz", version: "10.1.1" });
        expect(chart.inputs.repositoryOpts).toBeUndefined();
        expect(chart.inputs.values.dex.enabled).toBe(false);
        expect(chart.inputs.values.configs.rbac["policy.csv"]).toBe("\n");
    });

    test("the webhook secret to set in GitLab by hand is a secret stack output; the outputs say where things are", async () => {
        expect(await isSecret(run.exports.gitopsWebhookSecret)).toBe(true);
        const secret = String(await resolve(run.exports.gitopsWebhookSecret));
        expect(secret).toBe(providerState("random:index/randomPassword:RandomPassword", "gitops-webhook-secret")?.result);
        const outputs = parsePlatformOutputs(await resolve(run.exports.platform), "prod");
        expect(outputs.gitops).toMatchObject({ manifestsRepoUrl: URL, gitopsTokenExpiresAt: null, appProjects: [] });
        expect(JSON.stringify(outputs)).not.toContain(secret);
    });
});
