import type { ArgoCdArgs, ArgoCdValuesSpec, JsonObject } from "../components/gitops/argocd";
import {
    ARGOCD_CHART,
    argoCdValuesIndex,
    argoCdChartInputs,
    ArgoCdChartSource,
    argoCdPostRenderer,
    argoCdSizing,
    argoCdValues,
    planArgoCd,
    POST_RENDER_SCRIPT,
    RESOURCE_PATHS,
    SSO_SECRET_KEYS,
} from "../components/gitops/argocd";
import { parse as parseYaml } from "yaml";
import { unreadValues } from "../components/gitops/chartValues";
import type { Recorder } from "./support/mocks";
import { isSecret, resolve, wireSecret } from "./support/mocks";
import { refusedWithoutResources } from "./support/refused";

type Mod = typeof import("../components/gitops/argocd");
type AppsMod = typeof import("../components/gitops/applications");

const CHART = "kubernetes:helm.sh/v4:Chart";
const SECRET = "kubernetes:core/v1:Secret";
const INGRESS = "kubernetes:networking.k8s.io/v1:Ingress";
const MIDDLEWARE = "kubernetes:traefik.io/v1alpha1:Middleware";
const REPO = "https://gitlab.example.com/platform/manifests.git";
/** Must only ever travel as secrets. */
const WEBHOOK_SECRET = "whsecret-SECRET-0123456789abcdef";
const DEPLOY_TOKEN = "gldt-SECRET-deploytoken-xyz";

const SSO_SECRET = "gloas-SECRET-sso-client-0123456789";
const SSO = { provider: "gitlab", issuer: "https://gitlab.example.com", clientId: "argocd-osl" } as const;

const SPEC: ArgoCdValuesSpec = {
    hostname: "argocd.example.com",
    sso: SSO,
    breakGlassGroup: "platform/argocd-breakglass",
    extraPolicyLines: [],
    reconciliationSeconds: 180,
    nodeCount: 3,
    clusters: 1,
};

const get = (values: unknown, path: readonly string[]): any => path.reduce((cur: any, k) => cur?.[k], values);

// --- pure -------------------------------------------------------------------------------------

