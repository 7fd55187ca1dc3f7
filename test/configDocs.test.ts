import { readFileSync } from "fs";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

import { ALLOWED, KeyDoc } from "../infra/config";
import {
    configKeys,
    DocLookup,
    pulumiConfigBlock,
    PULUMI_YAML,
    README,
    readmeRows,
    readmeTable,
    renderPulumiYaml,
    renderReadme,
    ROOT,
    schemaDocs,
} from "./support/configDocs";

/** Null when equal, else the file and the first line that differs. */
function firstDifference(file: string, actual: string, expected: string): string | null {
    if (actual === expected) {
        return null;
    }
    const a = actual.split("\n");
    const e = expected.split("\n");
    let i = 0;
    while (i < a.length && i < e.length && a[i] === e[i]) {
        i++;
    }
    return (
        `${path.relative(ROOT, file)} differs from what the config schema gives at line ${i + 1} ` +
        `(run npm run docs:config):\n  file:      ${a[i] ?? "(end of file)"}\n  generated: ${e[i] ?? "(end of file)"}`
    );
}

/** The schema's documentation with one key's fields replaced. */
function changed(key: string, change: Partial<KeyDoc>): DocLookup {
    const target = configKeys().find((k) => k.path.join(".") === key);
    if (target === undefined || target.doc === undefined) {
        throw new Error(`no documented key ${key}`);
    }
    const doc = target.doc;
    return (schema) => (schema === target.schema ? { ...doc, ...change } : schemaDocs(schema));
}

describe("generated configuration docs", () => {
    const readme = readFileSync(README, "utf8");
    const pulumiYaml = readFileSync(PULUMI_YAML, "utf8");

    it("README.md's configuration table is what the schema gives", () => {
        expect(firstDifference(README, readme, renderReadme(readme))).toBeNull();
    });

    it("Pulumi.yaml's config block is what the schema gives", () => {
        expect(firstDifference(PULUMI_YAML, pulumiYaml, renderPulumiYaml(pulumiYaml))).toBeNull();
    });

    it("names the file and the first differing line", () => {
        const edited = readme.replace("| `nodes.<n>.sshPort` | integer 1–65535 |", "| `nodes.<n>.sshPort` | integer 1–65536 |");
        const message = firstDifference(README, edited, renderReadme(edited));
        expect(message).toMatch(/^README\.md differs .* at line \d+/);
        expect(message).toContain("file:      | `nodes.<n>.sshPort` | integer 1–65536 |");
        expect(message).toContain("generated: | `nodes.<n>.sshPort` | integer 1–65535 |");
    });

    it("only the table and the config block are generated", () => {
        const start = readme.indexOf("<!-- config-table:start -->");
        const end = readme.indexOf("<!-- config-table:end -->");
        expect(renderReadme(readme).slice(0, start)).toBe(readme.slice(0, start));
        expect(renderReadme(readme).slice(end - readme.length)).toBe(readme.slice(end));
        const doc = parseYaml(pulumiYaml) as Record<string, unknown>;
        const regenerated = parseYaml(renderPulumiYaml(pulumiYaml)) as Record<string, unknown>;
        expect(Object.keys(regenerated)).toEqual(Object.keys(doc));
        for (const key of Object.keys(doc).filter((k) => k !== "config")) {
            expect(regenerated[key]).toEqual(doc[key]);
        }
    });

    it("a changed description or default changes both outputs", () => {
        const cases: [string, Partial<KeyDoc>, string][] = [
            ["fsyncGate", { description: "the disk gate." }, "the disk gate."],
            ["nodes.<n>.sshHostKey", { docDefault: "(asked for)" }, "| (asked for) |"],
            ["etcd.walGateWrites", { description: "Puts of the write load." }, "| `1000` | Puts of the write load. |"],
            ["sshPrivateKey", { description: "A key." }, "A key."],
        ];
        for (const [key, change, expected] of cases) {
            const docs = changed(key, change);
            const both = renderReadme(readme, docs) + renderPulumiYaml(pulumiYaml, docs);
            expect(both).toContain(expected);
            expect(renderReadme(readme, docs) !== readme || renderPulumiYaml(pulumiYaml, docs) !== pulumiYaml).toBe(true);
        }
    });

    it("a default or a range changed on the schema changes the README and Pulumi.yaml", () => {
        const gate = (runs: z.ZodNumber, dflt: number) =>
            z.strictObject({
                gate: z
                    .strictObject({ runs: runs.default(dflt).meta({ description: "Runs." }) })
                    .prefault({})
                    .meta({ description: "the gate.", docRow: false }),
            });
        const base = gate(z.number().int().min(1).max(10), 3);
        expect(readmeTable(schemaDocs, base)).toContain("| `gate.runs` | integer 1–10 | `3` | Runs. |");
        expect(pulumiConfigBlock(schemaDocs, base)).toContain("{runs (default 3)}: the gate.");
        const otherDefault = gate(z.number().int().min(1).max(10), 4);
        expect(readmeTable(schemaDocs, otherDefault)).toContain("| `gate.runs` | integer 1–10 | `4` | Runs. |");
        expect(pulumiConfigBlock(schemaDocs, otherDefault)).toContain("{runs (default 4)}: the gate.");
        const otherRange = gate(z.number().int().min(2).max(20), 3);
        expect(readmeTable(schemaDocs, otherRange)).toContain("| `gate.runs` | integer 2–20 | `3` | Runs. |");
    });

    it("Pulumi.yaml declares the keys the CLI may require, with their defaults and secrecy, and leaves out the optional ones", () => {
        type Declared = { default?: unknown; secret?: boolean; description: string };
        const declared = (parseYaml(pulumiYaml) as { config: Record<string, Declared> }).config;
        const top = configKeys().filter((k) => k.path.length === 1);
        for (const key of top) {
            const name = key.path[0];
            if (key.optional && !key.hasDefault) {
                expect([name, declared[name]]).toEqual([name, undefined]);
                continue;
            }
            expect([name, declared[name]?.default]).toEqual([name, key.hasDefault ? key.defaultValue : undefined]);
            expect([name, declared[name].secret === true]).toEqual([name, key.doc?.secret === true]);
            expect(declared[name].description).toContain(key.doc?.description);
        }
        expect(Object.keys(declared)).toEqual(top.filter((k) => !k.optional || k.hasDefault).map((k) => k.path[0]));
        expect(declared.fsyncGate.description).toContain("maxSecondsPerRun (default 120)");
        expect(declared.sshPrivateKey).toMatchObject({ type: "string", secret: true });
    });

    it("every key of the schema has the text its validation messages give as allowed", () => {
        for (const key of configKeys().filter((k) => !(k.inner instanceof z.ZodUnknown))) {
            const pattern = key.path.map((p) => (p.startsWith("<") ? "*" : p)).join(".");
            expect([pattern, ALLOWED[pattern] !== undefined]).toEqual([pattern, true]);
        }
        expect(ALLOWED[""]).toBe(`the keys ${configKeys().filter((k) => k.path.length === 1).map((k) => k.path[0]).join(", ")}`);
    });

    it("every README row comes from a key's description in the schema", () => {
        const rows = readmeRows();
        const documented = configKeys().filter((k) => k.doc?.description !== undefined && k.doc.docRow !== false);
        expect(rows).toHaveLength(documented.length);
        expect(rows.filter((r) => r.startsWith("| `fsyncGate.maxSecondsPerRun` | integer 10–1800 | `120` |"))).toHaveLength(1);
        expect(rows.filter((r) => r.startsWith("| `nodes.<n>.role` | `control-plane` \\| `worker` | (required) |"))).toHaveLength(1);
    });
});
