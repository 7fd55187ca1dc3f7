import { parse as parseYaml } from "yaml";

import type { ApplicationsSpec } from "../components/gitops/applications";
import { appProject, application, IN_CLUSTER, planGitOps } from "../components/gitops/applications";
import type { Recorder } from "./support/mocks";
import { crdValidator, errorsOf } from "./support/crdSchema";

const REPO = "https://gitlab.example.com/platform/manifests.git";
const validateApplication = crdValidator("application-crd.yaml");
const validateProject = crdValidator("appproject-crd.yaml");

/** The seed example, as the Application it must become. */
const SEED = parseYaml(`
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: backend-service-prod, namespace: argocd}
spec:
  project: prod
  source: {repoURL: ${REPO}, targetRevision: main, path: apps/backend-service, helm: {valueFiles: [values-prod.yaml]}}
  destination: {server: https://kubernetes.default.svc, namespace: backend}
  syncPolicy: {automated: {prune: true, selfHeal: true}, syncOptions: [CreateNamespace=true]}
`);

const SPEC: ApplicationsSpec = {
    repoUrl: REPO,
    projects: { prod: { namespaces: ["backend", "frontend"] }, staging: { namespaces: ["backend-staging"] } },
    applications: [
        { name: "backend-service-prod", project: "prod", path: "apps/backend-service", namespace: "backend", valueFiles: ["values-prod.yaml"] },
        { name: "frontend-prod", project: "prod", path: "apps/frontend", namespace: "frontend", targetRevision: "v1.4.2", automated: false },
        { name: "backend-service-staging", project: "staging", path: "apps/backend-service", namespace: "backend-staging", createNamespace: false },
    ],
};

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

describe("Application and AppProject builders", () => {
    it("builds the seed example exactly", () => {
        const app = application("backend-service-prod", {
            project: "prod",
            repoUrl: REPO,
            path: "apps/backend-service",
            namespace: "backend",
            valueFiles: ["values-prod.yaml"],
        });
        expect(app).toEqual(SEED);
    });

    it("restricts a project to the manifests repository and its namespaces in this cluster", () => {
        const p = appProject("prod", { repoUrl: REPO, namespaces: ["backend", "frontend"] });
        expect(p.metadata).toEqual({ name: "prod", namespace: "argocd" });
        expect(p.spec.sourceRepos).toEqual([REPO]);
        expect(p.spec.destinations).toEqual([
            { server: IN_CLUSTER, namespace: "backend" },
            { server: IN_CLUSTER, namespace: "frontend" },
        ]);
        // Cluster-scoped: only its own Namespaces (CreateNamespace), nothing else.
        expect(p.spec.clusterResourceWhitelist).toEqual([
            { group: "", kind: "Namespace", name: "backend" },
            { group: "", kind: "Namespace", name: "frontend" },
        ]);
    });

    it("plans projects and applications in name order, with defaults applied once", () => {
        const plan = planGitOps(SPEC);
        expect(plan.projects.map((p) => p.metadata.name)).toEqual(["prod", "staging"]);
        expect(plan.applications.map((a) => a.metadata.name)).toEqual(["backend-service-prod", "backend-service-staging", "frontend-prod"]);
        const frontend = plan.applications.find((a) => a.metadata.name === "frontend-prod")!;
        expect(frontend.spec.syncPolicy).toEqual({ syncOptions: ["CreateNamespace=true"] });
        expect(frontend.spec.source).toEqual({ repoURL: REPO, targetRevision: "v1.4.2", path: "apps/frontend" });
        const staging = plan.applications.find((a) => a.metadata.name === "backend-service-staging")!;
        expect(staging.spec.syncPolicy).toEqual({ automated: { prune: true, selfHeal: true } });
    });
});