describe("argoCdValues", () => {
    const values = argoCdValues(SPEC) as any;

    it("pins the argo-cd chart that was rendered and checked (10.1.1, Argo CD v3.4.4), and its values index", () => {
        expect(ARGOCD_CHART).toEqual({ repo: "https://argoproj.github.io/argo-helm", chart: "argo-cd", version: "10.1.1", appVersion: "v3.4.4" });
        expect([argoCdValuesIndex().chart, argoCdValuesIndex().version]).toEqual([ARGOCD_CHART.chart, ARGOCD_CHART.version]);
    });

    it("sets no key the pinned chart does not read, for every size tier", () => {
        for (const nodeCount of [1, 5, 20]) {
            expect([nodeCount, unreadValues(argoCdValuesIndex(), argoCdValues({ ...SPEC, nodeCount }))]).toEqual([nodeCount, []]);
        }
    });

    it("gives every workload DATA_RESIDENCY_MODE through global.env, the one list the chart hands to every component", () => {
        expect(values.global.env).toEqual([{ name: "DATA_RESIDENCY_MODE", value: "strict_eea" }]);
        expect(argoCdPostRenderer()).toEqual({ command: "node", args: [POST_RENDER_SCRIPT, "DATA_RESIDENCY_MODE=strict_eea"] });
    });

    it("leaves Redis' password Secret to the program: the chart's hook Job is off", () => {
        expect(values.redisSecretInit.enabled).toBe(false);
    });

    it("serves plain HTTP behind Traefik's TLS, with auth, at https://<hostname>", () => {
        expect(values.configs.params["server.insecure"]).toBe("true");
        expect(values.configs.params["server.disable.auth"]).toBe("false");
        expect(values.global.domain).toBe("argocd.example.com");
        expect(values.configs.cm.url).toBe("https://argocd.example.com");
    });

    it("disables the local admin user, defaults to read-only and maps the break-glass group to role:admin", () => {
        expect(values.configs.cm["admin.enabled"]).toBe("false");
        expect(values.configs.cm["users.anonymous.enabled"]).toBe("false");
        expect(values.configs.rbac["policy.default"]).toBe("role:readonly");
        expect(values.configs.rbac["policy.csv"]).toBe("g, platform/argocd-breakglass, role:admin\n");
        expect(values.configs.rbac.scopes).toBe("[groups]");
        const more = argoCdValues({ ...SPEC, extraPolicyLines: ["g, dev/team-a, role:readonly"] }) as any;
        expect(more.configs.rbac["policy.csv"]).toBe("g, platform/argocd-breakglass, role:admin\ng, dev/team-a, role:readonly\n");
    });

    it.each([
        [180, "180s"],
        [600, "600s"],
        [30, "30s"],
    ])("turns reconciliationSeconds %s into timeout.reconciliation %s", (seconds, text) => {
        expect((argoCdValues({ ...SPEC, reconciliationSeconds: seconds }) as any).configs.cm["timeout.reconciliation"]).toBe(text);
    });

    it("holds no secret: the webhook secret goes into argocd-secret by a patch", () => {
        expect(values.configs.secret).toEqual({ createSecret: true });
        expect(JSON.stringify(values)).not.toContain(WEBHOOK_SECRET);
    });

    it("gives every component requests and limits for cpu and memory", () => {
        for (const [component, path] of Object.entries(RESOURCE_PATHS)) {
            const res = get(values, [...path, "resources"]);
            expect([component, Object.keys(res.requests).sort(), Object.keys(res.limits).sort()]).toEqual([component, ["cpu", "memory"], ["cpu", "memory"]]);
        }
    });

    it("keeps exposure to the component: no chart ingress, a ClusterIP API service", () => {
        expect(values.server.ingress.enabled).toBe(false);
        expect(values.server.ingressGrpc.enabled).toBe(false);
        expect(values.server.service.type).toBe("ClusterIP");
    });
});

describe("sizing by node count", () => {
    it.each([
        // nodes, clusters, tier, server, repo-server, controller, status/operation processors, controller memory limit
        [1, 1, "small", 1, 1, 1, "20/10", "1Gi"],
        [2, 1, "small", 1, 1, 1, "20/10", "1Gi"],
        [3, 1, "medium", 2, 2, 1, "20/10", "2Gi"],
        [9, 1, "medium", 2, 2, 1, "20/10", "2Gi"],
        [10, 1, "large", 2, 3, 1, "50/25", "4Gi"],
        [40, 3, "large", 2, 3, 3, "50/25", "4Gi"],
    ])("%s nodes, %s cluster(s): %s", (nodes, clusters, tier, server, repo, controller, processors, controllerMemory) => {
        const s = argoCdSizing(nodes, clusters);
        expect([s.tier, s.serverReplicas, s.repoServerReplicas, s.controllerReplicas, `${s.statusProcessors}/${s.operationProcessors}`, s.resources.controller.limits.memory]).toEqual([
            tier,
            server,
            repo,
            controller,
            processors,
            controllerMemory,
        ]);
        const v = argoCdValues({ ...SPEC, nodeCount: nodes, clusters }) as any;
        expect(v.controller.replicas).toBe(controller);
        expect(v.repoServer.replicas).toBe(repo);
        expect(v.server.replicas).toBe(server);
        expect(v.configs.params["controller.sharding.algorithm"]).toBe("legacy");
        expect(v.configs.params["controller.status.processors"]).toBe(processors.split("/")[0]);
        expect(v.repoServer.pdb.enabled).toBe(repo > 1);
    });
});

