/**
 * Generates README.md's configuration table and Pulumi.yaml's `config:` block from the config
 * schema (infra/config.ts): each key's description, type, range and default are written once,
 * on the schema, and read here.
 *
 *   npm run docs:config            rewrites both files
 *
 * test/configDocs.test.ts regenerates both in memory and fails when a file differs.
 */
import { readFileSync, writeFileSync } from "fs";
import * as path from "path";
import { z } from "zod";

import { configSchema, KeyDoc } from "../../infra/config";

export const README_START = "<!-- config-table:start -->";
export const README_END = "<!-- config-table:end -->";

/** Reads a schema's documentation; replaceable so that a test can change it. */
export type DocLookup = (schema: z.ZodType) => KeyDoc | undefined;

export const schemaDocs: DocLookup = (schema) => z.globalRegistry.get(schema);

/** A key of the schema: its path, the schema with its wrappers, and what they say. */
export type ConfigKey = {
    path: string[];
    /** The key's schema as the parent object holds it. */
    schema: z.ZodType;
    doc: KeyDoc | undefined;
    /** The key's type, without optional/default wrappers. */
    inner: z.ZodType;
    optional: boolean;
    hasDefault: boolean;
    defaultValue: unknown;
};

type Def = {
    type: string;
    innerType?: z.ZodType;
    defaultValue?: unknown;
    element?: z.ZodType;
    valueType?: z.ZodType;
    shape?: Record<string, z.ZodType>;
};

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** Strips optional, default and prefault wrappers, recording what they say. */
function unwrap(schema: z.ZodType): { inner: z.ZodType; optional: boolean; hasDefault: boolean; defaultValue: unknown } {
    let inner = schema;
    let optional = false;
    let hasDefault = false;
    let defaultValue: unknown = undefined;
    for (;;) {
        const def = defOf(inner);
        if (def.type === "optional" && def.innerType) {
            optional = true;
        } else if ((def.type === "default" || def.type === "prefault") && def.innerType) {
            if (!hasDefault) {
                hasDefault = true;
                defaultValue = def.defaultValue;
            }
        } else {
            return { inner, optional, hasDefault, defaultValue };
        }
        inner = def.innerType;
    }
}

function shapeOf(schema: z.ZodType): Record<string, z.ZodType> | undefined {
    const def = defOf(schema);
    return def.type === "object" ? (schema as unknown as z.ZodObject).shape : undefined;
}

/** Every key of the schema in schema order, a map's entries under `docEach` (default `<name>`). */
export function configKeys(docs: DocLookup = schemaDocs, schema: z.ZodType = configSchema): ConfigKey[] {
    const keys: ConfigKey[] = [];
    const walk = (shape: Record<string, z.ZodType>, prefix: string[]) => {
        for (const [name, child] of Object.entries(shape)) {
            const u = unwrap(child);
            const d = docs(child);
            const keyPath = [...prefix, name];
            keys.push({ path: keyPath, schema: child, doc: d, ...u });
            const inner = shapeOf(u.inner);
            if (inner) {
                walk(inner, keyPath);
                continue;
            }
            const def = defOf(u.inner);
            if (def.type === "record" && def.valueType) {
                const entryPath = [...keyPath, d?.docEach ?? "<name>"];
                const entry = unwrap(def.valueType);
                keys.push({ path: entryPath, schema: def.valueType, doc: docs(def.valueType), ...entry });
                const entryShape = shapeOf(entry.inner);
                if (entryShape) {
                    walk(entryShape, entryPath);
                }
            }
        }
    };
    const root = shapeOf(unwrap(schema).inner);
    if (!root) {
        throw new Error("the config schema is not an object");
    }
    walk(root, []);
    return keys;
}

/** A value as the docs write it: `[kvm]`, `{}`, `10`. */
function plain(value: unknown): string {
    if (Array.isArray(value)) {
        return `[${value.map(plain).join(", ")}]`;
    }
    if (value !== null && typeof value === "object") {
        return Object.keys(value).length === 0 ? "{}" : JSON.stringify(value);
    }
    return String(value);
}

