import * as pulumi from "@pulumi/pulumi";

/**
 * Typed bindings for the official Pulumi GitLab provider plugin (`gitlab`), written from its
 * schema (provider tag v10.1.1): type tokens, input and output property names, secret outputs.
 * The names mirror `@pulumi/gitlab` (`Provider`, `Project`, `getProjectOutput`, …) so this one
 * module can be swapped for that package where it is available.
 *
 * Every resource and invoke carries the `version` option, so the engine loads plugin 10.1.1
 * whatever else is installed; the version is pinned (a caller cannot override it) because the
 * property names below are those of that schema.
 *
 * Only the properties the program uses are bound. Each resource's property table
 * (`GITLAB_RESOURCES`) is checked against the schema by a test, and tied to the Args interface
 * at compile time: a property missing from the table, or marked required when the interface
 * has it optional (or the reverse), does not compile.
 */

/** Plugin version the bindings are written for. */
export const GITLAB_PROVIDER_VERSION = "10.1.1";

/** Per input key: whether the Args interface requires it. Exhaustive over the interface's keys. */
type InputTable<T> = { readonly [K in keyof Required<T>]: object extends Pick<T, K> ? "optional" : "required" };

/** How one resource type is bound: its token, the properties it sends and reads back, its secrets. */
export interface ResourceBinding {
    readonly token: string;
    /** Input properties, each marked as the Args interface has it. */
    readonly inputs: Readonly<Record<string, "optional" | "required">>;
    /** Properties the provider computes that the class exposes besides its inputs. */
    readonly outputs: readonly string[];
    /** Every property the schema marks secret: declared as `additionalSecretOutputs`. */
    readonly secretOutputs: readonly string[];
}

function binding<T>(token: string, inputs: InputTable<T>, outputs: readonly string[], secretOutputs: readonly string[]): ResourceBinding {
    return { token, inputs, outputs, secretOutputs };
}

/** Inputs as the engine wants them: the bound inputs, and every computed output as `undefined` so the class exposes it. */
function resourceInputs(b: ResourceBinding, args: object): pulumi.Inputs {
    const given = args as Record<string, unknown>;
    const props: pulumi.Inputs = {};
    for (const key of Object.keys(b.inputs)) {
        props[key] = given[key];
    }
    for (const key of b.outputs) {
        props[key] = undefined;
    }
    return props;
}

function resourceOptions(b: ResourceBinding, opts: pulumi.CustomResourceOptions | undefined): pulumi.CustomResourceOptions {
    const merged = pulumi.mergeOptions(opts, { additionalSecretOutputs: [...b.secretOutputs] });
    return { ...merged, version: GITLAB_PROVIDER_VERSION };
}

// --- provider --------------------------------------------------------------------------------

/** Provider configuration (the schema's `config` variables). */
export interface ProviderArgs {
    /** GitLab's API endpoint, ending with a slash, e.g. `https://gitlab.example.com/api/v4/`. */
    baseUrl?: pulumi.Input<string>;
    /** Token the provider authenticates with; secret. */
    token?: pulumi.Input<string>;
    /** CA certificate file to verify the GitLab instance with. */
    cacertFile?: pulumi.Input<string>;
    /** Client certificate file (PEM). */
    clientCert?: pulumi.Input<string>;
    /** Client key file (PEM). */
    clientKey?: pulumi.Input<string>;
    /** Configuration file to read. */
    configFile?: pulumi.Input<string>;
    /** Context of the configuration file to use. */
    context?: pulumi.Input<string>;
    /** Whether the provider checks its credentials when it starts. */
    earlyAuthCheck?: pulumi.Input<boolean>;
    /** Automatic CI support (only without a token). */
    enableAutoCiSupport?: pulumi.Input<boolean>;
    /** Headers added to every API request. */
    headers?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** Disables TLS verification of the GitLab instance. */
    insecure?: pulumi.Input<boolean>;
    /** Retries on HTTP 429. */
    retries?: pulumi.Input<number>;
}

