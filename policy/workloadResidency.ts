import type { ResourceValidationPolicy } from "@pulumi/policy";

import { APPLICATION, HELM_CHART_TYPES } from "./endpointHosts";
import { envValue, FROM_REFERENCE, get, isObject, isUnknown, plain, podContainers, RESIDENCY_ENV, RESIDENCY_VALUE, show, UNKNOWN, WORKLOAD_POD_SPEC } from "./lib";

export const WORKLOAD_RESIDENCY = "workload-residency-mode";

/**
 * The argo-cd chart's components that run pods, by their key in the values. Each sets its
 * containers' variables with `env`. Defaults of `chartComponents` for the chart `argo-cd`.
 */
export const ARGOCD_COMPONENTS: readonly string[] = [
    "controller",
    "repoServer",
    "server",
    "applicationSet",
    "notifications",
    "dex",
    "redis",
    "commitServer",
];

/** Env keys a chart component may carry its variables in. */
const ENV_KEYS = ["env", "extraEnv"];

function describe(value: string | symbol | undefined): string {
    if (value === UNKNOWN) {
        return "unknown during preview";
    }
    if (value === undefined) {
        return "not set";
    }
    if (value === FROM_REFERENCE) {
        return "set from a Secret or ConfigMap, not as a literal";
    }
    return JSON.stringify(value);
}

/** Every env list/map in a values tree (keys `env`, `extraEnv`), with its path. */
function envBlocks(values: unknown, path: string[] = []): { path: string; env: unknown }[] {
    if (Array.isArray(values)) {
        return values.flatMap((v, i) => envBlocks(v, [...path, `[${i}]`]));
    }
    if (!isObject(values)) {
        return [];
    }
    return Object.entries(values).flatMap(([k, v]) => [
        ...(ENV_KEYS.includes(k) ? [{ path: [...path, k].join(".").replace(/\.\[/g, "["), env: v }] : []),
        ...(ENV_KEYS.includes(k) ? [] : envBlocks(v, [...path, k])),
    ]);
}

/**
 * Every workload the platform deploys runs with `DATA_RESIDENCY_MODE=strict_eea`: each container
 * (init containers too) of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and
 * Pods; each component of the Helm charts listed in `chartComponents` (the argo-cd chart's
 * controller, repo-server, server, ...); and the inline Helm values of an Application, when given,
 * set it in at least one env block and nowhere to anything else. Unknown values are violations.
 */
export const workloadResidencyMode: ResourceValidationPolicy = {
    name: WORKLOAD_RESIDENCY,
    description: `Every workload (containers, the Argo CD chart's components, Applications' inline Helm values) sets ${RESIDENCY_ENV}=${RESIDENCY_VALUE}.`,
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            chartComponents: {
                type: "object",
                additionalProperties: { type: "array", items: { type: "string", pattern: "^[A-Za-z0-9_.-]+$" }, uniqueItems: true },
                description: "Per Helm chart name, the values keys (dotted) of its components that run pods; each must set the variable in env or extraEnv. Defaults to the argo-cd chart's components.",
            },
        },
    },
    validateResource: (args, reportViolation) => {
        const props = plain(args.props);
        const what = `${args.type.split(":").pop()} ${args.name}`;
        const want = `${RESIDENCY_ENV}=${RESIDENCY_VALUE}`;

        const podPath = WORKLOAD_POD_SPEC[args.type];
        if (podPath !== undefined) {
            const containers = podContainers(get(props, podPath));
            if (containers === UNKNOWN) {
                reportViolation(`${what}: its containers are unknown during preview; allowed: containers that set ${want}`);
                return;
            }
            if (containers.length === 0) {
                reportViolation(`${what}: has no containers to check; allowed: containers that set ${want}`);
            }
            for (const c of containers) {
                const v = envValue(get(c.value, ["env"]), RESIDENCY_ENV);
                if (v !== RESIDENCY_VALUE) {
                    reportViolation(`${what}: container ${c.name} (${c.path}) has ${RESIDENCY_ENV} ${describe(v)}; allowed: ${want}`);
                }
            }
            return;
        }

        if (HELM_CHART_TYPES.includes(args.type)) {
            const chart = get(props, ["chart"]);
            const config = args.getConfig<{ chartComponents?: Record<string, string[]> }>();
            const components = config.chartComponents ?? { "argo-cd": [...ARGOCD_COMPONENTS] };
            if (chart === UNKNOWN) {
                reportViolation(`${what}: chart is unknown during preview; allowed: a chart known from config whose components set ${want}`);
                return;
            }
            const chartName = typeof chart === "string" ? chart.replace(/\/+$/, "").split("/").pop() ?? chart : "";
            const keys = components[chartName];
            if (keys === undefined) {
                return;
            }
            const values = get(props, ["values"]);
            if (values === UNKNOWN) {
                reportViolation(`${what}: values are unknown during preview; allowed: values known from config whose components set ${want}`);
                return;
            }
            for (const key of keys) {
                const component = get(values, key.split("."));
                const blocks = ENV_KEYS.map((k) => ({ key: k, v: envValue(get(component, [k]), RESIDENCY_ENV) }));
                const set = blocks.filter((b) => b.v !== undefined);
                const ok = set.length > 0 && set.every((b) => b.v === RESIDENCY_VALUE);
                if (!ok) {
                    const found = set.length > 0 ? set.map((b) => `${b.key} ${describe(b.v)}`).join(", ") : isUnknown(component) || component === UNKNOWN ? "unknown during preview" : "not set";
                    reportViolation(`${what}: values.${key} (component of chart ${chartName}) has ${RESIDENCY_ENV} ${found}; allowed: ${want} in ${key}.env`);
                }
            }
            return;
        }

        if (args.type === APPLICATION) {
            const helm = get(props, ["spec", "source", "helm"]);
            const values = helm === UNKNOWN ? UNKNOWN : get(helm, ["valuesObject"]);
            if (values === undefined) {
                return; // no inline values: the manifests repository's own checks apply
            }
            if (values === UNKNOWN) {
                reportViolation(`${what}: spec.source.helm.valuesObject is unknown during preview; allowed: inline values known from config that set ${want}`);
                return;
            }
            const blocks = envBlocks(values, ["spec.source.helm.valuesObject"]).map((b) => ({ path: b.path, v: envValue(b.env, RESIDENCY_ENV) }));
            const wrong = blocks.filter((b) => b.v !== undefined && b.v !== RESIDENCY_VALUE);
            for (const b of wrong) {
                reportViolation(`${what}: ${b.path} has ${RESIDENCY_ENV} ${describe(b.v)}; allowed: ${want}`);
            }
            if (!blocks.some((b) => b.v === RESIDENCY_VALUE) && wrong.length === 0) {
                reportViolation(`${what}: inline Helm values (spec.source.helm.valuesObject) set no ${RESIDENCY_ENV} (${show(blocks.length)} env blocks); allowed: ${want} in the workload's env`);
            }
        }
    },
};