describe("values override", () => {
    it("deep-merges: adds keys and changes sizes, keeps the rest", () => {
        const v = argoCdValues({
            ...SPEC,
            override: {
                configs: { cm: { "statusbadge.enabled": "true" } },
                controller: { resources: { limits: { memory: "3Gi" } } },
                dex: { resources: { limits: { memory: "256Mi" } } },
            },
        }) as any;
        expect(v.configs.cm["statusbadge.enabled"]).toBe("true");
        expect(v.configs.cm["admin.enabled"]).toBe("false");
        expect(v.controller.resources).toEqual({ requests: { cpu: "500m", memory: "1Gi" }, limits: { cpu: "2", memory: "3Gi" } });
        expect(v.dex.enabled).toBe(true);
        expect(v.dex.resources).toEqual({ requests: { cpu: "10m", memory: "32Mi" }, limits: { cpu: "100m", memory: "256Mi" } });
    });

    it("refuses an override key the pinned chart does not read, naming it", () => {
        expect(() => argoCdValues({ ...SPEC, override: { applicationSet: { env: [{ name: "X", value: "y" }] } } })).toThrow(
            "ArgoCd: values override sets applicationSet.env, which the argo-cd chart 10.1.1 does not read (Helm would ignore it); allowed: keys of the chart's values.yaml or read by its templates",
        );
        expect(() => argoCdValues({ ...SPEC, override: { serverr: { replicas: 3 } } })).toThrow(/sets serverr.replicas, which the argo-cd chart 10.1.1 does not read/);
    });

    it.each<[string, object, RegExp]>([
        ["re-enabling admin", { configs: { cm: { "admin.enabled": "true" } } }, /values override sets configs\.cm\."admin\.enabled" to "true"; allowed: any chart value except configs\.cm\."admin\.enabled"/],
        ["anonymous users", { configs: { cm: { "users.anonymous.enabled": true } } }, /sets configs\.cm\."users\.anonymous\.enabled" to true/],
        ["a local account", { configs: { cm: { "accounts.alice": "apiKey, login" } } }, /sets configs\.cm\."accounts\.alice" to "apiKey, login"; allowed: no local accounts/],
        ["the default role", { configs: { rbac: { "policy.default": "role:admin" } } }, /sets configs\.rbac\."policy\.default" to "role:admin"; allowed: any chart value except configs\.rbac/],
        ["TLS on the API server", { configs: { params: { "server.insecure": "false" } } }, /sets configs\.params\."server\.insecure" to "false"/],
        ["auth off", { configs: { params: { "server.disable.auth": "true" } } }, /sets configs\.params\."server\.disable\.auth" to "true"/],
        ["the chart's ingress", { server: { ingress: { enabled: true } } }, /sets server\.ingress\.enabled to true; allowed: any chart value except server\.ingress/],
        ["a LoadBalancer service", { server: { service: { type: "LoadBalancer" } } }, /sets server\.service\.type to "LoadBalancer"/],
        ["a renamed API server Service", { fullnameOverride: "cd" }, /sets fullnameOverride to "cd"; allowed: any chart value except fullnameOverride/],
        ["all of configs at once", { configs: null }, /sets configs to null; allowed: any chart value except configs\.cm\."admin\.enabled"/],
        ["a component without limits", { repoServer: { resources: { limits: { memory: null } } } }, /leaves repoServer\.resources\.limits\.memory \(repoServer\) as null/],
        ["resources replaced by null", { redis: { resources: null } }, /leaves redis\.resources\.requests\.cpu \(redis\) as null/],
    ])("refuses %s, naming key and value", (_name, override, message) => {
        expect(() => argoCdValues({ ...SPEC, override: override as any })).toThrow(message);
    });

    it("refuses a secret in the override without showing it", () => {
        const overrides: JsonObject[] = [{ configs: { secret: { gitlabSecret: "s3cr3t-in-config" } } }, { configs: { repositories: { m: { password: "s3cr3t-in-config" } } } }];
        for (const override of overrides) {
            let message = "";
            try {
                argoCdValues({ ...SPEC, override });
            } catch (err) {
                message = String(err);
            }
            expect(message).toMatch(/to \(value not shown\); allowed: any chart value except configs\.(secret|repositories)/);
            expect(message).not.toContain("s3cr3t");
        }
    });
});