/** Provider configuration keys, each marked as `ProviderArgs` has it. */
export const PROVIDER_CONFIG: InputTable<ProviderArgs> = {
    baseUrl: "optional",
    token: "optional",
    cacertFile: "optional",
    clientCert: "optional",
    clientKey: "optional",
    configFile: "optional",
    context: "optional",
    earlyAuthCheck: "optional",
    enableAutoCiSupport: "optional",
    headers: "optional",
    insecure: "optional",
    retries: "optional",
};

/** Config keys that are not strings: the engine takes provider config as strings, so these travel as JSON. */
const PROVIDER_JSON_KEYS: readonly (keyof ProviderArgs)[] = ["earlyAuthCheck", "enableAutoCiSupport", "headers", "insecure", "retries"];

/** Provider config keys the schema marks secret. */
export const PROVIDER_SECRET_CONFIG: readonly (keyof ProviderArgs)[] = ["token"];

/** An instance of the GitLab provider (`pulumi:providers:gitlab`). The token is sent and kept as a secret. */
export class Provider extends pulumi.ProviderResource {
    constructor(name: string, args: ProviderArgs, opts?: pulumi.ResourceOptions) {
        const props: pulumi.Inputs = {};
        for (const key of Object.keys(PROVIDER_CONFIG) as (keyof ProviderArgs)[]) {
            const value = args[key];
            if (value === undefined) {
                continue;
            }
            if (PROVIDER_SECRET_CONFIG.includes(key)) {
                props[key] = pulumi.secret(value);
            } else if (PROVIDER_JSON_KEYS.includes(key)) {
                props[key] = pulumi.output(value).apply((v) => JSON.stringify(v));
            } else {
                props[key] = value;
            }
        }
        const merged = pulumi.mergeOptions(opts, { additionalSecretOutputs: [...PROVIDER_SECRET_CONFIG] });
        super("gitlab", name, props, { ...merged, version: GITLAB_PROVIDER_VERSION });
    }
}

// --- project ---------------------------------------------------------------------------------

export type VisibilityLevel = "private" | "internal" | "public";

export interface ProjectArgs {
    /** Display name. */
    name?: pulumi.Input<string>;
    /** The repository's path (last segment of its URL). */
    path?: pulumi.Input<string>;
    /** The group or user namespace the project lives in. */
    namespaceId?: pulumi.Input<number>;
    description?: pulumi.Input<string>;
    visibilityLevel?: pulumi.Input<VisibilityLevel>;
    defaultBranch?: pulumi.Input<string>;
    /** Creates the default branch with a first commit (a README). */
    initializeWithReadme?: pulumi.Input<boolean>;
    /** Archives the project instead of deleting it on destroy. */
    archiveOnDestroy?: pulumi.Input<boolean>;
}

export const PROJECT: ResourceBinding = binding<ProjectArgs>(
    "gitlab:index/project:Project",
    {
        name: "optional",
        path: "optional",
        namespaceId: "optional",
        description: "optional",
        visibilityLevel: "optional",
        defaultBranch: "optional",
        initializeWithReadme: "optional",
        archiveOnDestroy: "optional",
    },
    ["httpUrlToRepo", "pathWithNamespace", "webUrl"],
    ["importUrlPassword", "runnersToken"],
);

/** A GitLab project (`gitlab:index/project:Project`). Its ID is the numeric project ID. */
export class Project extends pulumi.CustomResource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly path: pulumi.Output<string>;
    declare public readonly namespaceId: pulumi.Output<number>;
    declare public readonly description: pulumi.Output<string>;
    declare public readonly visibilityLevel: pulumi.Output<string>;
    declare public readonly defaultBranch: pulumi.Output<string>;
    declare public readonly initializeWithReadme: pulumi.Output<boolean | undefined>;
    declare public readonly archiveOnDestroy: pulumi.Output<boolean | undefined>;
    /** HTTPS clone URL. */
    declare public readonly httpUrlToRepo: pulumi.Output<string>;
    /** `group/sub/name`. */
    declare public readonly pathWithNamespace: pulumi.Output<string>;
    declare public readonly webUrl: pulumi.Output<string>;

    constructor(name: string, args: ProjectArgs, opts?: pulumi.CustomResourceOptions) {
        super(PROJECT.token, name, resourceInputs(PROJECT, args), resourceOptions(PROJECT, opts));
    }
}

// --- branch protection -----------------------------------------------------------------------

