/**
 * The GitLab bindings checked against the real provider schema (v10.1.1), and the GitLab wiring
 * under mocks: types and tokens, the provider and plugin version on every GitLab resource and
 * invoke, token scopes and rotation, GITOPS_TOKEN per application project, the webhook, branch
 * protection, adopt mode, validation, and secrecy on the wire and in the outputs.
 */
import { readFileSync } from "fs";
import type * as pulumiType from "@pulumi/pulumi";

import {
    GITLAB_FUNCTIONS,
    GITLAB_PROVIDER_VERSION,
    GITLAB_RESOURCES,
    PROJECT_HOOK_EVENTS,
    PROVIDER_CONFIG,
    PROVIDER_SECRET_CONFIG,
    ROTATION_CONFIGURATION,
    ROTATION_CONFIGURATION_TYPE,
} from "../components/gitops/gitlab/provider";
import type { GitLabWiringArgs } from "../components/gitops/gitlabWiring";
import { planGitLabWiring } from "../components/gitops/gitlabWiring";
import type { Recorder } from "./support/mocks";
import { isSecret, resolve, wireSecret, withoutSecrets } from "./support/mocks";
import { referenceFile } from "./support/reference";

const SCHEMA_FILE = referenceFile("pulumi-gitlab-schema-subset.json");

interface SchemaProperty {
    readonly secret?: boolean;
}
interface Schema {
    providerConfig: Record<string, SchemaProperty>;
    resources: Record<string, { inputProperties: Record<string, SchemaProperty>; properties: Record<string, SchemaProperty>; requiredInputs: string[] }>;
    functions: Record<string, { inputs: Record<string, SchemaProperty>; outputs: Record<string, SchemaProperty> }>;
    types: Record<string, { properties: Record<string, SchemaProperty>; required: string[] }>;
}
const SCHEMA = JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as Schema;

const T = {
    component: "zerotouch:gitops:GitLabWiring",
    provider: "pulumi:providers:gitlab",
    project: "gitlab:index/project:Project",
    branch: "gitlab:index/branchProtection:BranchProtection",
    deployToken: "gitlab:index/projectDeployToken:ProjectDeployToken",
    accessToken: "gitlab:index/projectAccessToken:ProjectAccessToken",
    variable: "gitlab:index/projectVariable:ProjectVariable",
    hook: "gitlab:index/projectHook:ProjectHook",
    getProject: "gitlab:index/getProject:getProject",
    getGroup: "gitlab:index/getGroup:getGroup",
};

/** Every test secret carries this marker, to find it wherever it must not be in clear. */
const MARK = "SECRET";
const PROVIDER_TOKEN = `glpat-provider-${MARK}-0123456789`;
const WEBHOOK_SECRET = `webhook-${MARK}-0123456789abcdef`;
const APPS = ["apps/shop", "apps/billing/api"];
const GROUPS: Record<number, string> = { 42: "platform/gitops" };
/** Base date of the mocked provider's expiry computation. */
const MOCK_TODAY = Date.UTC(2026, 0, 1);

/** What the GitLab provider would compute, for resources under mocks. */
function gitlabState(type: string, name: string, inputs: Record<string, any>): Record<string, any> | undefined {
    switch (type) {
        case T.project: {
            const full = `${GROUPS[inputs.namespaceId as number] ?? "user"}/${String(inputs.path)}`;
            return { pathWithNamespace: full, httpUrlToRepo: `https://gitlab.example.com/${full}.git`, webUrl: `https://gitlab.example.com/${full}` };
        }
        case T.deployToken:
            return { token: `gldt-${MARK}-${name}`, username: "gitlab+deploy-token-7", expired: false, revoked: false };
        case T.accessToken: {
            const days = Number(inputs.rotationConfiguration?.expirationDays);
            return { token: `glpat-${MARK}-${name}`, expiresAt: new Date(MOCK_TODAY + days * 86400000).toISOString().slice(0, 10), active: true, userId: 99 };
        }
        case T.hook:
            return { hookId: 1234, projectId: 4711 };
        default:
            return undefined;
    }
}