describe("single sign-on and the break-glass group", () => {
    it("GitLab through Dex: a gitlab connector whose secret is a reference into argocd-secret, never the value", () => {
        const v = argoCdValues(SPEC) as any;
        expect(v.dex.enabled).toBe(true);
        const dex = parseYaml(v.configs.cm["dex.config"]);
        expect(dex).toEqual({
            connectors: [
                {
                    type: "gitlab",
                    id: "gitlab",
                    name: "GitLab",
                    config: { baseURL: "https://gitlab.example.com", clientID: "argocd-osl", clientSecret: "$dex.gitlab.clientSecret", useLoginAsID: false },
                },
            ],
        });
        expect(v.configs.cm["oidc.config"]).toBeUndefined();
        expect(v.configs.rbac).toMatchObject({ "policy.default": "role:readonly", "policy.csv": "g, platform/argocd-breakglass, role:admin\n", scopes: "[groups]" });
        expect(SSO_SECRET_KEYS.gitlab).toBe("dex.gitlab.clientSecret");
    });

    it("a generic OIDC issuer: Argo CD's own client, the groups claim requested and mapped", () => {
        const v = argoCdValues({ ...SPEC, sso: { provider: "oidc", issuer: "https://id.example.eu/realms/ops", clientId: "argocd", groupsClaim: "roles" } }) as any;
        expect(v.dex.enabled).toBe(false);
        expect(parseYaml(v.configs.cm["oidc.config"])).toEqual({
            name: "SSO",
            issuer: "https://id.example.eu/realms/ops",
            clientID: "argocd",
            clientSecret: "$oidc.clientSecret",
            requestedScopes: ["openid", "profile", "email", "roles"],
            requestedIDTokenClaims: { roles: { essential: true } },
        });
        expect(v.configs.rbac.scopes).toBe("[roles]");
    });

    it("without SSO: no one logs in (admin off, no connector), and a break-glass group is refused", () => {
        const noSso: ArgoCdValuesSpec = { ...SPEC, sso: undefined, breakGlassGroup: undefined };
        const v = argoCdValues(noSso) as any;
        expect(v.dex.enabled).toBe(false);
        expect(v.configs.cm["dex.config"]).toBeUndefined();
        expect(v.configs.rbac["policy.csv"]).toBe("\n");
        expect(() => argoCdValues({ ...noSso, breakGlassGroup: "platform/argocd-breakglass" })).toThrow(
            'ArgoCd: breakGlassGroup is "platform/argocd-breakglass" but no sso is configured; allowed: a break-glass group only with sso (no one could log in as it otherwise)',
        );
    });

    it.each([
        ["dex.config", { configs: { cm: { "dex.config": "connectors: []" } } }],
        ["oidc.config", { configs: { cm: { "oidc.config": "issuer: https://evil.example.com" } } }],
        ["dex.enabled", { dex: { enabled: false } }],
    ])("an override cannot change who logs in: %s", (_key, override) => {
        expect(() => argoCdValues({ ...SPEC, override })).toThrow(/allowed: any chart value except/);
    });

    it("refuses an http issuer and sso without its client secret", () => {
        expect(() => argoCdValues({ ...SPEC, sso: { ...SSO, issuer: "http://gitlab.example.com" } })).toThrow(/sso.issuer is "http:\/\/gitlab.example.com"; allowed: an https:\/\/ URL/);
        expect(() => planArgoCd({ ...ARGS, ssoClientSecret: undefined })).toThrow("ArgoCd: sso and ssoClientSecret go together; allowed: both (single sign-on) or neither");
    });
});