export type BranchAccessLevel = "no one" | "developer" | "maintainer" | "admin";

export interface BranchProtectionArgs {
    /** The project's ID. */
    project: pulumi.Input<string>;
    branch: pulumi.Input<string>;
    pushAccessLevel?: pulumi.Input<BranchAccessLevel>;
    mergeAccessLevel?: pulumi.Input<BranchAccessLevel>;
    allowForcePush?: pulumi.Input<boolean>;
}

export const BRANCH_PROTECTION: ResourceBinding = binding<BranchProtectionArgs>(
    "gitlab:index/branchProtection:BranchProtection",
    { project: "required", branch: "required", pushAccessLevel: "optional", mergeAccessLevel: "optional", allowForcePush: "optional" },
    ["branchProtectionId"],
    [],
);

/**
 * A protected branch (`gitlab:index/branchProtection:BranchProtection`). On a project's default
 * branch, which GitLab may already protect, the provider takes the protection over (unprotects
 * and protects it again with these settings).
 */
export class BranchProtection extends pulumi.CustomResource {
    declare public readonly project: pulumi.Output<string>;
    declare public readonly branch: pulumi.Output<string>;
    declare public readonly pushAccessLevel: pulumi.Output<string>;
    declare public readonly mergeAccessLevel: pulumi.Output<string>;
    declare public readonly allowForcePush: pulumi.Output<boolean>;
    declare public readonly branchProtectionId: pulumi.Output<number>;

    constructor(name: string, args: BranchProtectionArgs, opts?: pulumi.CustomResourceOptions) {
        super(BRANCH_PROTECTION.token, name, resourceInputs(BRANCH_PROTECTION, args), resourceOptions(BRANCH_PROTECTION, opts));
    }
}

// --- deploy token ----------------------------------------------------------------------------

export interface ProjectDeployTokenArgs {
    /** The project's ID or full path. */
    project: pulumi.Input<string>;
    /** GitLab's scope names, e.g. `read_repository`. */
    scopes: pulumi.Input<pulumi.Input<string>[]>;
    name?: pulumi.Input<string>;
    /** Defaults (on GitLab's side) to `gitlab+deploy-token-{n}`. */
    username?: pulumi.Input<string>;
    /** RFC 3339; none by default. */
    expiresAt?: pulumi.Input<string>;
}

export const PROJECT_DEPLOY_TOKEN: ResourceBinding = binding<ProjectDeployTokenArgs>(
    "gitlab:index/projectDeployToken:ProjectDeployToken",
    { project: "required", scopes: "required", name: "optional", username: "optional", expiresAt: "optional" },
    ["token", "expired", "revoked"],
    ["token"],
);

/** A project deploy token (`gitlab:index/projectDeployToken:ProjectDeployToken`). `token` is secret. */
export class ProjectDeployToken extends pulumi.CustomResource {
    declare public readonly project: pulumi.Output<string>;
    declare public readonly scopes: pulumi.Output<string[]>;
    declare public readonly name: pulumi.Output<string>;
    declare public readonly username: pulumi.Output<string>;
    declare public readonly expiresAt: pulumi.Output<string>;
    /** The token; secret, and only known to the run that created it. */
    declare public readonly token: pulumi.Output<string>;
    declare public readonly expired: pulumi.Output<boolean>;
    declare public readonly revoked: pulumi.Output<boolean>;

    constructor(name: string, args: ProjectDeployTokenArgs, opts?: pulumi.CustomResourceOptions) {
        super(PROJECT_DEPLOY_TOKEN.token, name, resourceInputs(PROJECT_DEPLOY_TOKEN, args), resourceOptions(PROJECT_DEPLOY_TOKEN, opts));
    }
}

// --- project access token --------------------------------------------------------------------

export type TokenAccessLevel = "no one" | "minimal" | "guest" | "planner" | "reporter" | "developer" | "maintainer" | "owner";

/** `gitlab:index/ProjectAccessTokenRotationConfiguration:ProjectAccessTokenRotationConfiguration`. */
export interface ProjectAccessTokenRotationConfiguration {
    /** Lifetime of each new token, days. */
    expirationDays: pulumi.Input<number>;
    /** The token is replaced on the first `pulumi up` this many days before it expires. */
    rotateBeforeDays: pulumi.Input<number>;
}