/** The type column from the schema: integer ranges, enums, booleans, object keys, lists of those. */
function derivedType(schema: z.ZodType, secret: boolean): string | undefined {
    const def = defOf(schema);
    switch (def.type) {
        case "number": {
            const n = schema as unknown as z.ZodNumber;
            const bounded = n.minValue !== null && n.maxValue !== null && Number.isSafeInteger(n.maxValue) && n.maxValue < Number.MAX_SAFE_INTEGER;
            if (n.isInt) {
                return bounded ? `integer ${n.minValue}–${n.maxValue}` : "integer";
            }
            return "number";
        }
        case "boolean":
            return "boolean";
        case "enum":
            return (schema as unknown as z.ZodEnum).options.map((o) => `\`${String(o)}\``).join(" | ");
        case "object":
            return `\`{${Object.keys(shapeOf(schema) ?? {}).join(", ")}}\``;
        case "record":
            return def.valueType && defOf(def.valueType).type === "unknown" ? "object" : undefined;
        case "array": {
            const element = def.element ? derivedType(unwrap(def.element).inner, false) : undefined;
            return element ? `list of ${element}` : undefined;
        }
        case "string":
            return secret ? "secret string" : undefined;
        default:
            return undefined;
    }
}

const keyText = (p: string[]) => `\`${p.join(".")}\``;

/** Escapes the table's column separator. */
const cell = (text: string) => text.replace(/(?<!\\)\|/g, "\\|");

/** One README row per documented key, in schema order. */
export function readmeRows(docs: DocLookup = schemaDocs, schema: z.ZodType = configSchema): string[] {
    const rows: string[] = [];
    for (const key of configKeys(docs, schema)) {
        const d = key.doc;
        if (d?.description === undefined || d.docRow === false) {
            continue;
        }
        const name = keyText(key.path);
        const type = d.docType ?? derivedType(key.inner, d.secret === true);
        if (type === undefined) {
            throw new Error(`${name}: the schema does not say its type; give it docType`);
        }
        let dflt = d.docDefault;
        if (dflt === undefined) {
            if (key.hasDefault) {
                dflt = `\`${plain(key.defaultValue)}\``;
            } else {
                dflt = key.optional ? "—" : "(required)";
            }
        }
        const keys = [name, ...(d.docAlso ?? []).map((k) => keyText([...key.path.slice(0, -1), k]))].join(", ");
        const meaning = d.description === "" ? "" : ` ${cell(d.description)}`;
        rows.push(`| ${keys} | ${cell(type)} | ${cell(dflt)} |${meaning} |`);
    }
    return rows;
}

/** The whole table, header included. */
export function readmeTable(docs: DocLookup = schemaDocs, schema: z.ZodType = configSchema): string {
    return ["| key | type | default | meaning |", "|---|---|---|---|", ...readmeRows(docs, schema)].join("\n");
}

/** README.md with the table between its markers replaced. */
export function renderReadme(readme: string, docs: DocLookup = schemaDocs): string {
    const start = readme.indexOf(README_START);
    const end = readme.indexOf(README_END);
    if (start < 0 || end < start) {
        throw new Error(`README.md: no ${README_START} … ${README_END} markers around the configuration table`);
    }
    return `${readme.slice(0, start + README_START.length)}\n${readmeTable(docs)}\n${readme.slice(end)}`;
}

/** An object's keys for Pulumi.yaml: `{a (default 1), b (x|y, default x), c {d, e}}`. */
function summary(schema: z.ZodType): string {
    const shape = shapeOf(schema) ?? {};
    const parts = Object.entries(shape).map(([name, child]) => {
        const u = unwrap(child);
        const def = defOf(u.inner);
        const notes: string[] = [];
        if (def.type === "enum") {
            notes.push((u.inner as unknown as z.ZodEnum).options.map(String).join("|"));
        }
        if (u.hasDefault && def.type !== "object") {
            notes.push(`default ${plain(u.defaultValue)}`);
        }
        let nested = "";
        if (def.type === "object") {
            nested = ` ${summary(u.inner)}`;
        } else if (def.type === "array" && def.element && shapeOf(unwrap(def.element).inner)) {
            nested = ` [${summary(unwrap(def.element).inner)}]`;
        } else if (def.type === "record" && def.valueType && shapeOf(unwrap(def.valueType).inner)) {
            nested = ` {<name>: ${summary(unwrap(def.valueType).inner)}}`;
        }
        return `${name}${nested}${notes.length > 0 ? ` (${notes.join(", ")})` : ""}`;
    });
    return `{${parts.join(", ")}}`;
}

