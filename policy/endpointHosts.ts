import type { ResourceValidationPolicy } from "@pulumi/policy";

import { configList, endpointHost, get, HOST_NAME_PATTERN, hostAllowed, isObject, plain, REMOTE_COMMAND, show, showEndpoint, stringListProperty, triggerFact, UNKNOWN } from "./lib";

export const ENDPOINT_HOSTS = "endpoint-hosts-allowed";

export const APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application";
export const APP_PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject";
export const GITLAB_PROVIDER = "pulumi:providers:gitlab";
export const HELM_CHART_TYPES = ["kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v3:Release"];

/** One endpoint a resource sends data to or fetches from: where it is set, and its value. */
interface Endpoint {
    readonly field: string;
    readonly value: unknown;
}

/** The etcd cluster component whose snapshot commands (`<cluster>-<node>-snapshots`) may copy off the node. */
const ETCD_CLUSTER = "zerotouch:etcd:EtcdCluster";

/**
 * The off-node target of an etcd snapshot command (`triggers[1].zerotouchOffsite`): its endpoint,
 * UNKNOWN when the command's facts cannot be seen, or none for a command that copies nothing off
 * the node. A declared target without a host is unknown too (fail closed).
 */
function offsiteEndpoints(name: string, urn: string, props: unknown): Endpoint[] {
    const fact = triggerFact(props, "zerotouchOffsite");
    const field = "triggers.zerotouchOffsite";
    if (fact === undefined) {
        // A snapshot command whose facts cannot be read at all may hide a target.
        const snapshots = name.endsWith("-snapshots") && urn.includes(`${ETCD_CLUSTER}$`);
        return snapshots && get(props, ["triggers"]) === UNKNOWN ? [{ field, value: UNKNOWN }] : [];
    }
    if (fact === UNKNOWN || !isObject(fact)) {
        return [{ field, value: fact === UNKNOWN ? UNKNOWN : undefined }];
    }
    const host = get(fact, ["host"]);
    const endpoint = get(fact, ["endpoint"]);
    if (host === UNKNOWN || endpoint === UNKNOWN) {
        return [{ field: `${field}.host`, value: UNKNOWN }];
    }
    if (typeof host !== "string" || host === "" || typeof endpoint !== "string" || endpointHost(endpoint) !== host.toLowerCase()) {
        return [{ field: `${field}.host`, value: undefined }];
    }
    return [{ field: `${field}.endpoint`, value: endpoint }];
}

/** The endpoints of one resource, by type. Missing endpoints that would fall back to a default host are included as undefined. */
function endpointsOf(type: string, props: unknown, name = "", urn = ""): Endpoint[] {
    if (type === REMOTE_COMMAND) {
        return offsiteEndpoints(name, urn, props);
    }
    if (type === APPLICATION) {
        const out: Endpoint[] = [];
        const source = get(props, ["spec", "source"]);
        const sources = get(props, ["spec", "sources"]);
        if (source === UNKNOWN || sources === UNKNOWN) {
            return [{ field: "spec.source", value: UNKNOWN }];
        }
        if (source !== undefined) {
            out.push({ field: "spec.source.repoURL", value: get(source, ["repoURL"]) });
        }
        if (Array.isArray(sources)) {
            sources.forEach((_, i) => out.push({ field: `spec.sources[${i}].repoURL`, value: get(sources, [i, "repoURL"]) }));
        }
        return out.length > 0 ? out : [{ field: "spec.source.repoURL", value: undefined }];
    }
    if (type === APP_PROJECT) {
        const repos = get(props, ["spec", "sourceRepos"]);
        if (repos === UNKNOWN) {
            return [{ field: "spec.sourceRepos", value: UNKNOWN }];
        }
        return Array.isArray(repos) ? repos.map((_, i) => ({ field: `spec.sourceRepos[${i}]`, value: get(repos, [i]) })) : [];
    }
    if (type === GITLAB_PROVIDER) {
        // Without baseUrl the provider talks to gitlab.com.
        return [{ field: "baseUrl", value: get(props, ["baseUrl"]) }];
    }
    if (HELM_CHART_TYPES.includes(type)) {
        const out: Endpoint[] = [];
        const repo = get(props, ["repositoryOpts", "repo"]);
        if (repo !== undefined) {
            out.push({ field: "repositoryOpts.repo", value: repo });
        }
        const chart = get(props, ["chart"]);
        if (chart === UNKNOWN || (typeof chart === "string" && /^[a-z][a-z0-9+.-]*:\/\//i.test(chart))) {
            out.push({ field: "chart", value: chart });
        }
        return out;
    }
    return [];
}

/**
 * Every endpoint that data goes to or comes from is on an allowlist of hosts: Argo CD
 * Applications' repoURLs and AppProjects' sourceRepos, the GitLab provider's baseUrl, Helm chart
 * repositories, and the off-node target of etcd snapshots (S3 endpoint or SFTP host, declared on
 * each snapshot command). Unknown or missing endpoints are violations. Messages show hosts only.
 */
export const endpointHostsAllowed: ResourceValidationPolicy = {
    name: ENDPOINT_HOSTS,
    description:
        "Argo CD repoURLs, AppProject sourceRepos, the GitLab provider's baseUrl, Helm chart repositories and the off-node target of etcd snapshots are on the allowlist of hosts.",
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            allowedHosts: stringListProperty("Host names endpoints may use; `*.example.com` allows every host under example.com. Defaults to none (every endpoint is a violation).", { pattern: HOST_NAME_PATTERN }),
        },
    },
    validateResource: (args, reportViolation) => {
        const endpoints = endpointsOf(args.type, plain(args.props), args.name, args.urn);
        if (endpoints.length === 0) {
            return;
        }
        const allowed = configList(args.getConfig<Record<string, unknown>>(), "allowedHosts", []);
        const allowedText = allowed.length > 0 ? allowed.join(", ") : "none configured";
        for (const { field, value } of endpoints) {
            const where = `${args.type.split(":").pop()} ${args.name}: ${field}`;
            if (value === "*") {
                reportViolation(`${where} is "*" (any repository); allowed: repositories on ${allowedText}`);
                continue;
            }
            if (typeof value !== "string") {
                reportViolation(`${where} is ${value === UNKNOWN ? show(value) : show(value === undefined ? undefined : typeof value)}; allowed: a known URL on ${allowedText}`);
                continue;
            }
            const host = endpointHost(value);
            if (host === undefined || !hostAllowed(host, allowed)) {
                reportViolation(`${where} is on ${showEndpoint(value)}; allowed: ${allowedText}`);
            }
        }
    },
};