export interface ProjectAccessTokenArgs {
    /** The project's ID or full path. */
    project: pulumi.Input<string>;
    /** GitLab's scope names, e.g. `write_repository`. */
    scopes: pulumi.Input<pulumi.Input<string>[]>;
    name?: pulumi.Input<string>;
    description?: pulumi.Input<string>;
    accessLevel?: pulumi.Input<TokenAccessLevel>;
    /** YYYY-MM-DD. Set by the provider when `rotationConfiguration` is given. */
    expiresAt?: pulumi.Input<string>;
    rotationConfiguration?: pulumi.Input<ProjectAccessTokenRotationConfiguration>;
}

/** Properties of `ProjectAccessTokenRotationConfiguration`, for the schema test. */
export const ROTATION_CONFIGURATION_TYPE = "gitlab:index/ProjectAccessTokenRotationConfiguration:ProjectAccessTokenRotationConfiguration";
export const ROTATION_CONFIGURATION: InputTable<ProjectAccessTokenRotationConfiguration> = {
    expirationDays: "required",
    rotateBeforeDays: "required",
};

export const PROJECT_ACCESS_TOKEN: ResourceBinding = binding<ProjectAccessTokenArgs>(
    "gitlab:index/projectAccessToken:ProjectAccessToken",
    {
        project: "required",
        scopes: "required",
        name: "optional",
        description: "optional",
        accessLevel: "optional",
        expiresAt: "optional",
        rotationConfiguration: "optional",
    },
    ["token", "active", "revoked", "userId"],
    ["token"],
);

/** A project access token (`gitlab:index/projectAccessToken:ProjectAccessToken`). `token` is secret. */
export class ProjectAccessToken extends pulumi.CustomResource {
    declare public readonly project: pulumi.Output<string>;
    declare public readonly scopes: pulumi.Output<string[]>;
    declare public readonly name: pulumi.Output<string>;
    declare public readonly description: pulumi.Output<string>;
    declare public readonly accessLevel: pulumi.Output<string>;
    /** YYYY-MM-DD. */
    declare public readonly expiresAt: pulumi.Output<string>;
    declare public readonly rotationConfiguration: pulumi.Output<{ expirationDays: number; rotateBeforeDays: number } | undefined>;
    /** The token; secret. */
    declare public readonly token: pulumi.Output<string>;
    declare public readonly active: pulumi.Output<boolean>;
    declare public readonly revoked: pulumi.Output<boolean>;
    /** The token's bot user. */
    declare public readonly userId: pulumi.Output<number>;

    constructor(name: string, args: ProjectAccessTokenArgs, opts?: pulumi.CustomResourceOptions) {
        super(PROJECT_ACCESS_TOKEN.token, name, resourceInputs(PROJECT_ACCESS_TOKEN, args), resourceOptions(PROJECT_ACCESS_TOKEN, opts));
    }
}

// --- project variable ------------------------------------------------------------------------

export interface ProjectVariableArgs {
    /** The project's ID or full path. */
    project: pulumi.Input<string>;
    key: pulumi.Input<string>;
    /** Not secret in the schema: pass a secret and add `value` to `additionalSecretOutputs` where it is one. */
    value: pulumi.Input<string>;
    /** Masks the value in job logs. */
    masked?: pulumi.Input<boolean>;
    /** Passes the variable only to pipelines on protected branches and tags. */
    protected?: pulumi.Input<boolean>;
    /** Takes the value literally (no `$` expansion). */
    raw?: pulumi.Input<boolean>;
    description?: pulumi.Input<string>;
    /** Defaults (on GitLab's side) to `*`. */
    environmentScope?: pulumi.Input<string>;
}

export const PROJECT_VARIABLE: ResourceBinding = binding<ProjectVariableArgs>(
    "gitlab:index/projectVariable:ProjectVariable",
    {
        project: "required",
        key: "required",
        value: "required",
        masked: "optional",
        protected: "optional",
        raw: "optional",
        description: "optional",
        environmentScope: "optional",
    },
    [],
    [],
);