/** What the provider's functions would return. */
function gitlabCall(token: string, inputs: Record<string, any>): Record<string, any> {
    switch (token) {
        case T.getProject:
            return {
                id: "4711",
                pathWithNamespace: inputs.pathWithNamespace,
                httpUrlToRepo: `https://gitlab.example.com/${String(inputs.pathWithNamespace)}.git`,
                defaultBranch: "trunk",
                namespaceId: 42,
                webUrl: `https://gitlab.example.com/${String(inputs.pathWithNamespace)}`,
            };
        case T.getGroup:
            return { groupId: 42, fullPath: inputs.fullPath };
        default:
            throw new Error(`unexpected invoke ${token}`);
    }
}

/** Resource options as the engine received them. */
interface Options {
    readonly provider: string;
    readonly version: string;
    readonly additionalSecretOutputs: string[];
    readonly retainOnDelete: boolean;
}
interface Invoked {
    readonly token: string;
    readonly inputs: Record<string, any>;
    readonly provider: string;
    readonly version: string;
}

type Wiring = InstanceType<typeof import("../components/gitops/gitlabWiring").GitLabWiring>;

interface Built {
    readonly recorder: Recorder;
    readonly wiring: Wiring;
    readonly options: Map<string, Options>;
    readonly invokes: Invoked[];
    /** The provider reference children carry: `<urn>::<id>`. */
    readonly providerRef: string;
    readonly pulumi: typeof pulumiType;
}

/** Installs the mocks (with option and invoke capture) inside an isolated module registry. */
async function harness(): Promise<{ recorder: Recorder; options: Map<string, Options>; invokes: Invoked[]; pulumi: typeof pulumiType }> {
    const mocks = await import("./support/mocks");
    const recorder = await mocks.installMocks({ stateFor: gitlabState });
    const pulumi = await import("@pulumi/pulumi");
    const monitor = pulumi.runtime.getMonitor() as any;
    const options = new Map<string, Options>();
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: any) => {
        options.set(req.getName(), {
            provider: req.getProvider(),
            version: req.getVersion(),
            additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
            retainOnDelete: req.getRetainondelete(),
        });
        return register(req, callback);
    };
    const invokes: Invoked[] = [];
    const invoke = monitor.invoke.bind(monitor);
    monitor.invoke = (req: any, callback: any) => {
        invokes.push({ token: req.getTok(), inputs: req.getArgs()?.toJavaScript() ?? {}, provider: req.getProvider(), version: req.getVersion() });
        return invoke(req, callback);
    };
    monitor.mocks = { ...monitor.mocks, call: (a: { token: string; inputs: Record<string, any> }) => gitlabCall(a.token, a.inputs) };
    return { recorder, options, invokes, pulumi };
}

type ArgsMaker = (provider: InstanceType<typeof import("../components/gitops/gitlab/provider").Provider>, pulumi: typeof pulumiType) => GitLabWiringArgs;

function createArgs(apps: readonly string[] = APPS): ArgsMaker {
    return (provider, pulumi) => ({
        provider,
        manifestsProject: { path: "platform/gitops/manifests", mode: "create", namespaceId: 42 },
        appProjects: apps,
        webhookUrl: "https://argocd.example.com/api/webhook",
        webhookSecret: pulumi.secret(WEBHOOK_SECRET),
    });
}

/** Builds a GitLabWiring (and its provider) under fresh mocks and waits until everything settled. */
async function build(make: ArgsMaker, name = "gitops"): Promise<Built> {
    let built!: Built;
    await jest.isolateModulesAsync(async () => {
        const { recorder, options, invokes, pulumi } = await harness();
        const gitlab = await import("../components/gitops/gitlab/provider");
        const { GitLabWiring } = await import("../components/gitops/gitlabWiring");
        const provider = new gitlab.Provider("gitlab", { baseUrl: "https://gitlab.example.com/api/v4/", token: PROVIDER_TOKEN, retries: 3 });
        const wiring = new GitLabWiring(name, make(provider, pulumi));
        await resolve(
            pulumi.all([
                wiring.urn,
                wiring.manifestsRepoUrl,
                wiring.manifestsProjectId,
                wiring.manifestsBranch,
                wiring.deployTokenUsername,
                wiring.deployToken,
                wiring.accessTokenExpiresAt,
                wiring.hookId,
            ]),
        );
        const providerRef = `${await resolve(provider.urn)}::${await resolve(provider.id)}`;
        const { settle } = await import("./support/mocks");
        await settle();
        built = { recorder, wiring, options, invokes, providerRef, pulumi };
    });
    return built;
}

