/**
 * Which values keys a Helm chart really reads, and the check of a values object against that.
 * Helm drops keys a chart never reads without a word, so a key set on the wrong path (e.g. `env`
 * where the chart reads `extraEnv`) would silently do nothing. Pure.
 *
 * A key path is read when the chart's `values.yaml` holds it, when a template refers to it
 * (`.Values.a.b`, `index .Values "a" "b"`), or when one of its parents is a map the templates
 * take whole (`toYaml`, `range`, `with` … `toYaml .`: free-form maps such as `configs.cm`).
 * The index is derived from the chart itself (see `indexChart` in the tests, which compare it
 * with the chart tarball), never written by hand.
 */

/** A values key path, e.g. `["configs", "cm", "admin.enabled"]`. */
export type KeyPath = readonly string[];

/** What a chart reads, by path (each path JSON-encoded as an array of keys). */
export interface ChartValuesIndex {
    readonly chart: string;
    readonly version: string;
    /** Every path of `values.yaml` (leaves and the maps above them). */
    readonly defaults: readonly string[];
    /** Every path a template refers to. */
    readonly referenced: readonly string[];
    /** Paths whose whole map (or list) a template consumes: anything below them is read. */
    readonly wholeMaps: readonly string[];
}

const key = (path: KeyPath): string => JSON.stringify(path);

/** Each index as sets, made once per index. */
const SETS = new WeakMap<ChartValuesIndex, { defaults: Set<string>; referenced: Set<string>; whole: Set<string> }>();

function setsOf(index: ChartValuesIndex): { defaults: Set<string>; referenced: Set<string>; whole: Set<string> } {
    let sets = SETS.get(index);
    if (sets === undefined) {
        sets = { defaults: new Set(index.defaults), referenced: new Set(index.referenced), whole: new Set(index.wholeMaps) };
        SETS.set(index, sets);
    }
    return sets;
}

/** Whether the chart reads the path. */
export function chartReads(index: ChartValuesIndex, path: KeyPath): boolean {
    const { defaults, referenced, whole } = setsOf(index);
    if (defaults.has(key(path)) || referenced.has(key(path))) {
        return true;
    }
    for (let n = path.length - 1; n >= 1; n--) {
        if (whole.has(key(path.slice(0, n)))) {
            return true;
        }
    }
    return false;
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

function isMap(v: unknown): v is Record<string, Json> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Every leaf path of a values object (a non-map value, an empty map or a list ends a path). */
export function leafPaths(values: Json, prefix: string[] = []): string[][] {
    if (isMap(values) && Object.keys(values).length > 0) {
        return Object.entries(values).flatMap(([k, v]) => leafPaths(v, [...prefix, k]));
    }
    return prefix.length > 0 ? [prefix] : [];
}

/** The leaf paths of `values` the chart does not read (empty when every key is read). */
export function unreadValues(index: ChartValuesIndex, values: Record<string, unknown>): string[][] {
    return leafPaths(values as Json).filter((p) => !chartReads(index, p));
}

/** `configs.cm."admin.enabled"`: dotted, keys with dots quoted. */
export function formatKeyPath(path: KeyPath): string {
    return path.map((k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k))).join(".");
}