/** A CI/CD variable of a project (`gitlab:index/projectVariable:ProjectVariable`). */
export class ProjectVariable extends pulumi.CustomResource {
    declare public readonly project: pulumi.Output<string>;
    declare public readonly key: pulumi.Output<string>;
    declare public readonly value: pulumi.Output<string>;
    declare public readonly masked: pulumi.Output<boolean>;
    declare public readonly protected: pulumi.Output<boolean>;
    declare public readonly raw: pulumi.Output<boolean>;
    declare public readonly description: pulumi.Output<string>;
    declare public readonly environmentScope: pulumi.Output<string>;

    constructor(name: string, args: ProjectVariableArgs, opts?: pulumi.CustomResourceOptions) {
        super(PROJECT_VARIABLE.token, name, resourceInputs(PROJECT_VARIABLE, args), resourceOptions(PROJECT_VARIABLE, opts));
    }
}

// --- project hook ----------------------------------------------------------------------------

export interface ProjectHookArgs {
    /** The project's ID or full path. */
    project: pulumi.Input<string>;
    url: pulumi.Input<string>;
    /** Sent as `X-Gitlab-Token`; secret. */
    token?: pulumi.Input<string>;
    enableSslVerification?: pulumi.Input<boolean>;
    pushEvents?: pulumi.Input<boolean>;
    pushEventsBranchFilter?: pulumi.Input<string>;
    tagPushEvents?: pulumi.Input<boolean>;
    mergeRequestsEvents?: pulumi.Input<boolean>;
    issuesEvents?: pulumi.Input<boolean>;
    confidentialIssuesEvents?: pulumi.Input<boolean>;
    noteEvents?: pulumi.Input<boolean>;
    confidentialNoteEvents?: pulumi.Input<boolean>;
    jobEvents?: pulumi.Input<boolean>;
    pipelineEvents?: pulumi.Input<boolean>;
    wikiPageEvents?: pulumi.Input<boolean>;
    deploymentEvents?: pulumi.Input<boolean>;
    releasesEvents?: pulumi.Input<boolean>;
}

/** The hook's event switches, for callers that want to set every one of them. */
export const PROJECT_HOOK_EVENTS = [
    "pushEvents",
    "tagPushEvents",
    "mergeRequestsEvents",
    "issuesEvents",
    "confidentialIssuesEvents",
    "noteEvents",
    "confidentialNoteEvents",
    "jobEvents",
    "pipelineEvents",
    "wikiPageEvents",
    "deploymentEvents",
    "releasesEvents",
] as const satisfies readonly (keyof ProjectHookArgs)[];

export const PROJECT_HOOK: ResourceBinding = binding<ProjectHookArgs>(
    "gitlab:index/projectHook:ProjectHook",
    {
        project: "required",
        url: "required",
        token: "optional",
        enableSslVerification: "optional",
        pushEvents: "optional",
        pushEventsBranchFilter: "optional",
        tagPushEvents: "optional",
        mergeRequestsEvents: "optional",
        issuesEvents: "optional",
        confidentialIssuesEvents: "optional",
        noteEvents: "optional",
        confidentialNoteEvents: "optional",
        jobEvents: "optional",
        pipelineEvents: "optional",
        wikiPageEvents: "optional",
        deploymentEvents: "optional",
        releasesEvents: "optional",
    },
    ["hookId", "projectId"],
    ["signingToken", "token"],
);

/** A project webhook (`gitlab:index/projectHook:ProjectHook`). `token` is secret. */
export class ProjectHook extends pulumi.CustomResource {
    declare public readonly project: pulumi.Output<string>;
    declare public readonly url: pulumi.Output<string>;
    declare public readonly token: pulumi.Output<string>;
    declare public readonly enableSslVerification: pulumi.Output<boolean>;
    declare public readonly pushEvents: pulumi.Output<boolean>;
    declare public readonly pushEventsBranchFilter: pulumi.Output<string>;
    declare public readonly tagPushEvents: pulumi.Output<boolean>;
    declare public readonly mergeRequestsEvents: pulumi.Output<boolean>;
    declare public readonly issuesEvents: pulumi.Output<boolean>;
    declare public readonly confidentialIssuesEvents: pulumi.Output<boolean>;
    declare public readonly noteEvents: pulumi.Output<boolean>;
    declare public readonly confidentialNoteEvents: pulumi.Output<boolean>;
    declare public readonly jobEvents: pulumi.Output<boolean>;
    declare public readonly pipelineEvents: pulumi.Output<boolean>;
    declare public readonly wikiPageEvents: pulumi.Output<boolean>;
    declare public readonly deploymentEvents: pulumi.Output<boolean>;
    declare public readonly releasesEvents: pulumi.Output<boolean>;
    /** GitLab's ID of the hook. */
    declare public readonly hookId: pulumi.Output<number>;
    declare public readonly projectId: pulumi.Output<number>;

