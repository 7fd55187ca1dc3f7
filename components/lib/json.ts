/** JSON values and the two operations chart values need on them. Pure. */

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A JSON object (not an array, not null). */
export function isObject(value: unknown): value is JsonObject {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Deep merge: objects merge key by key; anything else in `over` replaces. Pure. */
export function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
    const out: JsonObject = { ...base };
    for (const [k, v] of Object.entries(over)) {
        const b = out[k];
        out[k] = isObject(b) && isObject(v) ? deepMerge(b, v) : v;
    }
    return out;
}

/** The value at `path` (object keys), or undefined where the path leaves the objects. */
export function get(values: JsonValue, path: readonly string[]): JsonValue | undefined {
    let cur: JsonValue | undefined = values;
    for (const k of path) {
        cur = isObject(cur) ? cur[k] : undefined;
    }
    return cur;
}