/** Runs `construct` under fresh mocks; returns the error it threw and what got registered. */
async function refused(args: (pulumi: typeof pulumiType) => unknown): Promise<{ error: string; registered: string[] }> {
    let error = "";
    let recorder: Recorder | undefined;
    await jest
        .isolateModulesAsync(async () => {
            const h = await harness();
            recorder = h.recorder;
            const gitlab = await import("../components/gitops/gitlab/provider");
            const { GitLabWiring } = await import("../components/gitops/gitlabWiring");
            const provider = new gitlab.Provider("gitlab", { token: PROVIDER_TOKEN });
            const made = { provider, ...(args(h.pulumi) as object) } as GitLabWiringArgs;
            new GitLabWiring("bad", made);
        })
        .catch((err: unknown) => {
            error = String(err);
        });
    await new Promise((r) => setTimeout(r, 50));
    return { error, registered: (recorder?.resources ?? []).map((r) => r.type).filter((t) => t !== T.provider) };
}

/** The wire form with every secret replaced by a placeholder: what would be readable in clear. */
function clearText(wire: unknown): string {
    return JSON.stringify(withoutSecrets(wire));
}

// --- bindings against the schema -------------------------------------------------------------

describe("GitLab bindings against the provider schema", () => {
    test("the schema file is the v10.1.1 subset with the provider's token", () => {
        expect(GITLAB_PROVIDER_VERSION).toBe("10.1.1");
        expect(readFileSync(SCHEMA_FILE, "utf8")).toContain("pulumi:providers:gitlab");
    });

    test.each(Object.entries(GITLAB_RESOURCES))("%s: token, inputs, required inputs, outputs and secrets are the schema's", (_cls, b) => {
        const r = SCHEMA.resources[b.token];
        expect([b.token, r === undefined]).toEqual([b.token, false]);
        const unknownInputs = Object.keys(b.inputs).filter((k) => !(k in r.inputProperties));
        expect(unknownInputs).toEqual([]);
        const required = Object.entries(b.inputs)
            .filter(([, v]) => v === "required")
            .map(([k]) => k)
            .sort();
        expect(required).toEqual([...r.requiredInputs].sort());
        const unknownOutputs = b.outputs.filter((k) => !(k in r.properties));
        expect(unknownOutputs).toEqual([]);
        const secret = Object.entries({ ...r.inputProperties, ...r.properties })
            .filter(([, p]) => p.secret === true)
            .map(([k]) => k)
            .sort();
        expect([...b.secretOutputs].sort()).toEqual(secret);
    });

    test("the rotation configuration's properties and required ones are the schema type's", () => {
        const t = SCHEMA.types[ROTATION_CONFIGURATION_TYPE];
        expect(Object.keys(ROTATION_CONFIGURATION).sort()).toEqual(Object.keys(t.properties).sort());
        const required = Object.entries(ROTATION_CONFIGURATION)
            .filter(([, v]) => v === "required")
            .map(([k]) => k);
        expect(required.sort()).toEqual([...t.required].sort());
    });

    test("provider config keys and secret config are the schema's", () => {
        expect(Object.keys(PROVIDER_CONFIG).sort()).toEqual(Object.keys(SCHEMA.providerConfig).sort());
        const secret = Object.entries(SCHEMA.providerConfig)
            .filter(([, p]) => p.secret === true)
            .map(([k]) => k);
        expect([...PROVIDER_SECRET_CONFIG].sort()).toEqual(secret.sort());
    });

    test.each(Object.entries(GITLAB_FUNCTIONS))("%s: token, arguments and result fields are the schema's", (_fn, f) => {
        const s = SCHEMA.functions[f.token];
        expect([f.token, s === undefined]).toEqual([f.token, false]);
        expect(f.inputs.filter((k) => !(k in s.inputs))).toEqual([]);
        expect(f.outputs.filter((k) => !(k in s.outputs))).toEqual([]);
    });
});