    constructor(name: string, args: ProjectHookArgs, opts?: pulumi.CustomResourceOptions) {
        super(PROJECT_HOOK.token, name, resourceInputs(PROJECT_HOOK, args), resourceOptions(PROJECT_HOOK, opts));
    }
}

/** Every bound resource type, for the schema test. */
export const GITLAB_RESOURCES: Readonly<Record<string, ResourceBinding>> = {
    Project: PROJECT,
    BranchProtection: BRANCH_PROTECTION,
    ProjectDeployToken: PROJECT_DEPLOY_TOKEN,
    ProjectAccessToken: PROJECT_ACCESS_TOKEN,
    ProjectVariable: PROJECT_VARIABLE,
    ProjectHook: PROJECT_HOOK,
};

// --- functions -------------------------------------------------------------------------------

/** How one function is bound: its token, the arguments it takes and the result fields read. */
export interface FunctionBinding {
    readonly token: string;
    readonly inputs: readonly string[];
    readonly outputs: readonly string[];
}

export interface GetProjectArgs {
    /** The numeric ID. */
    id?: pulumi.Input<string>;
    /** `group/sub/name`. */
    pathWithNamespace?: pulumi.Input<string>;
}

export interface GetProjectResult {
    /** The numeric ID. */
    readonly id: string;
    readonly pathWithNamespace: string;
    readonly httpUrlToRepo: string;
    readonly defaultBranch: string;
    readonly namespaceId: number;
    readonly webUrl: string;
}

export const GET_PROJECT: FunctionBinding = {
    token: "gitlab:index/getProject:getProject",
    inputs: ["id", "pathWithNamespace"] satisfies (keyof GetProjectArgs)[],
    outputs: ["id", "pathWithNamespace", "httpUrlToRepo", "defaultBranch", "namespaceId", "webUrl"] satisfies (keyof GetProjectResult)[],
};

export interface GetGroupArgs {
    /** `group/sub`. */
    fullPath?: pulumi.Input<string>;
    groupId?: pulumi.Input<number>;
}

export interface GetGroupResult {
    readonly groupId: number;
    readonly fullPath: string;
}

export const GET_GROUP: FunctionBinding = {
    token: "gitlab:index/getGroup:getGroup",
    inputs: ["fullPath", "groupId"] satisfies (keyof GetGroupArgs)[],
    outputs: ["groupId", "fullPath"] satisfies (keyof GetGroupResult)[],
};

export const GITLAB_FUNCTIONS: Readonly<Record<string, FunctionBinding>> = { getProject: GET_PROJECT, getGroup: GET_GROUP };

function invokeOptions(opts: pulumi.InvokeOutputOptions | undefined): pulumi.InvokeOutputOptions {
    return { ...opts, version: GITLAB_PROVIDER_VERSION };
}

/** Reads an existing project (`gitlab:index/getProject:getProject`); manages nothing. */
export function getProjectOutput(args: GetProjectArgs, opts?: pulumi.InvokeOutputOptions): pulumi.Output<GetProjectResult> {
    return pulumi.runtime.invokeOutput(GET_PROJECT.token, { id: args.id, pathWithNamespace: args.pathWithNamespace }, invokeOptions(opts));
}

/** Reads an existing group (`gitlab:index/getGroup:getGroup`); manages nothing. */
export function getGroupOutput(args: GetGroupArgs, opts?: pulumi.InvokeOutputOptions): pulumi.Output<GetGroupResult> {
    return pulumi.runtime.invokeOutput(GET_GROUP.token, { fullPath: args.fullPath, groupId: args.groupId }, invokeOptions(opts));
}