describe("generated objects against the CRD schemas the pinned argo-cd chart installs", () => {
    const plan = planGitOps(SPEC);

    it.each(plan.applications.map((a) => [a.metadata.name, a]))("Application %s validates", (_name, app) => {
        const ok = validateApplication(app);
        expect(errorsOf(validateApplication)).toEqual([]);
        expect(ok).toBe(true);
    });

    it.each(plan.projects.map((p) => [p.metadata.name, p]))("AppProject %s validates", (_name, project) => {
        const ok = validateProject(project);
        expect(errorsOf(validateProject)).toEqual([]);
        expect(ok).toBe(true);
    });

    it.each<[string, (a: any) => void, RegExp]>([
        ["prune as a string", (a) => (a.spec.syncPolicy.automated.prune = "yes"), /\/spec\/syncPolicy\/automated\/prune must be boolean/],
        ["no destination", (a) => delete a.spec.destination, /\/spec must have required property 'destination'/],
        ["no project", (a) => delete a.spec.project, /\/spec must have required property 'project'/],
        ["valueFiles as a string", (a) => (a.spec.source.helm.valueFiles = "values-prod.yaml"), /valueFiles must be array/],
        ["a misspelt field", (a) => (a.spec.syncPolicy.syncOption = a.spec.syncPolicy.syncOptions), /must NOT have additional properties \(syncOption\)/],
        ["no spec", (a) => delete a.spec, /\/ must have required property 'spec'/],
    ])("rejects an Application with %s", (_name, mutate, message) => {
        const app = clone(SEED);
        mutate(app);
        expect(validateApplication(app)).toBe(false);
        expect(errorsOf(validateApplication).join("\n")).toMatch(message);
    });

    it.each<[string, (p: any) => void, RegExp]>([
        ["sourceRepos as a string", (p) => (p.spec.sourceRepos = REPO), /\/spec\/sourceRepos must be array/],
        ["a whitelist entry without kind", (p) => delete p.spec.clusterResourceWhitelist[0].kind, /must have required property 'kind'/],
    ])("rejects an AppProject with %s", (_name, mutate, message) => {
        const p = clone(plan.projects[0]);
        mutate(p);
        expect(validateProject(p)).toBe(false);
        expect(errorsOf(validateProject).join("\n")).toMatch(message);
    });
});

describe("builder validation", () => {
    const base = { project: "prod", repoUrl: REPO, path: "apps/x", namespace: "backend" };
    it.each<[string, () => unknown, RegExp]>([
        ["an upper-case name", () => application("Backend", base), /application "Backend": name is "Backend"; allowed: a DNS label/],
        ["a name longer than 63", () => application("a".repeat(64), base), /name is "a{64}"; allowed: a DNS label/],
        ["an absolute path", () => application("x", { ...base, path: "/etc" }), /application x: path is "\/etc"; allowed: a relative path/],
        ["a path with ..", () => application("x", { ...base, path: "apps/../../secrets" }), /path is "apps\/..\/..\/secrets"; allowed: a relative path/],
        ["a value file outside the path", () => application("x", { ...base, valueFiles: ["../values.yaml"] }), /valueFiles entry is "..\/values.yaml"/],
        ["a value file twice", () => application("x", { ...base, valueFiles: ["v.yaml", "v.yaml"] }), /valueFiles lists "v.yaml" twice/],
        ["a bad namespace", () => application("x", { ...base, namespace: "back_end" }), /namespace is "back_end"; allowed: a DNS label/],
        ["a revision with ..", () => application("x", { ...base, targetRevision: "main..dev" }), /targetRevision is "main..dev"/],
        ["an ssh repo URL", () => application("x", { ...base, repoUrl: "git@gitlab.example.com:p/m.git" }), /repoUrl is "git@gitlab.example.com:p\/m.git"; allowed: an https URL/],
        [
            "a repo URL with credentials, not shown",
            () => application("x", { ...base, repoUrl: "https://u:hunter2@gitlab.example.com/m.git" }),
            /repoUrl is \(a URL with credentials, not shown\)/,
        ],
        ["a project without namespaces", () => appProject("prod", { repoUrl: REPO, namespaces: [] }), /project prod: namespaces is empty/],
        ["a namespace listed twice", () => appProject("prod", { repoUrl: REPO, namespaces: ["a", "a"] }), /namespace "a" is listed twice/],
        ["a project named default", () => appProject("default", { repoUrl: REPO, namespaces: ["a"] }), /name is "default"; allowed: another name/],
    ])("refuses %s", (_name, build, message) => {
        expect(build).toThrow(message);
    });

    it.each<[string, (s: any) => void, RegExp]>([
        ["an unknown project", (s) => (s.applications[0].project = "qa"), /application backend-service-prod: project is "qa"; allowed: a declared project \(prod, staging\)/],
        ["a duplicate application", (s) => s.applications.push(clone(s.applications[1])), /application frontend-prod: name is declared twice/],
        [
            "a namespace outside its project",
            (s) => (s.applications[0].namespace = "backend-staging"),
            /namespace is "backend-staging"; allowed: a namespace of project prod \(backend, frontend\)/,
        ],
    ])("plan refuses %s", (_name, mutate, message) => {
        const spec = clone(SPEC);
        mutate(spec);
        expect(() => planGitOps(spec)).toThrow(message);
    });
});