// --- plan ------------------------------------------------------------------------------------

describe("planGitLabWiring", () => {
    /** The plan never looks at the provider. */
    const noProvider = undefined as unknown as GitLabWiringArgs["provider"];
    const base = (over: Partial<GitLabWiringArgs> = {}, project: Partial<GitLabWiringArgs["manifestsProject"]> = {}): GitLabWiringArgs => ({
        provider: noProvider,
        manifestsProject: { path: "platform/gitops/manifests", mode: "create", ...project },
        appProjects: APPS,
        webhookUrl: "https://argocd.example.com/api/webhook",
        webhookSecret: WEBHOOK_SECRET,
        ...over,
    });

    test("defaults: branch main when creating, tokens live 180 days and rotate 30 days before expiry", () => {
        const plan = planGitLabWiring("w", base());
        expect(plan).toEqual({
            mode: "create",
            path: "platform/gitops/manifests",
            namespacePath: "platform/gitops",
            projectPath: "manifests",
            namespaceId: undefined,
            defaultBranch: "main",
            appProjects: APPS,
            accessTokenExpiryDays: 180,
            rotateBeforeDays: 30,
        });
    });

    test("adopting without a branch leaves it to the project's own default branch", () => {
        expect(planGitLabWiring("w", base({}, { mode: "adopt" })).defaultBranch).toBeUndefined();
        expect(planGitLabWiring("w", base({}, { mode: "adopt", defaultBranch: "release/prod" })).defaultBranch).toBe("release/prod");
    });

    test("the limits themselves pass: 365 days, rotation one day before expiry", () => {
        const plan = planGitLabWiring("w", base({ accessTokenExpiryDays: 365, rotateBeforeDays: 364, appProjects: [] }));
        expect([plan.accessTokenExpiryDays, plan.rotateBeforeDays, plan.appProjects]).toEqual([365, 364, []]);
    });

    test.each([
        ["a path without group", base({}, { path: "manifests" }), /manifestsProject.path is "manifests" \(it has no group\); allowed: a full project path/],
        ["a path ending in .git", base({}, { path: "platform/manifests.git" }), /manifestsProject.path is "platform\/manifests.git" \(segment "manifests.git" is not allowed\)/],
        ["an empty path segment", base({}, { path: "platform//manifests" }), /segment "" is not allowed/],
        ["an unknown mode", base({}, { mode: "import" as never }), /manifestsProject.mode is "import"; allowed: "create" or "adopt"/],
        ["a namespaceId when adopting", base({}, { mode: "adopt", namespaceId: 42 }), /manifestsProject.namespaceId is 42 with mode "adopt"; allowed: only with mode "create"/],
        ["a namespaceId of 0", base({}, { namespaceId: 0 }), /manifestsProject.namespaceId is 0; allowed: a group ID/],
        ["a bad branch", base({}, { defaultBranch: "-main" }), /manifestsProject.defaultBranch is "-main"; allowed: a branch name/],
        ["a branch with ..", base({}, { defaultBranch: "a..b" }), /manifestsProject.defaultBranch is "a..b"/],
        ["an expiry over GitLab's 365 days", base({ accessTokenExpiryDays: 366 }), /accessTokenExpiryDays is 366; allowed: a whole number of days from 2 to 365/],
        ["a fractional expiry", base({ accessTokenExpiryDays: 90.5 }), /accessTokenExpiryDays is 90.5; allowed/],
        ["rotation not before expiry", base({ accessTokenExpiryDays: 30 }), /rotateBeforeDays is 30; allowed: a whole number of days from 1 to 29/],
        ["rotation 0 days before", base({ rotateBeforeDays: 0 }), /rotateBeforeDays is 0; allowed: a whole number of days from 1 to 179/],
        ["an app project without group", base({ appProjects: ["apps/shop", "billing"] }), /appProjects\[1\] is "billing" \(it has no group\)/],
        ["an app project twice", base({ appProjects: ["apps/shop", "Apps/Shop"] }), /appProjects\[1\] is "Apps\/Shop", already given as appProjects\[0\]; allowed: each project once/],
        [
            "the manifests project as app project",
            base({ appProjects: ["apps/shop", "Platform/GitOps/Manifests"] }),
            /appProjects\[1\] is "Platform\/GitOps\/Manifests", the manifests project itself/,
        ],
        ["a plain-http webhook", base({ webhookUrl: "http://argocd.example.com/api/webhook" }), /webhookUrl is "http:\/\/argocd.example.com\/api\/webhook"; allowed: an https:\/\/ URL/],
        ["a webhook URL with credentials", base({ webhookUrl: "https://u:p@argocd.example.com/api/webhook" }), /webhookUrl is .*; allowed: an https:\/\/ URL without credentials/],
        ["a webhook URL that is no URL", base({ webhookUrl: "argocd" }), /webhookUrl is "argocd"/],
    ])("refuses %s", (_what, args, message) => {
        expect(() => planGitLabWiring("w", args)).toThrow(message);
    });

    test("a short webhook secret is refused without printing it", () => {
        const secret = `${MARK}x`;
        let message = "";
        try {
            planGitLabWiring("w", base({ webhookSecret: secret }));
        } catch (err) {
            message = String(err);
        }
        expect(message).toMatch(/webhookSecret is 7 characters long; allowed: at least 16 characters/);
        expect(message).not.toContain(MARK);
    });
});