describe("where the chart comes from", () => {
    it.each<[string, ArgoCdChartSource | undefined, Record<string, unknown>]>([
        ["the public argo-helm repository by default", undefined, { chart: "argo-cd", version: "10.1.1", repositoryOpts: { repo: "https://argoproj.github.io/argo-helm" } }],
        ["an HTTPS mirror", { repo: "https://charts.example.eu/argo/" }, { chart: "argo-cd", version: "10.1.1", repositoryOpts: { repo: "https://charts.example.eu/argo" } }],
        ["an OCI registry", { repo: "oci://registry.example.eu/charts" }, { chart: "oci://registry.example.eu/charts/argo-cd", version: "10.1.1" }],
        ["a local tarball", { path: "/srv/charts/argo-cd-10.1.1.tgz" }, { chart: "/srv/charts/argo-cd-10.1.1.tgz", version: "10.1.1" }],
    ])("%s", (_name, source, inputs) => {
        expect(argoCdChartInputs(source)).toEqual(inputs);
    });

    it.each<[ArgoCdChartSource, RegExp]>([
        [{ repo: "http://charts.example.eu" }, /chartSource.repo is "http:\/\/charts.example.eu"; allowed: an https:\/\/ Helm repository or an oci:\/\/ registry path/],
        [{ path: "relative/argo-cd.tgz" }, /chartSource.path is "relative\/argo-cd.tgz"; allowed: an absolute path/],
        [{ path: "/srv/../etc/argo-cd.tgz" }, /chartSource.path/],
    ])("refuses %j", (source, message) => {
        expect(() => argoCdChartInputs(source)).toThrow(message);
    });
});

const ARGS: ArgoCdArgs = {
    hostname: "argocd.example.com",
    webhookHostname: "hooks.example.com",
    vpnCidr: "10.8.0.0/24",
    sso: SSO,
    ssoClientSecret: SSO_SECRET,
    breakGlassGroup: "platform/argocd-breakglass",
    nodeCount: 3,
    gitlabWebhookSecret: WEBHOOK_SECRET,
    repository: { url: REPO, username: "gitlab+deploy-token-12", password: DEPLOY_TOKEN },
};

