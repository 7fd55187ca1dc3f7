import type { Cidr } from "../components/lib/cidr";
import { parseCidr } from "../components/lib/cidr";

/**
 * Helpers shared by the policies: reading props without tripping CrossGuard's unknown-value
 * proxy, and the host, image, CIDR and env checks the rules are made of. Pure.
 *
 * Fail closed: CrossGuard hands a policy `args.props` behind a proxy that throws
 * `UnknownValueError` when a value unknown during preview is read, and turns that into an
 * advisory, so a mandatory rule reading it would pass silently. The policies here read the
 * proxy's plain target instead (`plain`), see the unknown markers as values (`isUnknown`) and
 * report them as violations where the field decides residency or exposure.
 */

/** The property the SDK's proxies answer with their plain target (`@pulumi/policy/proxy`). */
const PROXY_TARGET = "__getSpecialProxyTarget";

/**
 * The engine's markers for values unknown during preview (`@pulumi/policy/proxy`, which keeps
 * them internal; a test checks they still match).
 */
export const UNKNOWN_MARKERS: readonly string[] = [
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7", // boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421", // number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9", // string
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2", // array
    "030794c1-ac77-496b-92df-f27374a8bd58", // asset
    "e48ece36-62e2-4504-bad9-02848725956a", // archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff", // object
];
const UNKNOWN_SET = new Set(UNKNOWN_MARKERS);

/** A value read by `get`: known (possibly undefined) or unknown during preview. */
export const UNKNOWN: unique symbol = Symbol("unknown during preview");

/** Whether `value` is unknown during preview: the engine's marker, or `UNKNOWN` from `get`. */
export function isUnknown(value: unknown): boolean {
    return value === UNKNOWN || (typeof value === "string" && UNKNOWN_SET.has(value));
}

/** The plain object behind CrossGuard's props proxy (nested values are plain already). */
export function plain(props: unknown): unknown {
    if (props !== null && typeof props === "object") {
        const target = (props as Record<string, unknown>)[PROXY_TARGET];
        if (target !== undefined && target !== null && typeof target === "object") {
            return target;
        }
    }
    return props;
}


/** The value at `path`, `UNKNOWN` when it or a parent is unknown, undefined when missing. */
export function get(root: unknown, path: readonly (string | number)[]): unknown {
    let cur: unknown = root;
    for (const key of path) {
        if (isUnknown(cur)) {
            return UNKNOWN;
        }
        if (cur === null || typeof cur !== "object") {
            return undefined;
        }
        cur = (cur as Record<string | number, unknown>)[key];
    }
    return isUnknown(cur) ? UNKNOWN : cur;
}