// --- component, create mode ------------------------------------------------------------------

const COMPONENT_CHILDREN = (name: string, apps: readonly string[]) =>
    [
        [T.project, `${name}-manifests`],
        [T.branch, `${name}-manifests-branch`],
        [T.deployToken, `${name}-argocd-deploy-token`],
        [T.accessToken, `${name}-push-token`],
        [T.hook, `${name}-argocd-webhook`],
        ...apps.map((a) => [T.variable, `${name}-gitops-token-${a}`]),
    ].sort();

describe("GitLabWiring, creating the manifests project", () => {
    let b: Built;
    beforeAll(async () => {
        b = await build(createArgs());
    });

    test("registers under its token; children named by role (and app path), all its own", () => {
        const { recorder } = b;
        expect(recorder.byName("gitops").type).toBe(T.component);
        const children = recorder.resources.filter((r) => r.parentUrn.endsWith(`::${T.component}::gitops`));
        expect(children.map((r) => [r.type, r.name]).sort()).toEqual(COMPONENT_CHILDREN("gitops", APPS));
        expect(recorder.resources.map((r) => r.name).sort()).toEqual(["gitlab", "gitops", ...children.map((r) => r.name)].sort());
    });

    test("the provider: pulumi:providers:gitlab, plugin 10.1.1, token secret on the wire, non-string config as JSON", () => {
        const p = b.recorder.byName("gitlab");
        expect(p.type).toBe(T.provider);
        expect(b.options.get("gitlab")?.version).toBe("10.1.1");
        expect(b.options.get("gitlab")?.additionalSecretOutputs).toEqual(["token"]);
        expect(wireSecret(p.wire, ["token"])).toBe(true);
        expect(p.inputs.token).toBe(PROVIDER_TOKEN);
        expect([p.inputs.baseUrl, wireSecret(p.wire, ["baseUrl"])]).toEqual(["https://gitlab.example.com/api/v4/", false]);
        expect(p.inputs.retries).toBe("3");
    });

    test("every GitLab resource uses the caller's provider and plugin version 10.1.1; no invoke when namespaceId is given", () => {
        const gitlab = b.recorder.resources.filter((r) => r.type.startsWith("gitlab:"));
        expect(gitlab).toHaveLength(5 + APPS.length);
        for (const r of gitlab) {
            const o = b.options.get(r.name)!;
            expect([r.name, o.provider, o.version]).toEqual([r.name, b.providerRef, "10.1.1"]);
        }
        expect(b.invokes).toEqual([]);
    });

    test("every input sent to GitLab is a property of the schema's resource", () => {
        for (const r of b.recorder.resources.filter((x) => x.type.startsWith("gitlab:"))) {
            const known = SCHEMA.resources[r.type].inputProperties;
            expect([r.name, Object.keys(r.wire).filter((k) => !(k in known))]).toEqual([r.name, []]);
        }
    });

    test("the project: private, default branch main with a first commit, archived (not deleted) on destroy, in the given group", () => {
        expect(b.recorder.byName("gitops-manifests").inputs).toEqual({
            name: "manifests",
            path: "manifests",
            namespaceId: 42,
            description: expect.any(String),
            visibilityLevel: "private",
            defaultBranch: "main",
            initializeWithReadme: true,
            archiveOnDestroy: true,
        });
        expect(b.options.get("gitops-manifests")?.additionalSecretOutputs.sort()).toEqual(["importUrlPassword", "runnersToken"]);
    });

    test("main is protected: maintainers push and merge, no force push; kept on destroy", () => {
        const r = b.recorder.byName("gitops-manifests-branch");
        expect(r.inputs).toEqual({ project: "gitops-manifests-id", branch: "main", pushAccessLevel: "maintainer", mergeAccessLevel: "maintainer", allowForcePush: false });
        expect(b.recorder.dependsOn("gitops-manifests-branch", "gitops-manifests")).toBe(true);
        expect(b.options.get("gitops-manifests-branch")?.retainOnDelete).toBe(true);
    });

    test("Argo CD's deploy token has exactly read_repository", () => {
        const r = b.recorder.byName("gitops-argocd-deploy-token");
        expect(r.inputs.scopes).toEqual(["read_repository"]);
        expect(r.inputs.project).toBe("gitops-manifests-id");
        expect(r.inputs.expiresAt).toBeUndefined();
        expect(b.options.get(r.name)?.additionalSecretOutputs).toEqual(["token"]);
    });

    test("the push token: write_repository, maintainer, rotated by the provider within 365 days, no moving expiry date", () => {
        const r = b.recorder.byName("gitops-push-token");
        expect(r.inputs.scopes).toEqual(["write_repository"]);
        expect(r.inputs.accessLevel).toBe("maintainer");
        expect(r.inputs.rotationConfiguration).toEqual({ expirationDays: 180, rotateBeforeDays: 30 });
        expect(r.inputs.rotationConfiguration.expirationDays).toBeLessThanOrEqual(365);
        // No date computed from "now": the same inputs on every run.
        expect(r.inputs.expiresAt).toBeUndefined();
        expect(r.inputs.project).toBe("gitops-manifests-id");
        expect(b.options.get(r.name)?.additionalSecretOutputs).toEqual(["token"]);
    });

    test.each(APPS)("GITOPS_TOKEN on %s: the push token, masked, protected, raw, secret on the wire and in state", (app) => {
        const name = `gitops-gitops-token-${app}`;
        const r = b.recorder.byName(name);
        expect(r.inputs).toEqual({
            project: app,
            key: "GITOPS_TOKEN",
            value: `glpat-${MARK}-gitops-push-token`,
            masked: true,
            protected: true,
            raw: true,
            description: expect.not.stringContaining(MARK),
        });
        expect(wireSecret(r.wire, ["value"])).toBe(true);
        expect(b.options.get(name)?.additionalSecretOutputs).toEqual(["value"]);
        expect(b.recorder.dependsOn(name, "gitops-push-token")).toBe(true);
    });

    test("the webhook: Argo CD's URL, push events only, TLS verified, its token secret on the wire", () => {
        const r = b.recorder.byName("gitops-argocd-webhook");
        expect(r.inputs.url).toBe("https://argocd.example.com/api/webhook");
        expect(r.inputs.project).toBe("gitops-manifests-id");
        expect(r.inputs.enableSslVerification).toBe(true);
        expect(r.inputs.pushEvents).toBe(true);
        for (const event of PROJECT_HOOK_EVENTS.filter((e) => e !== "pushEvents")) {
            expect([event, r.inputs[event]]).toEqual([event, false]);
        }
        expect(r.inputs.pushEventsBranchFilter).toBeUndefined();
        expect(r.inputs.token).toBe(WEBHOOK_SECRET);
        expect(wireSecret(r.wire, ["token"])).toBe(true);
        expect(b.options.get(r.name)?.additionalSecretOutputs.sort()).toEqual(["signingToken", "token"]);
    });

    test("no secret travels in clear to any resource", () => {
        for (const r of b.recorder.resources) {
            expect([r.name, clearText(r.wire)]).toEqual([r.name, expect.not.stringContaining(MARK)]);
        }
    });

    test("outputs: the deploy token is secret; URL, IDs, user name and expiry are plain and carry no secret", async () => {
        const w = b.wiring;
        expect(await isSecret(w.deployToken)).toBe(true);
        expect(await resolve(w.deployToken)).toBe(`gldt-${MARK}-gitops-argocd-deploy-token`);
        const plain = {
            manifestsRepoUrl: w.manifestsRepoUrl,
            manifestsProjectId: w.manifestsProjectId,
            manifestsBranch: w.manifestsBranch,
            deployTokenUsername: w.deployTokenUsername,
            accessTokenExpiresAt: w.accessTokenExpiresAt,
            hookId: w.hookId,
        };
        const values: Record<string, unknown> = {};
        for (const [k, o] of Object.entries(plain) as [string, pulumiType.Output<unknown>][]) {
            expect([k, await isSecret(o)]).toEqual([k, false]);
            values[k] = await resolve(o);
        }
        expect(values).toEqual({
            manifestsRepoUrl: "https://gitlab.example.com/platform/gitops/manifests.git",
            manifestsProjectId: "gitops-manifests-id",
            manifestsBranch: "main",
            deployTokenUsername: "gitlab+deploy-token-7",
            accessTokenExpiresAt: "2026-06-30",
            hookId: 1234,
        });
    });

    test("adding an app project adds its variable and changes no other resource", async () => {
        const more = await build(createArgs([...APPS, "apps/new"]));
        for (const before of b.recorder.resources) {
            const after = more.recorder.byName(before.name);
            expect({ name: after.name, type: after.type, inputs: after.inputs }).toEqual({ name: before.name, type: before.type, inputs: before.inputs });
        }
        const added = more.recorder.resources.map((r) => r.name).filter((n) => !b.recorder.resources.some((r) => r.name === n));
        expect(added).toEqual(["gitops-gitops-token-apps/new"]);
    });
});

