import type { ResourceValidationPolicy } from "@pulumi/policy";

import { chartReads, ChartValuesIndex } from "../components/gitops/chartValues";
import ARGOCD_VALUES_INDEX from "../components/gitops/charts/argo-cd-10.1.1.values-index.json";
import { APPLICATION, HELM_CHART_TYPES } from "./endpointHosts";
import { envValue, FROM_REFERENCE, get, isObject, isUnknown, plain, podContainers, RESIDENCY_ENV, RESIDENCY_VALUE, show, UNKNOWN, WORKLOAD_POD_SPEC } from "./lib";

export const WORKLOAD_RESIDENCY = "workload-residency-mode";

/**
 * How a chart's workloads get their variables: the values paths whose env list the chart hands to
 * every component's main container, whether a post-renderer must add them to the containers no
 * values key reaches, and (per chart version) which values keys the chart reads at all.
 */
export interface ChartResidencyContract {
    /** Values paths (dotted) of env lists that reach every component, e.g. `global.env`. */
    readonly env: readonly string[];
    /** Whether the chart's containers no values key reaches must get the variable from a post-renderer. */
    readonly postRenderer: boolean;
}

/** The argo-cd chart: `global.env` reaches every component's main container; init containers need the post-renderer. */
export const DEFAULT_CHART_CONTRACTS: Readonly<Record<string, ChartResidencyContract>> = {
    "argo-cd": { env: ["global.env"], postRenderer: true },
};

/** What each chart version reads (derived from its tarball; see components/gitops/chartValues.ts). */
const CHART_INDEXES: readonly ChartValuesIndex[] = [ARGOCD_VALUES_INDEX];

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

/** Every env list/map in a values tree (keys `env`, `extraEnv`), with its path (shown and as keys). */
function envBlocks(values: unknown, path: string[] = []): { path: string; keys: string[]; env: unknown }[] {
    if (Array.isArray(values)) {
        return values.flatMap((v, i) => envBlocks(v, [...path, `[${i}]`]));
    }
    if (!isObject(values)) {
        return [];
    }
    return Object.entries(values).flatMap(([k, v]) => [
        ...(ENV_KEYS.includes(k) ? [{ path: [...path, k].join(".").replace(/\.\[/g, "["), keys: [...path, k], env: v }] : []),
        ...(ENV_KEYS.includes(k) ? [] : envBlocks(v, [...path, k])),
    ]);
}

/**
 * Every workload the platform deploys runs with `DATA_RESIDENCY_MODE=strict_eea`: each container
 * (init containers too) of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and
 * Pods; for the Helm charts listed in `charts`, the env lists that reach every component set it,
 * no env key is set that the chart (at its pinned version) does not read, and the post-renderer
 * adds it to the containers no values key reaches; the inline Helm values of an Application,
 * when given, set it in at least one env block and nowhere to anything else. Unknown values are
 * violations.
 */
export const workloadResidencyMode: ResourceValidationPolicy = {
    name: WORKLOAD_RESIDENCY,
    description: `Every workload (containers, the Argo CD chart's workloads, Applications' inline Helm values) sets ${RESIDENCY_ENV}=${RESIDENCY_VALUE}.`,
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            charts: {
                type: "object",
                additionalProperties: {
                    type: "object",
                    required: ["env", "postRenderer"],
                    additionalProperties: false,
                    properties: {
                        env: { type: "array", minItems: 1, items: { type: "string", pattern: "^[A-Za-z0-9_.-]+$" }, uniqueItems: true },
                        postRenderer: { type: "boolean" },
                    },
                },
                description:
                    "Per Helm chart name: the values paths (dotted) of env lists that reach every component, and whether a post-renderer must add the variable to the containers no values key reaches. Defaults to argo-cd: global.env, post-renderer.",
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
            const config = args.getConfig<{ charts?: Record<string, ChartResidencyContract> }>();
            const contracts = config.charts ?? DEFAULT_CHART_CONTRACTS;
            if (chart === UNKNOWN) {
                reportViolation(`${what}: chart is unknown during preview; allowed: a chart known from config whose workloads set ${want}`);
                return;
            }
            // A repository chart name, an oci:// reference or a local tarball (`…/argo-cd-10.1.1.tgz`).
            const chartName =
                typeof chart === "string"
                    ? (chart.replace(/\/+$/, "").split("/").pop() ?? chart).replace(/\.tgz$/, "").replace(/-[0-9]+\.[0-9]+\.[0-9]+([-+][A-Za-z0-9.+-]*)?$/, "")
                    : "";
            const contract = contracts[chartName];
            if (contract === undefined) {
                return;
            }
            const version = get(props, ["version"]);
            const index = CHART_INDEXES.find((i) => i.chart === chartName && i.version === version);
            if (index === undefined) {
                const known = CHART_INDEXES.filter((i) => i.chart === chartName).map((i) => i.version);
                reportViolation(
                    `${what}: chart ${chartName} version ${describe(typeof version === "string" || version === UNKNOWN ? version : undefined)} has no index of the values it reads, ` +
                        `so its env keys cannot be checked; allowed: version ${known.join(", ") || "(none indexed)"}`,
                );
                return;
            }
            const values = get(props, ["values"]);
            if (values === UNKNOWN) {
                reportViolation(`${what}: values are unknown during preview; allowed: values known from config that set ${want}`);
                return;
            }
            for (const p of contract.env) {
                const v = envValue(get(values, p.split(".")), RESIDENCY_ENV);
                if (v !== RESIDENCY_VALUE) {
                    reportViolation(`${what}: values.${p} (reaches every component of chart ${chartName}) has ${RESIDENCY_ENV} ${describe(v)}; allowed: ${want} in ${p}`);
                }
            }
            // An env block the chart never reads sets nothing (Helm drops it silently): fail closed.
            for (const b of envBlocks(values)) {
                if (!chartReads(index, b.keys)) {
                    reportViolation(`${what}: values.${b.path} is not read by chart ${chartName} ${index.version} (Helm ignores it); allowed: env keys the chart reads, e.g. ${contract.env.join(", ")}`);
                    continue;
                }
                const v = envValue(b.env, RESIDENCY_ENV);
                if (v !== undefined && v !== RESIDENCY_VALUE) {
                    reportViolation(`${what}: values.${b.path} has ${RESIDENCY_ENV} ${describe(v)}; allowed: ${want}`);
                }
            }
            if (contract.postRenderer) {
                const postArgs = get(props, ["postRenderer", "args"]);
                const has = Array.isArray(postArgs) && postArgs.some((a) => a === want);
                if (!has) {
                    reportViolation(
                        `${what}: chart ${chartName} has no post-renderer adding ${want} (postRenderer.args ${isUnknown(postArgs) || postArgs === UNKNOWN ? "unknown during preview" : JSON.stringify(postArgs ?? null)}); ` +
                            `its init containers, which no values key reaches, would run without it; allowed: a postRenderer whose args include ${want}`,
                    );
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