describe("planArgoCd refusals", () => {
    it.each<[string, Partial<ArgoCdArgs> | ((a: any) => void), RegExp]>([
        ["a hostname with a scheme", { hostname: "https://argocd.example.com" }, /hostname is "https:\/\/argocd.example.com"; allowed: a lowercase DNS name/],
        ["one host for UI and webhook", { webhookHostname: "argocd.example.com" }, /webhookHostname is "argocd.example.com"; allowed: a hostname other than hostname/],
        ["a VPN CIDR with host bits", { vpnCidr: "10.8.0.1/24" }, /vpnCidr is "10.8.0.1\/24" \(host bits are set; the network is 10.8.0.0\/24\)/],
        ["a VPN CIDR that is everyone", { vpnCidr: "0.0.0.0/0" }, /vpnCidr is "0.0.0.0\/0"; allowed: a CIDR narrower than \/0/],
        ["a group with a comma", { breakGlassGroup: "a,b" }, /breakGlassGroup is "a,b"; allowed: an SSO group name/],
        ["a negative reconciliation", { reconciliationSeconds: -1 }, /reconciliationSeconds is -1; allowed: a whole number of seconds from 30 to 3600/],
        ["no nodes", { nodeCount: 0 }, /nodeCount is 0; allowed: a whole number of nodes, 1 or more/],
        ["a bad namespace", { namespace: "Argo" }, /ArgoCd: namespace is "Argo"; allowed: a DNS label/],
        ["a policy line that is not one", { extraPolicyLines: ["role:admin"] }, /extraPolicyLines entry is "role:admin"/],
        ["an ssh repository", (a) => (a.repository = { ...a.repository, url: "git@gitlab.example.com:platform/manifests.git" }), /repository\.url is "git@gitlab/],
    ])("refuses %s", (_name, change, message) => {
        const args: any = { ...ARGS, repository: { ...ARGS.repository } };
        if (typeof change === "function") {
            change(args);
        } else {
            Object.assign(args, change);
        }
        expect(() => planArgoCd(args)).toThrow(message);
    });

    it("refuses a short webhook secret without showing it", () => {
        expect(() => planArgoCd({ ...ARGS, gitlabWebhookSecret: "short-SECRET" })).toThrow(/gitlabWebhookSecret is too short \(value not shown\)/);
        expect(() => planArgoCd({ ...ARGS, gitlabWebhookSecret: "short-SECRET" })).not.toThrow(/short-SECRET/);
    });
});

// --- component under mocks --------------------------------------------------------------------

interface Run {
    recorder: Recorder;
    argocd: InstanceType<Mod["ArgoCd"]>;
    /** Provider reference per resource name, as registered. */
    providers: Map<string, string>;
}

async function runComponent(args: (pulumi: typeof import("@pulumi/pulumi")) => ArgoCdArgs, withApps = false): Promise<Run> {
    let out: Run | undefined;
    await jest.isolateModulesAsync(async () => {
        const mocks = await import("./support/mocks");
        const recorder = await mocks.installMocks({});
        const pulumi = await import("@pulumi/pulumi");
        const monitor = pulumi.runtime.getMonitor() as any;
        const register = monitor.registerResource.bind(monitor);
        const providers = new Map<string, string>();
        monitor.registerResource = (req: any, callback: any) => {
            providers.set(req.getName(), req.getProvider());
            return register(req, callback);
        };
        const k8s = await import("@pulumi/kubernetes");
        const mod: Mod = await import("../components/gitops/argocd");
        const provider = new k8s.Provider("cluster", { kubeconfig: "kind: Config" });
        const argocd = new mod.ArgoCd("argocd", args(pulumi), { providers: [provider] });
        const waits = [argocd.url, argocd.webhookUrl, argocd.namespace, argocd.chart.urn, argocd.repositorySecret.urn];
        if (withApps) {
            const apps: AppsMod = await import("../components/gitops/applications");
            const gitops = new apps.Applications(
                "gitops",
                {
                    repoUrl: REPO,
                    projects: { prod: { namespaces: ["backend"] } },
                    applications: [{ name: "backend-service-prod", project: "prod", path: "apps/backend-service", namespace: "backend", valueFiles: ["values-prod.yaml"] }],
                    chart: argocd.chart,
                    dependsOn: [argocd.repositorySecret],
                },
                { providers: [provider] },
            );
            waits.push(...Object.values(gitops.applications).map((a) => a.urn));
        }
        await resolve(pulumi.all(waits));
        await mocks.settle();
        out = { recorder, argocd, providers };
    });
    return out!;
}

describe("ArgoCd under mocks", () => {
    let run: Run;

    beforeAll(async () => {
        run = await runComponent((pulumi) => ({ ...ARGS, gitlabWebhookSecret: pulumi.secret(WEBHOOK_SECRET), repository: { ...ARGS.repository, password: pulumi.secret(DEPLOY_TOKEN) } }), true);
    });

    it("registers under its token: namespace, Redis' password and Secret, chart, repository Secret, two middlewares, two ingresses, all on the provider", () => {
        const { recorder, providers } = run;
        expect(recorder.ofType("zerotouch:gitops:ArgoCd").map((r) => r.name)).toEqual(["argocd"]);
        const component = recorder.byName("argocd").urn;
        const children = recorder.resources.filter((r) => r.parentUrn === component);
        expect(children.map((c) => c.name).sort()).toEqual(
            [
                "argocd-chart",
                "argocd-namespace",
                "argocd-redis",
                "argocd-redis-password",
                "argocd-repository",
                "argocd-ui",
                "argocd-ui-allowlist",
                "argocd-webhook",
                "argocd-webhook-ratelimit",
                "argocd-webhook-secret",
            ].sort(),
        );
        const cluster = recorder.byName("cluster").urn;
        for (const c of children.filter((c) => c.type.startsWith("kubernetes:"))) {
            expect([c.name, providers.get(c.name)]).toEqual([c.name, `${cluster}::cluster-id`]);
        }
        expect(recorder.byName("argocd-redis-password").type).toBe("random:index/randomPassword:RandomPassword");
    });

    it("makes Redis' password Secret before the chart, its value secret on the wire", () => {
        // (Its value, secret on the wire, is checked with the random provider's state in gitops.test.ts.)
        const secret = run.recorder.byName("argocd-redis");
        expect(secret.inputs.metadata).toMatchObject({ name: "argocd-redis", namespace: "argocd" });
        expect(run.recorder.dependsOn("argocd-redis", "argocd-redis-password")).toBe(true);
        expect(run.recorder.dependsOn("argocd-chart", "argocd-redis")).toBe(true);
    });

    it("passes the chart through the residency post-renderer", () => {
        expect(run.recorder.byName("argocd-chart").inputs.postRenderer).toEqual({ command: "node", args: [POST_RENDER_SCRIPT, "DATA_RESIDENCY_MODE=strict_eea"] });
    });

    it("installs the pinned chart from argo-helm into the namespace, after the namespace", () => {
        const chart = run.recorder.byName("argocd-chart");
        expect(chart.type).toBe(CHART);
        expect(chart.inputs).toMatchObject({
            chart: "argo-cd",
            version: "10.1.1",
            repositoryOpts: { repo: "https://argoproj.github.io/argo-helm" },
            namespace: "argocd",
            name: "argocd",
        });
        expect(run.recorder.byName("argocd-namespace").inputs.metadata.name).toBe("argocd");
        expect(run.recorder.dependsOn("argocd-chart", "argocd-namespace")).toBe(true);
    });

    it("passes values carrying every requirement, known and secret-free; the webhook secret goes into argocd-secret by a secret patch", () => {
        const chart = run.recorder.byName("argocd-chart");
        expect(wireSecret(chart.wire, ["values"])).toBe(false);
        const v = chart.inputs.values;
        expect(v.configs.secret).toEqual({ createSecret: true });
        expect(JSON.stringify(v)).not.toContain(WEBHOOK_SECRET);
        const patch = run.recorder.byName("argocd-webhook-secret");
        expect(patch.type).toBe("kubernetes:core/v1:SecretPatch");
        expect(patch.inputs.metadata).toMatchObject({ name: "argocd-secret", namespace: "argocd" });
        expect(patch.inputs.stringData["webhook.gitlab.secret"]).toBe(WEBHOOK_SECRET);
        expect(wireSecret(patch.wire, ["stringData", "webhook.gitlab.secret"])).toBe(true);
        expect(run.recorder.dependsOn("argocd-webhook-secret", "argocd-chart")).toBe(true);
        expect(v.configs.cm["admin.enabled"]).toBe("false");
        expect(v.configs.cm["timeout.reconciliation"]).toBe("180s");
        expect(v.configs.params["server.insecure"]).toBe("true");
        expect(v.configs.rbac["policy.default"]).toBe("role:readonly");
        expect(v.configs.rbac["policy.csv"]).toContain("g, platform/argocd-breakglass, role:admin");
        expect(v.repoServer.replicas).toBe(2);
        expect(v.controller.replicas).toBe(1);
        expect(v).toEqual(argoCdValues(SPEC));
    });

    it("creates the repository Secret with Argo CD's label, the deploy token secret on the wire", () => {
        const s = run.recorder.byName("argocd-repository");
        expect(s.type).toBe(SECRET);
        expect(s.inputs.metadata.labels["argocd.argoproj.io/secret-type"]).toBe("repository");
        expect(s.inputs.metadata.namespace).toBe("argocd");
        expect(s.inputs.stringData).toEqual({ type: "git", url: REPO, username: "gitlab+deploy-token-12", password: DEPLOY_TOKEN });
        expect(wireSecret(s.wire, ["stringData", "password"])).toBe(true);
    });

    it("never carries the webhook secret or the deploy token outside secret-wrapped values", () => {
        for (const r of run.recorder.resources) {
            const wire = JSON.stringify(r.wire, (_k, v) => (v && typeof v === "object" && v["4dabf18193072939515e22adb298388d"] ? "[secret]" : v));
            expect([r.name, wire.includes(WEBHOOK_SECRET) || wire.includes(DEPLOY_TOKEN)]).toEqual([r.name, false]);
        }
    });

    it("lets the UI/API be reached only from the VPN CIDR", () => {
        const { recorder } = run;
        const allow = recorder.byName("argocd-ui-allowlist");
        expect(allow.type).toBe(MIDDLEWARE);
        expect(allow.inputs.apiVersion).toBe("traefik.io/v1alpha1");
        expect(allow.inputs.metadata).toEqual({ name: "argocd-ui-vpn-only", namespace: "argocd" });
        expect(allow.inputs.spec).toEqual({ ipAllowList: { sourceRange: ["10.8.0.0/24"] } });
        const ui = recorder.byName("argocd-ui");
        expect(ui.type).toBe(INGRESS);
        expect(ui.inputs.metadata.annotations).toEqual({
            "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
            "traefik.ingress.kubernetes.io/router.tls": "true",
            "traefik.ingress.kubernetes.io/router.middlewares": "argocd-argocd-ui-vpn-only@kubernetescrd",
        });
        expect(ui.inputs.spec.rules).toEqual([
            { host: "argocd.example.com", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "argocd-server", port: { number: 80 } } } }] } },
        ]);
        expect(recorder.dependsOn("argocd-ui", "argocd-ui-allowlist")).toBe(true);
    });

    it("makes only /api/webhook public, on the webhook hostname, on 443", () => {
        const { recorder } = run;
        const hook = recorder.byName("argocd-webhook");
        expect(hook.inputs.spec.rules).toEqual([
            { host: "hooks.example.com", http: { paths: [{ path: "/api/webhook", pathType: "Exact", backend: { service: { name: "argocd-server", port: { number: 80 } } } }] } },
        ]);
        expect(hook.inputs.metadata.annotations["traefik.ingress.kubernetes.io/router.entrypoints"]).toBe("websecure");
        expect(hook.inputs.metadata.annotations["traefik.ingress.kubernetes.io/router.middlewares"]).toBe("argocd-argocd-webhook-ratelimit@kubernetescrd");
        // Every route: one of these two, the UI one behind the allow-list.
        const ingresses = recorder.ofType(INGRESS);
        expect(ingresses.map((i) => i.name).sort()).toEqual(["argocd-ui", "argocd-webhook"]);
        const publicPaths = ingresses
            .filter((i) => !String(i.inputs.metadata.annotations["traefik.ingress.kubernetes.io/router.middlewares"]).includes("vpn-only"))
            .flatMap((i) => i.inputs.spec.rules.flatMap((rule: any) => rule.http.paths.map((p: any) => `${rule.host}${p.path} ${p.pathType}`)));
        expect(publicPaths).toEqual(["hooks.example.com/api/webhook Exact"]);
    });

    it("exposes url, webhookUrl, namespace and the chart", async () => {
        expect(await resolve(run.argocd.url)).toBe("https://argocd.example.com");
        expect(await resolve(run.argocd.webhookUrl)).toBe("https://hooks.example.com/api/webhook");
        expect(await resolve(run.argocd.namespace)).toBe("argocd");
        expect(await isSecret(run.argocd.url)).toBe(false);
        expect(run.argocd.chart.urn).toBeDefined();
    });

    it("makes Applications and AppProjects wait for the chart (its CRDs)", () => {
        const { recorder } = run;
        expect(recorder.dependsOn("gitops-project-prod", "argocd-chart")).toBe(true);
        expect(recorder.dependsOn("gitops-app-backend-service-prod", "argocd-chart")).toBe(true);
        expect(recorder.dependsOn("gitops-app-backend-service-prod", "argocd-repository")).toBe(true);
    });
});

/** Builds the component under fresh mocks; returns its error after checking nothing was registered. */
function refusedBeforeRegistering(build: (mod: Mod, provider: unknown) => void): Promise<string> {
    return refusedWithoutResources(() => import("../components/gitops/argocd"), (mod) => build(mod, undefined));
}

describe("ArgoCd, invalid args", () => {
    it("refuses an override that re-enables admin before registering anything", async () => {
        const error = await refusedBeforeRegistering((mod) => {
            new mod.ArgoCd("argocd", { ...ARGS, values: { configs: { cm: { "admin.enabled": "true" } } } });
        });
        expect(error).toMatch(/values override sets configs\.cm\."admin\.enabled" to "true"/);
    });

    it("refuses to run without a kubernetes provider", async () => {
        const error = await refusedBeforeRegistering((mod) => {
            new mod.ArgoCd("argocd", ARGS);
        });
        expect(error).toMatch(/opts\.providers has no kubernetes provider/);
    });
});
