/**
 * The guard on chart values overrides from config: what an override may never set (the local
 * admin, the residency variable, secrets, ...) and what the pinned chart does not read (Helm
 * would drop it without a word). Pure.
 */
import { isObject, JsonObject, JsonValue } from "../lib/json";
import { ARGOCD_CHART, argoCdValuesIndex } from "./argocdChart";
import { formatKeyPath, unreadValues } from "./chartValues";

/** A chart values override from config: deep-merged over the computed values (objects merge, anything else replaces). */
export type ArgoCdValuesOverride = JsonObject;

/** Paths (key lists) an override may neither set nor replace a parent of. */
export const PROTECTED_VALUES: readonly (readonly string[])[] = [
    // The local admin user stays off; access goes through SSO groups and RBAC.
    ["configs", "cm", "admin.enabled"],
    ["configs", "cm", "users.anonymous.enabled"],
    ["configs", "cm", "url"],
    // Single sign-on and who it lets in: only through sso and breakGlassGroup.
    ["configs", "cm", "dex.config"],
    ["configs", "cm", "oidc.config"],
    ["dex", "enabled"],
    ["global", "domain"],
    // TLS ends at Traefik; the API server answers plain HTTP behind it, and never without auth.
    ["configs", "params", "server.insecure"],
    ["configs", "params", "server.disable.auth"],
    // Default read-only, break-glass group, scopes: only through breakGlassGroup/extraPolicyLines.
    ["configs", "rbac"],
    // Credentials only travel as secret inputs, never in plain config.
    ["configs", "secret"],
    // Redis' password Secret comes from the program (the chart's pre-install hook Job would make
    // it, and hooks do not run under helm.v4.Chart).
    ["redisSecretInit", "enabled"],
    // Every workload carries the data-residency mode.
    ["global", "env"],
    ["configs", "repositories"],
    ["configs", "credentialTemplates"],
    // Exposure: only the component's own VPN-restricted route and the public webhook path.
    ["server", "ingress"],
    ["server", "ingressGrpc"],
    ["server", "route"],
    ["server", "httproute"],
    ["server", "grpcroute"],
    ["server", "service", "type"],
    ["applicationSet", "ingress"],
    ["applicationSet", "httproute"],
    // The routes point at the Service `argocd-server`, port 80: names and port stay as the chart renders them.
    ["nameOverride"],
    ["fullnameOverride"],
    ["server", "name"],
    ["server", "service", "servicePortHttp"],
];
/** Keys under `configs.cm` an override may not add: local accounts (`accounts.<name>`). */
const PROTECTED_CM_PREFIX = "accounts.";
const SECRET_SUBTREES = [["configs", "secret"], ["configs", "repositories"], ["configs", "credentialTemplates"]];

/** `configs.cm."admin.enabled"`: dotted, keys with dots quoted. */
export function formatPath(path: readonly string[]): string {
    return path.map((k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k))).join(".");
}

function startsWith(path: readonly string[], prefix: readonly string[]): boolean {
    return prefix.length <= path.length && prefix.every((k, i) => path[i] === k);
}

/** Every leaf of `value` (a non-object, an array or an empty object) with its path. */
function leaves(value: JsonValue, path: string[] = []): { path: string[]; value: JsonValue }[] {
    if (isObject(value) && Object.keys(value).length > 0) {
        return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
    }
    return [{ path, value }];
}

/**
 * Throws at the first override entry that touches a protected value or that the pinned chart
 * does not read (Helm would drop it without a word), naming it.
 */
export function checkArgoCdOverride(override: ArgoCdValuesOverride): void {
    if (!isObject(override)) {
        throw new Error(`ArgoCd: values is ${JSON.stringify(override)}; allowed: an object of chart values`);
    }
    const [unread] = unreadValues(argoCdValuesIndex(), override);
    if (unread !== undefined) {
        throw new Error(
            `ArgoCd: values override sets ${formatKeyPath(unread)}, which the argo-cd chart ${ARGOCD_CHART.version} does not read (Helm would ignore it); ` +
                "allowed: keys of the chart's values.yaml or read by its templates",
        );
    }
    // An empty override sets nothing.
    for (const leaf of leaves(override).filter((l) => l.path.length > 0)) {
        const shown = SECRET_SUBTREES.some((s) => startsWith(leaf.path, s)) ? "(value not shown)" : JSON.stringify(leaf.value);
        const hit = PROTECTED_VALUES.find((p) => startsWith(leaf.path, p) || startsWith(p, leaf.path));
        if (hit !== undefined) {
            throw new Error(
                `ArgoCd: values override sets ${formatPath(leaf.path)} to ${shown}; allowed: any chart value except ${formatPath(hit)} ` +
                    "(security-relevant: set by the component; see PROTECTED_VALUES)",
            );
        }
        if (leaf.path.length >= 3 && leaf.path[0] === "configs" && leaf.path[1] === "cm" && leaf.path[2].startsWith(PROTECTED_CM_PREFIX)) {
            throw new Error(`ArgoCd: values override sets ${formatPath(leaf.path)} to ${shown}; allowed: no local accounts (configs.cm."accounts.*"), users come from SSO groups`);
        }
    }
}
