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

/** The computed outputs of a resource, each with its type. */
type OutputTable = Readonly<Record<string, "string" | "number" | "boolean">>;
type OutputType<T> = T extends "string" ? string : T extends "number" ? number : boolean;

/** A binding that also carries the types of its inputs (`Args`) and of its computed outputs. */
export interface TypedBinding<Args, O extends OutputTable> extends ResourceBinding {
    readonly outputTypes: O;
    /** Never set: carries `Args` to `resourceClass`. */
    readonly args?: Args;
}

/** The binding of resource `token`: inputs as `Args` has them, the outputs GitLab computes, the secrets. */
function binding<Args>() {
    return <O extends OutputTable>(token: string, inputs: InputTable<Args>, outputs: O, secretOutputs: readonly string[]): TypedBinding<Args, O> => ({
        token,
        inputs,
        outputs: Object.keys(outputs),
        outputTypes: outputs,
        secretOutputs,
    });
}

/** What an instance of a bound resource exposes: each input as the provider keeps it, and the computed outputs. */
export type BoundResource<Args, O extends OutputTable> = pulumi.CustomResource & {
    readonly [K in keyof Args]-?: pulumi.Output<pulumi.Unwrap<NonNullable<Args[K]>>>;
} & { readonly [K in keyof O]: pulumi.Output<OutputType<O[K]>> };

/**
 * The resource class of a binding: `new C(name, args, opts)` registers `b.token` with the bound
 * inputs, its secret outputs declared and the plugin version pinned.
 */
function resourceClass<Args extends object, O extends OutputTable>(
    b: TypedBinding<Args, O>,
): new (name: string, args: Args, opts?: pulumi.CustomResourceOptions) => BoundResource<Args, O> {
    class Bound extends pulumi.CustomResource {
        constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
            super(b.token, name, resourceInputs(b, args), resourceOptions(b, opts));
        }
    }
    return Bound as unknown as new (name: string, args: Args, opts?: pulumi.CustomResourceOptions) => BoundResource<Args, O>;
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

export const PROJECT = binding<ProjectArgs>()(
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
    // The HTTPS clone URL, `group/sub/name`, the web page.
    { httpUrlToRepo: "string", pathWithNamespace: "string", webUrl: "string" },
    ["importUrlPassword", "runnersToken"],
);

/** A GitLab project (`gitlab:index/project:Project`). Its ID is the numeric project ID. */
export const Project = resourceClass(PROJECT);
export type Project = InstanceType<typeof Project>;

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

export const BRANCH_PROTECTION = binding<BranchProtectionArgs>()(
    "gitlab:index/branchProtection:BranchProtection",
    { project: "required", branch: "required", pushAccessLevel: "optional", mergeAccessLevel: "optional", allowForcePush: "optional" },
    { branchProtectionId: "number" },
    [],
);

/**
 * A protected branch (`gitlab:index/branchProtection:BranchProtection`). On a project's default
 * branch, which GitLab may already protect, the provider takes the protection over (unprotects
 * and protects it again with these settings).
 */
export const BranchProtection = resourceClass(BRANCH_PROTECTION);
export type BranchProtection = InstanceType<typeof BranchProtection>;

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

export const PROJECT_DEPLOY_TOKEN = binding<ProjectDeployTokenArgs>()(
    "gitlab:index/projectDeployToken:ProjectDeployToken",
    { project: "required", scopes: "required", name: "optional", username: "optional", expiresAt: "optional" },
    // The token is secret, and only known to the run that created it.
    { token: "string", expired: "boolean", revoked: "boolean" },
    ["token"],
);

/** A project deploy token (`gitlab:index/projectDeployToken:ProjectDeployToken`). `token` is secret. */
export const ProjectDeployToken = resourceClass(PROJECT_DEPLOY_TOKEN);
export type ProjectDeployToken = InstanceType<typeof ProjectDeployToken>;

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

export const PROJECT_ACCESS_TOKEN = binding<ProjectAccessTokenArgs>()(
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
    // The token (secret), and its bot user.
    { token: "string", active: "boolean", revoked: "boolean", userId: "number" },
    ["token"],
);

/** A project access token (`gitlab:index/projectAccessToken:ProjectAccessToken`). `token` is secret. */
export const ProjectAccessToken = resourceClass(PROJECT_ACCESS_TOKEN);
export type ProjectAccessToken = InstanceType<typeof ProjectAccessToken>;

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

export const PROJECT_VARIABLE = binding<ProjectVariableArgs>()(
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
    {},
    [],
);

/** A CI/CD variable of a project (`gitlab:index/projectVariable:ProjectVariable`). */
export const ProjectVariable = resourceClass(PROJECT_VARIABLE);
export type ProjectVariable = InstanceType<typeof ProjectVariable>;

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

export const PROJECT_HOOK = binding<ProjectHookArgs>()(
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
    // GitLab's ID of the hook, and of its project.
    { hookId: "number", projectId: "number" },
    ["signingToken", "token"],
);

/** A project webhook (`gitlab:index/projectHook:ProjectHook`). `token` is secret. */
export const ProjectHook = resourceClass(PROJECT_HOOK);
export type ProjectHook = InstanceType<typeof ProjectHook>;

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