describe("GitLabWiring, creating in a group found by path", () => {
    test("looks the group up through the provider (getGroup, plugin 10.1.1) and creates the project there; a plain webhook secret is sent as a secret", async () => {
        const b = await build((provider, pulumi) => ({
            ...createArgs()(provider, pulumi),
            manifestsProject: { path: "platform/gitops/manifests", mode: "create", defaultBranch: "production" },
            // A plain secret from the caller is wrapped by the component.
            webhookSecret: WEBHOOK_SECRET,
            accessTokenExpiryDays: 365,
            rotateBeforeDays: 14,
        }));
        expect(b.invokes.map((i) => [i.token, i.inputs, i.provider, i.version])).toEqual([[T.getGroup, { fullPath: "platform/gitops" }, b.providerRef, "10.1.1"]]);
        expect(b.recorder.byName("gitops-manifests").inputs.namespaceId).toBe(42);
        expect(b.recorder.byName("gitops-manifests").inputs.defaultBranch).toBe("production");
        expect(b.recorder.byName("gitops-manifests-branch").inputs.branch).toBe("production");
        expect(b.recorder.byName("gitops-push-token").inputs.rotationConfiguration).toEqual({ expirationDays: 365, rotateBeforeDays: 14 });
        expect(await resolve(b.wiring.accessTokenExpiresAt)).toBe("2027-01-01");
        expect(wireSecret(b.recorder.byName("gitops-argocd-webhook").wire, ["token"])).toBe(true);
        for (const r of b.recorder.resources) {
            expect([r.name, clearText(r.wire)]).toEqual([r.name, expect.not.stringContaining(MARK)]);
        }
    });
});

