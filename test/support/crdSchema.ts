import Ajv, { ValidateFunction } from "ajv";
import { readFileSync } from "fs";
import * as path from "path";
import { parse as parseYaml } from "yaml";

import { ARGOCD_CHART } from "../../components/gitops/argocd";
import { extractChart } from "./chart";
import { referenceFile } from "./reference";

/**
 * Argo CD's CRDs as the pinned chart installs them (its `templates/crds`, from the chart tarball
 * in shared/reference), by the names the tests use.
 */
const CHART_CRD_FILES: Readonly<Record<string, string>> = {
    "application-crd.yaml": "crd-application.yaml",
    "appproject-crd.yaml": "crd-appproject.yaml",
    "applicationset-crd.yaml": "crd-applicationset.yaml",
};

let crdTexts: Map<string, string> | undefined;

/** The CRD's YAML: the chart's template with its Helm directives (metadata only) taken out. */
function crdText(file: string): string {
    if (crdTexts === undefined) {
        const { dir, cleanup } = extractChart(referenceFile("charts", `${ARGOCD_CHART.chart}-${ARGOCD_CHART.version}.tgz`));
        try {
            crdTexts = new Map(
                Object.entries(CHART_CRD_FILES).map(([name, inChart]) => [
                    name,
                    readFileSync(path.join(dir, "templates", "crds", inChart), "utf8")
                        .split("\n")
                        .filter((line) => !/^\s*\{\{.*\}\}\s*$/.test(line))
                        .join("\n"),
                ]),
            );
        } finally {
            cleanup();
        }
    }
    const text = crdTexts.get(file);
    if (text === undefined) {
        throw new Error(`no CRD ${file}; have: ${[...crdTexts.keys()].join(", ")}`);
    }
    return text;
}

/** Kubernetes' schema extensions: known to Ajv as annotations, validated by the API server, not here. */
const KUBERNETES_KEYWORDS = [
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

type Schema = { [key: string]: unknown };

/**
 * Rejects unknown fields the way the API server does with `fieldValidation=Strict`: every object
 * schema that lists properties, has no `additionalProperties` and does not preserve unknown
 * fields gets `additionalProperties: false`. A typo (`syncOption`) then fails instead of being
 * pruned silently.
 */
function strictFields(schema: unknown): unknown {
    if (Array.isArray(schema)) {
        return schema.map(strictFields);
    }
    if (schema === null || typeof schema !== "object") {
        return schema;
    }
    const s = Object.fromEntries(Object.entries(schema as Schema).map(([k, v]) => [k, k === "properties" ? mapValues(v as Schema, strictFields) : strictFields(v)]));
    if (s.properties !== undefined && s.additionalProperties === undefined && s["x-kubernetes-preserve-unknown-fields"] !== true) {
        s.additionalProperties = false;
    }
    return s;
}

function mapValues(o: Schema, f: (v: unknown) => unknown): Schema {
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));
}

/** The `openAPIV3Schema` of a CRD file's version. */
export function crdSchema(file: string, version = "v1alpha1"): Schema {
    const crd = parseYaml(crdText(file));
    const v = (crd.spec.versions as { name: string; schema: { openAPIV3Schema: Schema } }[]).find((x) => x.name === version);
    if (v === undefined) {
        throw new Error(`${file} has no version ${version}`);
    }
    return v.schema.openAPIV3Schema;
}

/** A validator for one CRD's schema, unknown fields refused. */
export function crdValidator(file: string, version = "v1alpha1"): ValidateFunction {
    // int64/date-time formats are Kubernetes' own; types are what is checked here.
    const ajv = new Ajv({ allErrors: true, strict: true, validateFormats: false, keywords: KUBERNETES_KEYWORDS });
    return ajv.compile(strictFields(crdSchema(file, version)) as Schema);
}

/** Ajv's errors as `path message` lines (for assertion messages). */
export function errorsOf(validate: ValidateFunction): string[] {
    return (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}${e.params && "additionalProperty" in e.params ? ` (${String(e.params.additionalProperty)})` : ""}`);
}
