/**
 * A Helm chart tarball, read for the tests: its values and templates (to derive which values
 * keys it reads) and `helm template` runs of it with the program's values.
 */
import { spawnSync } from "child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { pathToFileURL } from "url";
import { parse as parseYaml, parseAllDocuments } from "yaml";

import { POST_RENDER_SCRIPT } from "../../components/gitops/argocdValues";
import type { ChartValuesIndex } from "../../components/gitops/chartValues";

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

function isMap(v: unknown): v is Record<string, Json> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Extracts a chart tarball into a temporary folder; returns the chart's folder and a cleanup. */
export function extractChart(tgz: string): { dir: string; cleanup: () => void } {
    const tmp = mkdtempSync(path.join(tmpdir(), "zt-chart-"));
    const r = spawnSync("tar", ["-xzf", tgz, "-C", tmp], { encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0) {
        throw new Error(`tar -xzf ${tgz}: ${r.stderr}`);
    }
    const [top] = readdirSync(tmp);
    return { dir: path.join(tmp, top), cleanup: () => rmSync(tmp, { recursive: true, force: true }) };
}

function allPaths(values: Json, prefix: string[] = []): string[][] {
    if (!isMap(values)) {
        return [];
    }
    return Object.entries(values).flatMap(([k, v]) => [[...prefix, k], ...allPaths(v, [...prefix, k])]);
}

function files(dir: string): string[] {
    return readdirSync(dir).flatMap((f) => {
        const p = path.join(dir, f);
        return statSync(p).isDirectory() ? files(p) : [p];
    });
}

const SEGMENT = String.raw`\.[A-Za-z_][A-Za-z0-9_]*`;
const VALUES_REF = new RegExp(String.raw`(\$?\.Values(?:${SEGMENT})+)((?:\s+"[^"]+")*)`, "g");
const INDEX_REF = /index\s+\(?\s*(\$?\.Values(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s+((?:"[^"]+"\s*)+)/g;
/** Template forms that consume a whole map or list. */
const WHOLE = [
    new RegExp(String.raw`toYaml\s+\(?\s*\$?\.Values((?:${SEGMENT})+)`, "g"),
    new RegExp(String.raw`range\s+[^}]*?:=\s*\$?\.Values((?:${SEGMENT})+)`, "g"),
    new RegExp(String.raw`with\s+\$?\.Values((?:${SEGMENT})+)\s*\}\}[\s\S]{0,200}?toYaml\s+\.`, "g"),
    new RegExp(String.raw`(?:concat|deepCopy|merge|mergeOverwrite|omit)\s+[^}]*?\$?\.Values((?:${SEGMENT})+)`, "g"),
];
/** `toYaml ( … )`: every value inside the parentheses is consumed whole. */
const TO_YAML_EXPR = /toYaml\s+\(([^()]*)\)/g;

function segments(ref: string): string[] {
    return ref.replace(/^\$?\.Values\.?/, "").split(".").filter((s) => s !== "");
}

/** Derives what a chart (and its subcharts, under their names) reads. */
export function indexChart(chartDir: string): ChartValuesIndex {
    const chartYaml = parseYaml(readFileSync(path.join(chartDir, "Chart.yaml"), "utf8")) as { name: string; version: string };
    const defaults = new Set<string>();
    const referenced = new Set<string>();
    const wholeMaps = new Set<string>();
    const scan = (dir: string, prefix: string[]): void => {
        const values = parseYaml(readFileSync(path.join(dir, "values.yaml"), "utf8")) as Json;
        for (const p of allPaths(values)) {
            defaults.add(JSON.stringify([...prefix, ...p]));
        }
        const templates = path.join(dir, "templates");
        for (const file of files(templates)) {
            const text = readFileSync(file, "utf8");
            for (const m of text.matchAll(VALUES_REF)) {
                referenced.add(JSON.stringify([...prefix, ...segments(m[1])]));
            }
            for (const m of text.matchAll(INDEX_REF)) {
                const keys = [...m[2].matchAll(/"([^"]+)"/g)].map((k) => k[1]);
                referenced.add(JSON.stringify([...prefix, ...segments(m[1]), ...keys]));
            }
            for (const m of text.matchAll(TO_YAML_EXPR)) {
                for (const ref of m[1].matchAll(VALUES_REF)) {
                    wholeMaps.add(JSON.stringify([...prefix, ...segments(ref[1])]));
                }
            }
            for (const re of WHOLE) {
                for (const m of text.matchAll(re)) {
                    wholeMaps.add(JSON.stringify([...prefix, ...segments(m[1])]));
                }
            }
        }
        const sub = path.join(dir, "charts");
        for (const name of statSafe(sub) ? readdirSync(sub) : []) {
            if (statSync(path.join(sub, name)).isDirectory()) {
                scan(path.join(sub, name), [...prefix, name]);
            }
        }
    };
    scan(chartDir, []);
    const sorted = (s: Set<string>) => [...s].sort();
    return { chart: chartYaml.name, version: chartYaml.version, defaults: sorted(defaults), referenced: sorted(referenced), wholeMaps: sorted(wholeMaps) };
}

function statSafe(p: string): boolean {
    try {
        return statSync(p).isDirectory();
    } catch {
        return false;
    }
}

/** The helm binary of the toolchain (`npm run test:k8s` builds it and sets ZT_HELM). */
export function helmBinary(): string {
    const helm = process.env.ZT_HELM;
    if (helm === undefined || helm === "") {
        throw new Error("ZT_HELM is not set: run these tests with `npm run test:k8s`, which builds helm from its Go module");
    }
    return helm;
}

export interface RenderOptions {
    readonly release: string;
    readonly namespace: string;
    readonly values: Record<string, unknown>;
    /** Kubernetes version the chart is rendered for (its kubeVersion constraint is checked). */
    readonly kubeVersion: string;
    /** A post-renderer: command and arguments, as `helm.v4.Chart`'s `postRenderer`. */
    readonly postRenderer?: { command: string; args: readonly string[] };
    /** Leave hook manifests out, as `helm.v4.Chart` deploys the chart. Defaults to true. */
    readonly noHooks?: boolean;
}

/** `helm template` of a chart; returns the rendered objects. */
export function helmTemplate(chart: string, opts: RenderOptions): Record<string, any>[] {
    const tmp = mkdtempSync(path.join(tmpdir(), "zt-helm-"));
    try {
        const valuesFile = path.join(tmp, "values.json");
        writeFileSync(valuesFile, JSON.stringify(opts.values));
        const args = ["template", opts.release, chart, "--namespace", opts.namespace, "--kube-version", opts.kubeVersion, "-f", valuesFile];
        if (opts.noHooks ?? true) {
            args.push("--no-hooks");
        }
        if (opts.postRenderer !== undefined) {
            args.push("--post-renderer", opts.postRenderer.command, ...opts.postRenderer.args.flatMap((a) => ["--post-renderer-args", a]));
        }
        const r = spawnSync(helmBinary(), args, { encoding: "utf8", timeout: 120_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, HELM_CACHE_HOME: tmp, HELM_CONFIG_HOME: tmp, HELM_DATA_HOME: tmp } });
        if (r.status !== 0) {
            throw new Error(`helm ${args.join(" ")}: exit ${r.status}: ${r.stderr}`);
        }
        // Read as Kubernetes reads it (YAML 1.1).
        return parseAllDocuments(r.stdout, { version: "1.1" })
            .map((d) => d.toJSON() as Record<string, any> | null)
            .filter((d): d is Record<string, any> => d !== null && typeof d === "object");
    } finally {
        rmSync(tmp, { recursive: true, force: true });
    }
}

/**
 * The pod spec of each object (undefined for an object that runs no pods), found by the
 * post-renderer's own `podSpecOf` (components/gitops/post-render.mjs, an ES module, run by node),
 * so the tests check every container the post-renderer reaches against what it did.
 */
export function podSpecsOf(objects: readonly Record<string, any>[]): (Record<string, any> | undefined)[] {
    const script =
        `import { podSpecOf } from ${JSON.stringify(pathToFileURL(POST_RENDER_SCRIPT).href)};\n` +
        'import { readFileSync } from "node:fs";\n' +
        'process.stdout.write(JSON.stringify(JSON.parse(readFileSync(0, "utf8")).map((o) => podSpecOf(o) ?? null)));';
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        input: JSON.stringify(objects),
        encoding: "utf8",
        timeout: 60_000,
        maxBuffer: 64 * 1024 * 1024,
    });
    if (r.status !== 0) {
        throw new Error(`the post-renderer's podSpecOf: exit ${r.status}: ${r.stderr}`);
    }
    return (JSON.parse(r.stdout) as (Record<string, any> | null)[]).map((spec) => spec ?? undefined);
}

/** Every container of the rendered workloads (init and ephemeral included), with where it is. */
export function containersOf(objects: readonly Record<string, any>[]): { object: string; list: string; container: Record<string, any> }[] {
    const out: { object: string; list: string; container: Record<string, any> }[] = [];
    const specs = podSpecsOf(objects);
    for (const [i, o] of objects.entries()) {
        const spec = specs[i];
        for (const list of ["initContainers", "containers", "ephemeralContainers"]) {
            for (const c of (spec?.[list] ?? []) as Record<string, any>[]) {
                out.push({ object: `${o.kind}/${o.metadata.name}`, list, container: c });
            }
        }
    }
    return out;
}

/**
 * `ts-node test/support/chart.ts <chart.tgz> <out.json>`: writes the values index of a chart (what
 * components/gitops/charts/*.values-index.json hold; the tests compare them with the tarball).
 */
if (require.main === module) {
    const [tgz, out] = process.argv.slice(2);
    if (tgz === undefined || out === undefined) {
        console.error("usage: chart.ts <chart.tgz> <out.json>");
        process.exit(2);
    }
    const { dir, cleanup } = extractChart(tgz);
    try {
        writeFileSync(out, `${JSON.stringify(indexChart(dir), null, 1)}\n`);
    } finally {
        cleanup();
    }
}