// --- component, adopt mode -------------------------------------------------------------------

describe("GitLabWiring, adopting an existing manifests project", () => {
    const adopt =
        (defaultBranch?: string): ArgsMaker =>
        (provider, pulumi) => ({
            ...createArgs()(provider, pulumi),
            manifestsProject: { path: "platform/gitops/manifests", mode: "adopt", ...(defaultBranch === undefined ? {} : { defaultBranch }) },
        });

    let b: Built;
    beforeAll(async () => {
        b = await build(adopt());
    });

    test("creates no project: reads it by path through the provider (getProject, plugin 10.1.1)", () => {
        expect(b.recorder.ofType(T.project)).toEqual([]);
        expect(b.invokes.map((i) => [i.token, i.inputs, i.provider, i.version])).toEqual([
            [T.getProject, { pathWithNamespace: "platform/gitops/manifests" }, b.providerRef, "10.1.1"],
        ]);
        const children = b.recorder.resources.filter((r) => r.parentUrn.endsWith(`::${T.component}::gitops`));
        expect(children.map((r) => [r.type, r.name]).sort()).toEqual(COMPONENT_CHILDREN("gitops", APPS).filter(([t]) => t !== T.project));
    });

    test("tokens, protection and hook attach to the adopted project's ID; the project's own default branch is protected", async () => {
        for (const n of ["gitops-manifests-branch", "gitops-argocd-deploy-token", "gitops-push-token", "gitops-argocd-webhook"]) {
            expect([n, b.recorder.byName(n).inputs.project]).toEqual([n, "4711"]);
            expect([n, b.options.get(n)?.provider, b.options.get(n)?.version]).toEqual([n, b.providerRef, "10.1.1"]);
        }
        expect(b.recorder.byName("gitops-manifests-branch").inputs.branch).toBe("trunk");
        expect(await resolve(b.wiring.manifestsRepoUrl)).toBe("https://gitlab.example.com/platform/gitops/manifests.git");
        expect(await resolve(b.wiring.manifestsProjectId)).toBe("4711");
        expect(await resolve(b.wiring.manifestsBranch)).toBe("trunk");
        for (const app of APPS) {
            expect(wireSecret(b.recorder.byName(`gitops-gitops-token-${app}`).wire, ["value"])).toBe(true);
        }
    });

    test("a branch given explicitly wins over the project's default branch", async () => {
        const given = await build(adopt("release"));
        expect(given.recorder.byName("gitops-manifests-branch").inputs.branch).toBe("release");
        expect(given.recorder.ofType(T.project)).toEqual([]);
    });
});