describe("Applications under mocks", () => {
    it("creates AppProjects and Applications on the provider, each after the chart, Applications after their project", async () => {
        let recorder: Recorder | undefined;
        await jest.isolateModulesAsync(async () => {
            const mocks = await import("./support/mocks");
            recorder = await mocks.installMocks({});
            const k8s = await import("@pulumi/kubernetes");
            const pulumi = await import("@pulumi/pulumi");
            const mod = await import("../components/gitops/applications");
            const provider = new k8s.Provider("cluster", { kubeconfig: "kind: Config" });
            const chart = new k8s.core.v1.ConfigMap("chart-stand-in", { metadata: { name: "x" } }, { provider });
            const apps = new mod.Applications("gitops", { ...SPEC, chart }, { providers: [provider] });
            await mocks.resolve(pulumi.all(Object.values(apps.applications).map((a) => a.urn)));
            await mocks.settle();
        });
        const rec = recorder!;
        const CR_APP = "kubernetes:argoproj.io/v1alpha1:Application";
        const CR_PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject";
        expect(rec.ofType("zerotouch:gitops:Applications").map((r) => r.name)).toEqual(["gitops"]);
        expect(rec.ofType(CR_PROJECT).map((r) => r.name).sort()).toEqual(["gitops-project-prod", "gitops-project-staging"]);
        expect(rec.ofType(CR_APP).map((r) => r.name).sort()).toEqual(["gitops-app-backend-service-prod", "gitops-app-backend-service-staging", "gitops-app-frontend-prod"]);
        for (const r of [...rec.ofType(CR_PROJECT), ...rec.ofType(CR_APP)]) {
            expect([r.name, rec.dependsOn(r.name, "chart-stand-in")]).toEqual([r.name, true]);
            expect(r.parentUrn).toBe(rec.byName("gitops").urn);
        }
        expect(rec.dependsOn("gitops-app-backend-service-prod", "gitops-project-prod")).toBe(true);
        expect(rec.dependsOn("gitops-app-backend-service-staging", "gitops-project-staging")).toBe(true);
        expect(rec.dependsOn("gitops-app-backend-service-staging", "gitops-project-prod")).toBe(false);
        // What reaches the cluster is the seed-shaped Application.
        const seed = rec.byName("gitops-app-backend-service-prod").inputs;
        expect({ apiVersion: seed.apiVersion, kind: seed.kind, metadata: seed.metadata, spec: seed.spec }).toEqual(SEED);
    });

    it("refuses an invalid spec before registering anything", async () => {
        let recorder: Recorder | undefined;
        let error: unknown;
        await jest
            .isolateModulesAsync(async () => {
                const mocks = await import("./support/mocks");
                recorder = await mocks.installMocks({});
                const mod = await import("../components/gitops/applications");
                const spec = clone(SPEC) as any;
                spec.applications[0].path = "../outside";
                new mod.Applications("bad", { ...spec, chart: undefined as any });
            })
            .catch((err: unknown) => {
                error = err;
            });
        await new Promise((r) => setTimeout(r, 50));
        expect(recorder?.resources).toEqual([]);
        expect(String(error)).toMatch(/application backend-service-prod: path is "..\/outside"/);
    });
});