/** Words folded to lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
    const lines: string[] = [];
    let line = "";
    for (const word of text.split(/\s+/).filter((w) => w !== "")) {
        if (line !== "" && line.length + 1 + word.length > width) {
            lines.push(line);
            line = word;
        } else {
            line = line === "" ? word : `${line} ${word}`;
        }
    }
    if (line !== "") {
        lines.push(line);
    }
    return lines;
}

const WIDTH = 100;

/** What Pulumi.yaml says of a top-level key: its meaning, after its keys for an object or a map. */
function pulumiDescription(key: ConfigKey, doc: KeyDoc): string {
    if (doc.description === undefined) {
        throw new Error(`${key.path.join(".")}: no description; give it one in infra/config.ts`);
    }
    const def = defOf(key.inner);
    if (def.type === "object") {
        return `${summary(key.inner)}: ${doc.description}`;
    }
    if (def.type === "record" && def.valueType && shapeOf(unwrap(def.valueType).inner)) {
        return `Map of node name to ${summary(unwrap(def.valueType).inner)}. ${doc.description}`;
    }
    return doc.description;
}

/** Pulumi's config type for a top-level key, where it has one. */
function pulumiType(schema: z.ZodType): string[] {
    const def = defOf(schema);
    switch (def.type) {
        case "string":
            return ["type: string"];
        case "boolean":
            return ["type: boolean"];
        case "number":
            return [(schema as unknown as z.ZodNumber).isInt ? "type: integer" : "type: number"];
        case "array": {
            const element = def.element ? pulumiType(unwrap(def.element).inner) : [];
            return element.length > 0 ? ["type: array", "items:", ...element.map((l) => `  ${l}`)] : ["type: array"];
        }
        default:
            return [];
    }
}

/**
 * Pulumi.yaml's `config:` block. The CLI treats a declared key without a default as required, so
 * required keys are declared as they are, keys with a default (optional objects: `{}`) with it,
 * and optional keys without a default are left to the README.
 */
export function pulumiConfigBlock(docs: DocLookup = schemaDocs, schema: z.ZodType = configSchema): string {
    const top = configKeys(docs, schema).filter((k) => k.path.length === 1);
    const undeclared = top.filter((k) => k.optional && !k.hasDefault);
    const names = undeclared.map((k) => `${k.path[0]}${k.doc?.secret ? " (secret)" : ""}`);
    const list = names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}` : names.join("");
    const comment =
        "Every key is validated in full by infra/config.ts (one zod schema) before any resource is created; " +
        "this block declares the keys for `pulumi config` and for readers, and is generated from that schema " +
        "(npm run docs:config). The CLI treats a declared key without a default as required, so optional object " +
        `keys default to {} and the optional keys ${list} are documented in README.md's configuration reference ` +
        "rather than declared here.";
    const lines = ["config:", ...wrap(comment, WIDTH - 4).map((l) => `  # ${l}`)];
    for (const key of top) {
        if (key.optional && !key.hasDefault) {
            continue;
        }
        const d = key.doc;
        const name = key.path[0];
        if (d === undefined) {
            throw new Error(`${name}: not documented; give it .meta(doc({...})) in infra/config.ts`);
        }
        lines.push(`  ${name}:`);
        lines.push(...pulumiType(key.inner).map((l) => `    ${l}`));
        if (d.secret) {
            lines.push("    secret: true");
        }
        if (key.hasDefault) {
            lines.push(`    default: ${JSON.stringify(key.defaultValue)}`);
        }
        lines.push("    description: >-", ...wrap(pulumiDescription(key, d), WIDTH - 6).map((l) => `      ${l}`));
    }
    return lines.join("\n");
}

/** Pulumi.yaml with its `config:` block replaced; every other top-level key is kept as it is. */
export function renderPulumiYaml(text: string, docs: DocLookup = schemaDocs): string {
    const lines = text.split("\n");
    const start = lines.indexOf("config:");
    if (start < 0) {
        throw new Error("Pulumi.yaml: no top-level config: key");
    }
    let end = start + 1;
    while (end < lines.length && (lines[end] === "" || /^\s/.test(lines[end]))) {
        end++;
    }
    // Blank lines before the next key (or the final newline) stay outside the block.
    while (end > start + 1 && lines[end - 1] === "") {
        end--;
    }
    return [...lines.slice(0, start), pulumiConfigBlock(docs), ...lines.slice(end)].join("\n");
}

export const ROOT = path.join(__dirname, "..", "..");
export const README = path.join(ROOT, "README.md");
export const PULUMI_YAML = path.join(ROOT, "Pulumi.yaml");

if (require.main === module) {
    for (const [file, render] of [
        [README, renderReadme],
        [PULUMI_YAML, renderPulumiYaml],
    ] as const) {
        const before = readFileSync(file, "utf8");
        const after = render(before);
        if (after !== before) {
            writeFileSync(file, after);
        }
        console.log(`${path.relative(ROOT, file)}: ${after === before ? "up to date" : "rewritten"}`);
    }
}