export function isObject(value: unknown): value is Record<string, unknown> {
    return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A value for a message: JSON, shortened; never used for secret fields. */
export function show(value: unknown): string {
    if (value === UNKNOWN) {
        return "unknown during preview";
    }
    if (value === undefined) {
        return "not set";
    }
    const text = JSON.stringify(value) ?? typeof value;
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** A host name, or `*.` and a domain for every host under it (policy config lists of hosts). */
export const HOST_NAME_PATTERN = "^(\\*\\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$";

/** A policy config property: a list of distinct strings, each matching `items`. */
export function stringListProperty(description: string, items: Record<string, unknown> = { type: "string", minLength: 1 }, minItems?: number): Record<string, unknown> {
    return { type: "array", items: { type: "string", ...items }, ...(minItems === undefined ? {} : { minItems }), uniqueItems: true, description };
}

/** A list from policy config, or the default when the key is absent. */
export function configList(config: Record<string, unknown>, key: string, fallback: readonly string[]): string[] {
    const v = config[key];
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [...fallback];
}

// ---------------------------------------------------------------------------------------------
// Hosts and URLs

/**
 * The host of a URL-like endpoint: `https://host:port/path`, `oci://host/path`, `git@host:path`,
 * `host/path`. Lower case, without port or credentials. Undefined when there is none.
 */
export function endpointHost(endpoint: string): string | undefined {
    const text = endpoint.trim();
    const scp = /^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(?!\/\/)/.exec(text);
    if (scp) {
        return scp[1].toLowerCase();
    }
    const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text) ? text : `https://${text}`;
    try {
        const url = new URL(withScheme);
        return url.hostname === "" ? undefined : url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
    } catch {
        return undefined;
    }
}

/** Whether `host` is allowed: equal to an entry, or under a `*.suffix` entry. */
export function hostAllowed(host: string, allowed: readonly string[]): boolean {
    const h = host.toLowerCase().replace(/\.$/, "");
    return allowed.some((entry) => {
        const e = entry.toLowerCase().replace(/\.$/, "");
        return e.startsWith("*.") ? h.endsWith(e.slice(1)) && h.length > e.length - 1 : h === e;
    });
}

/** An endpoint for a message: its host only (a URL may carry credentials). */
export function showEndpoint(endpoint: string): string {
    const host = endpointHost(endpoint);
    return host === undefined ? "an endpoint without a host" : `host ${JSON.stringify(host)}`;
}

// ---------------------------------------------------------------------------------------------
// Container images

/**
 * The registry of an image reference, as the container runtime resolves it: the first path
 * component when it looks like a host (has a '.' or ':' or is `localhost`), else Docker Hub.
 */
export function imageRegistry(image: string): string {
    const ref = image.trim();
    const slash = ref.indexOf("/");
    if (slash > 0) {
        const first = ref.slice(0, slash);
        if (first.includes(".") || first.includes(":") || first === "localhost") {
            return first.replace(/:\d+$/, "").toLowerCase();
        }
    }
    return "docker.io";
}

/** One image found in a values tree or a pod spec, with where it was found. */
export interface FoundImage {
    readonly path: string;
    /** The image reference, or UNKNOWN. */
    readonly image: string | typeof UNKNOWN;
}

function pathText(path: readonly (string | number)[]): string {
    return path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("").replace(/^\./, "");
}

/**
 * Every image a Helm values tree names: a string under a key `image`, or an `image` object's
 * `repository` (with `registry` in front when given). An unknown `image` is reported as such.
 */
export function valuesImages(values: unknown, path: (string | number)[] = []): FoundImage[] {
    if (Array.isArray(values)) {
        return values.flatMap((v, i) => valuesImages(v, [...path, i]));
    }
    if (!isObject(values)) {
        return [];
    }
    const found: FoundImage[] = [];
    for (const [key, value] of Object.entries(values)) {
        const here = [...path, key];
        if (key === "image") {
            if (isUnknown(value)) {
                found.push({ path: pathText(here), image: UNKNOWN });
                continue;
            }
            if (typeof value === "string" && value !== "") {
                found.push({ path: pathText(here), image: value });
                continue;
            }
            if (isObject(value)) {
                const repo = value.repository;
                const registry = value.registry;
                if (isUnknown(repo) || isUnknown(registry)) {
                    found.push({ path: pathText([...here, "repository"]), image: UNKNOWN });
                } else if (typeof repo === "string" && repo !== "") {
                    const full = typeof registry === "string" && registry !== "" ? `${registry.replace(/\/$/, "")}/${repo}` : repo;
                    found.push({ path: pathText([...here, "repository"]), image: full });
                }
            }
        }
        found.push(...valuesImages(value, here));
    }
    return found;
}

/** The kinds of Kubernetes workloads, by Pulumi type, with where their pod spec is. */
export const WORKLOAD_POD_SPEC: Readonly<Record<string, readonly string[]>> = {
    "kubernetes:apps/v1:Deployment": ["spec", "template", "spec"],
    "kubernetes:apps/v1:StatefulSet": ["spec", "template", "spec"],
    "kubernetes:apps/v1:DaemonSet": ["spec", "template", "spec"],
    "kubernetes:apps/v1:ReplicaSet": ["spec", "template", "spec"],
    "kubernetes:batch/v1:Job": ["spec", "template", "spec"],
    "kubernetes:batch/v1:CronJob": ["spec", "jobTemplate", "spec", "template", "spec"],
    "kubernetes:core/v1:Pod": ["spec"],
};

/** A container of a pod spec: `containers[0]`, `initContainers[1]`, ... */
export interface Container {
    readonly path: string;
    readonly name: string;
    readonly value: unknown;
}

/** The containers of a pod spec; UNKNOWN when the spec or a container list is unknown. */
export function podContainers(podSpec: unknown): Container[] | typeof UNKNOWN {
    if (isUnknown(podSpec)) {
        return UNKNOWN;
    }
    const out: Container[] = [];
    for (const list of ["initContainers", "containers", "ephemeralContainers"]) {
        const items = get(podSpec, [list]);
        if (items === UNKNOWN) {
            return UNKNOWN;
        }
        if (Array.isArray(items)) {
            items.forEach((c, i) => {
                const name = get(c, ["name"]);
                out.push({ path: `${list}[${i}]`, name: typeof name === "string" ? name : `#${i}`, value: c });
            });
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Environment variables

export const RESIDENCY_ENV = "DATA_RESIDENCY_MODE";
export const RESIDENCY_VALUE = "strict_eea";

/** An env entry set from a Secret or ConfigMap (`valueFrom`), not as a literal. */
export const FROM_REFERENCE: unique symbol = Symbol("set from a Secret or ConfigMap");

/**
 * What an env list (Kubernetes `[{name, value}]`) or env map (`{NAME: value}`) says about a
 * variable: its literal value, UNKNOWN, FROM_REFERENCE, or
 * undefined when absent.
 */
export function envValue(env: unknown, name: string): string | typeof UNKNOWN | typeof FROM_REFERENCE | undefined {
    if (isUnknown(env)) {
        return UNKNOWN;
    }
    if (Array.isArray(env)) {
        let result: string | typeof UNKNOWN | typeof FROM_REFERENCE | undefined;
        for (const entry of env) {
            if (isUnknown(entry)) {
                return UNKNOWN;
            }
            const n = get(entry, ["name"]);
            if (n === UNKNOWN) {
                return UNKNOWN;
            }
            if (n !== name) {
                continue;
            }
            const v = get(entry, ["value"]);
            if (v === UNKNOWN) {
                return UNKNOWN;
            }
            // A later entry wins, as in Kubernetes.
            result = typeof v === "string" ? v : get(entry, ["valueFrom"]) !== undefined ? FROM_REFERENCE : JSON.stringify(v ?? null);
        }
        return result;
    }
    if (isObject(env)) {
        const v = env[name];
        if (isUnknown(v)) {
            return UNKNOWN;
        }
        return v === undefined ? undefined : typeof v === "string" ? v : JSON.stringify(v);
    }
    return undefined;
}

// ---------------------------------------------------------------------------------------------
// CIDRs

/** Whether the CIDR `inner` lies inside the CIDR `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
    if (inner.family !== outer.family || inner.prefix < outer.prefix) {
        return false;
    }
    const bits = BigInt(inner.family === 4 ? 32 : 128);
    const shift = bits - BigInt(outer.prefix);
    return inner.network >> shift === outer.network >> shift;
}

/** A CIDR or a bare address (as /32 or /128); undefined when neither. */
export function toCidr(text: string): Cidr | undefined {
    const withPrefix = text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`;
    const parsed = parseCidr(withPrefix);
    return parsed.ok ? parsed.cidr : undefined;
}

/** A port range `"6443"` or `"2379-2380"`; undefined when malformed. */
export function parsePorts(text: unknown): { first: number; last: number } | undefined {
    const s = typeof text === "number" ? String(text) : text;
    if (typeof s !== "string") {
        return undefined;
    }
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s.trim());
    if (!m) {
        return undefined;
    }
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    return first >= 1 && last <= 65535 && first <= last ? { first, last } : undefined;
}

/** The stack name in a URN (`urn:pulumi:<stack>::<project>::<type>::<name>`). */
export function stackOfUrn(urn: string): string | undefined {
    const m = /^urn:pulumi:([^:]+)::/.exec(urn);
    return m ? m[1] : undefined;
}

/**
 * The step fact `key` of a command (zerotouch's steps carry `triggers: [payload hash, facts]`),
 * UNKNOWN, or undefined when the command declares no such fact. Only the entries after the first
 * are facts: the first is the payload's hash, which is unknown during the preview of a step whose
 * payload holds secrets or values not yet created (an etcd member's certificates), and hides no
 * fact. An unknown list, or an unknown entry where facts may be, is UNKNOWN (fail closed).
 */
export function triggerFact(props: unknown, key: string): unknown {
    const triggers = get(props, ["triggers"]);
    if (triggers === UNKNOWN) {
        return UNKNOWN;
    }
    if (!Array.isArray(triggers)) {
        return undefined;
    }
    for (const t of triggers.slice(1)) {
        if (isUnknown(t)) {
            return UNKNOWN;
        }
        if (isObject(t) && key in t) {
            return isUnknown(t[key]) ? UNKNOWN : t[key];
        }
    }
    return undefined;
}

export const REMOTE_COMMAND = "command:remote:Command";