// --- validation in the component -------------------------------------------------------------

describe("GitLabWiring, invalid args", () => {
    const valid = (pulumi: typeof pulumiType) => ({
        manifestsProject: { path: "platform/manifests", mode: "create" },
        appProjects: ["apps/shop"],
        webhookUrl: "https://argocd.example.com/api/webhook",
        webhookSecret: pulumi.secret(WEBHOOK_SECRET),
    });

    test.each([
        ["expiry over 365 days", { accessTokenExpiryDays: 400 }, /GitLab wiring bad: accessTokenExpiryDays is 400; allowed: a whole number of days from 2 to 365/],
        ["an app project twice", { appProjects: ["apps/shop", "apps/shop"] }, /appProjects\[1\] is "apps\/shop", already given as appProjects\[0\]/],
        ["the manifests project as app project", { appProjects: ["platform/manifests"] }, /the manifests project itself/],
        ["a bad manifests path", { manifestsProject: { path: "platform/-x", mode: "create" } }, /manifestsProject.path is "platform\/-x"/],
        ["a plain webhook secret that is too short", { webhookSecret: "short" }, /webhookSecret is 5 characters long/],
    ])("(%s) throws naming what is wrong before registering anything", async (_what, over, message) => {
        const { error, registered } = await refused((pulumi) => ({ ...valid(pulumi), ...over }));
        expect(error).toMatch(message);
        expect(error).not.toContain(MARK);
        expect(registered).toEqual([]);
    });
});

