import { isIP } from "net";
import * as path from "path";
import { z } from "zod";

/**
 * The latency preflight: each node times TCP connects to the GitLab host (and to an optional
 * probe target, e.g. a host at the local internet exchange) during its preflight, several tries
 * each bounded, and reports the median and the worst. With a threshold the node judges itself
 * (`scripts/latency.sh`): a median above it is a preflight problem, which makes the preflight
 * command exit non-zero and so stops `pulumi up` for that node. TypeScript only parses the
 * figures the node reports.
 */

/** The shell library that measures and judges (put in the preflight's payload). */
export const LATENCY_LIB = path.join(__dirname, "scripts", "latency.sh");

/** Connect tries per target: bounds of `preflight.latency.tries`. */
export const LATENCY_TRIES = { min: 1, max: 20, default: 5 } as const;
/** Bound of one connect in ms: bounds of `preflight.latency.timeoutMs`. */
export const LATENCY_TIMEOUT_MS = { min: 100, max: 10000, default: 2000 } as const;

/** The names of what a node measures, in the order it measures them. */
export const LATENCY_TARGETS = ["gitlab", "probe"] as const;
export type LatencyTargetName = (typeof LATENCY_TARGETS)[number];

/** A TCP endpoint: a host (DNS name or IP address) and a port. */
export interface Endpoint {
    readonly host: string;
    readonly port: number;
}

const DNS_HOST = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Parses `host:port` (`[v6]:port` for an IPv6 address). Undefined when the text is not one: a
 * host that is neither a DNS name nor an IP address, or a port outside 1–65535.
 */
export function parseEndpoint(text: string): Endpoint | undefined {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
    if (m === null) {
        return undefined;
    }
    const port = Number(m[3]);
    if (port < 1 || port > 65535) {
        return undefined;
    }
    if (m[1] !== undefined) {
        return isIP(m[1]) === 6 ? { host: m[1], port } : undefined;
    }
    const host = m[2];
    return isIP(host) === 4 || (isIP(host) === 0 && DNS_HOST.test(host) && !/^[0-9.]+$/.test(host)) ? { host, port } : undefined;
}

/** An endpoint as `host:port` (`[v6]:port`). */
export function formatEndpoint(e: Endpoint): string {
    return isIP(e.host) === 6 ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** The endpoint an `https://host[:port]/…` URL connects to (443 unless it names a port). */
export function endpointOfUrl(url: string): Endpoint {
    const u = new URL(url);
    if (u.protocol !== "https:") {
        throw new Error(`not an https:// URL: ${url}`);
    }
    const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
    return { host, port: u.port === "" ? 443 : Number(u.port) };
}

/** What the preflight measures and judges, as plain values. */
export interface LatencySpec {
    /** The targets, by name; a target that is absent is not measured. */
    readonly targets: Readonly<Partial<Record<LatencyTargetName, Endpoint>>>;
    readonly tries: number;
    readonly timeoutMs: number;
    /** The threshold on each target's median, ms; undefined: figures reported, nothing refused. */
    readonly maxLatencyMs?: number;
}

/** The preflight parameters of a latency spec. */
export function latencyParams(spec: LatencySpec): Record<string, string | number | string[]> {
    return {
        ZT_LATENCY_TARGETS: LATENCY_TARGETS.filter((n) => spec.targets[n] !== undefined).map((n) => `${n} ${spec.targets[n]!.host} ${spec.targets[n]!.port}`),
        ZT_LATENCY_TRIES: spec.tries,
        ZT_LATENCY_TIMEOUT_MS: spec.timeoutMs,
        // The threshold as written (for messages) and in whole nanoseconds (the node compares integers).
        ZT_MAX_LATENCY_MS: spec.maxLatencyMs === undefined ? "" : String(spec.maxLatencyMs),
        ZT_MAX_LATENCY_NS: spec.maxLatencyMs === undefined ? "" : String(Math.round(spec.maxLatencyMs * 1e6)),
    };
}

/** One target as the node reports it. */
export const latencyResultSchema = z.object({
    name: z.enum(LATENCY_TARGETS),
    host: z.string(),
    port: z.number().int(),
    /** The address connected to (the host resolved once, before the tries); "" when it did not resolve. */
    address: z.string(),
    tries: z.number().int(),
    /** The bound of each connect, ms. */
    timeoutMs: z.number().int(),
    /** Connects that succeeded within the timeout. */
    connected: z.number().int(),
    /** Each successful connect's time, µs. */
    samplesUs: z.array(z.number().int()),
    /** Median and worst of the successful connects, ns; null when none succeeded. */
    medianNs: z.number().int().nullable(),
    worstNs: z.number().int().nullable(),
    /** The threshold the node judged with, ms; null without one. */
    thresholdMs: z.number().nullable(),
    passed: z.boolean(),
});
export type LatencyResult = z.infer<typeof latencyResultSchema>;

/** A latency figure in ms with 3 decimals, rounded half up on the integer ns figure (as the node prints it). */
export function formatMs3(ns: number): string {
    if (!Number.isSafeInteger(ns) || ns < 0) {
        throw new Error(`a latency must be a non-negative integer of nanoseconds, got ${ns}`);
    }
    const thousandths = Math.floor((ns + 500) / 1000);
    return `${Math.floor(thousandths / 1000)}.${String(thousandths % 1000).padStart(3, "0")}`;
}

/** The figure in ms the outputs carry (3 decimals), or null. */
export function nsToMs(ns: number | null): number | null {
    return ns === null ? null : Number(formatMs3(ns));
}
