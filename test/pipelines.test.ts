import Ajv, { ValidateFunction } from "ajv";
import * as fs from "fs";
import * as path from "path";
import { parseDocument } from "yaml";
import { referenceFile } from "./support/reference";

/**
 * The pipeline files the project ships, checked against GitLab's own JSON schema for
 * .gitlab-ci.yml (shared/reference/gitlab-ci-schema.json), and their rules evaluated for the
 * pipelines that matter: which jobs a merge request, a push to main or a protected branch, and
 * a schedule get.
 */

const ROOT = path.join(__dirname, "..");
const SCHEMA_PATH = referenceFile("gitlab-ci-schema.json");
const PIPELINES = {
    repository: path.join(ROOT, ".gitlab-ci.yml"),
    app: path.join(ROOT, "stacks", "templates", "app.gitlab-ci.yml"),
};
const UPDATE_SCRIPT = path.join(ROOT, "stacks", "templates", "update-manifests.sh");

/** Keys of a .gitlab-ci.yml that are not jobs. */
const GLOBAL_KEYS = new Set(["default", "include", "stages", "variables", "workflow", "image", "services", "cache", "before_script", "after_script", "spec"]);

let validate: ValidateFunction;
beforeAll(() => {
    const schema = JSON.parse(fs.readFileSync(SCHEMA_PATH, "utf8"));
    expect(schema.$schema).toBe("http://json-schema.org/draft-07/schema#");
    // The schema is written for editors: it uses keywords Ajv's strict mode rejects (e.g.
    // markdownDescription), and formats from ajv-formats, which is not installed; these do
    // the same job for the formats it names.
    const ajv = new Ajv({ strict: false, allErrors: true });
    ajv.addFormat("uri", (s: string) => /^[a-z][a-z0-9+.-]*:\S*$/i.test(s));
    ajv.addFormat("uri-reference", (s: string) => !/\s/.test(s));
    ajv.addFormat("date-time", (s: string) => !Number.isNaN(Date.parse(s)) && /^\d{4}-\d{2}-\d{2}T/.test(s));
    ajv.addFormat("regex", (s: string) => {
        try {
            new RegExp(s);
            return true;
        } catch {
            return false;
        }
    });
    validate = ajv.compile(schema);
});

function load(file: string): Record<string, any> {
    const doc = parseDocument(fs.readFileSync(file, "utf8"));
    expect(doc.errors).toEqual([]);
    expect(doc.warnings).toEqual([]);
    return doc.toJS() as Record<string, any>;
}

function schemaErrors(pipeline: unknown): string[] {
    if (validate(pipeline)) return [];
    return (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`);
}

describe.each(Object.entries(PIPELINES))("%s pipeline", (_name, file) => {
    test("parses as YAML and validates against GitLab's CI schema", () => {
        expect(schemaErrors(load(file))).toEqual([]);
    });

    const firstJob = (p: Record<string, any>): string => Object.keys(p).find((k) => !GLOBAL_KEYS.has(k) && !k.startsWith("."))!;
    test.each<[string, (p: Record<string, any>) => void, string]>([
        ["a job with when: sometimes", (p) => (p[firstJob(p)].when = "sometimes"), "/when must be equal to one of the allowed values"],
        ["a rule with when: sometimes", (p) => (p[firstJob(p)].rules = [{ if: "$CI", when: "sometimes" }]), "/rules/0/when must be equal to one of the allowed values"],
        ["a job with script: 42", (p) => (p[firstJob(p)].script = 42), "/script must be string"],
        ["a job with an unknown keyword", (p) => (p[firstJob(p)].scirpt = ["true"]), "must NOT have additional properties"],
        ["stages that are not a list", (p) => (p.stages = "test"), "/stages must be array"],
    ])("is rejected with %s", (_what, mutate, message) => {
        const pipeline = load(file);
        mutate(pipeline);
        const errors = schemaErrors(pipeline);
        expect(errors.length).toBeGreaterThan(0);
        expect(errors.join("\n")).toContain(message);
    });

    test("every image is pinned to an exact version, and none is an archived builder", () => {
        const images = imagesOf(load(file));
        expect(images.length).toBeGreaterThan(0);
        for (const image of images) expect({ image, problem: imageProblem(image) }).toEqual({ image, problem: undefined });
    });

    test("no script line traces commands or prints GITOPS_TOKEN", () => {
        for (const [name, job] of Object.entries(load(file))) {
            if (GLOBAL_KEYS.has(name) && name !== "default") continue;
            for (const line of scriptLines(job)) {
                expect(line).not.toMatch(/set\s+-[a-z]*x|set\s+-o\s+xtrace/);
                expect(line).not.toMatch(/\b(echo|printf)\b[^\n]*GITOPS_TOKEN/);
                expect(line).not.toMatch(/:\/\/[^\s]*\$\{?GITOPS_TOKEN/);
            }
        }
    });
});

test("every pipeline file in the repository is one of the checked ones", () => {
    const found: string[] = [];
    const walk = (dir: string) => {
        for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
            if (entry.isDirectory() && !["node_modules", ".git", ".lab"].includes(entry.name)) walk(path.join(dir, entry.name));
            else if (entry.isFile() && /(^|\.)gitlab-ci\.ya?ml$/.test(entry.name)) found.push(path.join(dir, entry.name));
        }
    };
    walk(ROOT);
    expect(found.sort()).toEqual(Object.values(PIPELINES).sort());
});

// ---------------------------------------------------------------------------------------------
// images

/**
 * Builder images whose upstream is archived (no security fixes): never in a shipped pipeline.
 * gcr.io/kaniko-project/executor: GoogleContainerTools/kaniko, archived June 2025.
 */
const ARCHIVED_IMAGES = ["gcr.io/kaniko-project/executor", "gcr.io/kaniko-project/warmer"];

/** `name:tag` with an exact version tag (`1.2.3`, `v0.33.0-rootless`), optionally `@sha256:` a checked digest. */
const EXACT_IMAGE = /^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:\d+)?(\/[a-z0-9._-]+)*:v?\d+\.\d+\.\d+(-[a-z0-9]+)*(@sha256:[0-9a-f]{64})?$/;

/** Why an image reference may not ship, or undefined. */
function imageProblem(image: string): string | undefined {
    const repository = image.replace(/@.*$/, "").replace(/:[^/:]*$/, "");
    if (ARCHIVED_IMAGES.includes(repository)) return `${repository} is archived upstream`;
    if (!EXACT_IMAGE.test(image)) return "not pinned to an exact version tag (x.y.z)";
    return undefined;
}

/** Every image of a pipeline: default, global, every job's (hidden templates too) and every service. */
function imagesOf(p: Record<string, any>): string[] {
    const name = (i: unknown) => (typeof i === "string" ? i : (i as { name: string }).name);
    const holders = [p.default ?? {}, p, ...Object.entries(p).filter(([k]) => !GLOBAL_KEYS.has(k)).map(([, j]) => j as Record<string, any>)];
    return holders.flatMap((h) => [...(h.image !== undefined ? [name(h.image)] : []), ...((h.services as unknown[] | undefined) ?? []).map(name)]);
}

describe("the image check (itself)", () => {
    test.each([
        ["gcr.io/kaniko-project/executor:v1.23.2-debug", /archived/],
        ["gcr.io/kaniko-project/executor:v1.23.2@sha256:" + "a".repeat(64), /archived/],
        ["moby/buildkit:rootless", /exact version/],
        ["moby/buildkit:v0.33-rootless", /exact version/],
        ["node:latest", /exact version/],
        ["node:20", /exact version/],
        ["node:20-bookworm", /exact version/],
        ["node", /exact version/],
        ["registry.example.com:5000/team/node:20.20", /exact version/],
    ])("refuses %s", (image, problem) => {
        expect(imageProblem(image)).toMatch(problem);
    });
    test.each(["moby/buildkit:v0.33.0-rootless", "node:20.20.2-bookworm", "registry.example.com:5000/team/node:20.20.2", `node:20.20.2-bookworm@sha256:${"0".repeat(64)}`])("accepts %s", (image) => {
        expect(imageProblem(image)).toBeUndefined();
    });
    test("finds images in default, jobs, hidden jobs and services", () => {
        const p = { default: { image: "a:1.0.0" }, ".t": { image: { name: "b:1.0.0" } }, job: { services: ["c:1.0.0", { name: "d:1.0.0" }], script: ["x"] } };
        expect(imagesOf(p).sort()).toEqual(["a:1.0.0", "b:1.0.0", "c:1.0.0", "d:1.0.0"]);
    });
});

// ---------------------------------------------------------------------------------------------
// rules, evaluated

type Vars = Record<string, string>;

/**
 * GitLab's `rules:if` for the forms these files use: `$A`, `$A == "x"`, `$A != "x"`,
 * `$A == $B`, joined by `&&` or `||` (&& binds tighter), no parentheses. Anything else throws,
 * so an expression this does not understand fails the test rather than passing it.
 */
function evalIf(expr: string, vars: Vars): boolean {
    const value = (v: string): string | undefined => {
        const m = /^\$(\w+)$/.exec(v);
        if (m) return vars[m[1]] === "" ? undefined : vars[m[1]];
        const s = /^"([^"]*)"$/.exec(v);
        if (s) return s[1];
        throw new Error(`rules:if operand not understood: ${v} in ${expr}`);
    };
    const term = (t: string): boolean => {
        const cmp = /^(\S+)\s*(==|!=)\s*(\S+)$/.exec(t.trim());
        if (cmp) {
            const equal = (value(cmp[1]) ?? null) === (value(cmp[3]) ?? null);
            return cmp[2] === "==" ? equal : !equal;
        }
        return value(t.trim()) !== undefined;
    };
    if (/[()]/.test(expr)) throw new Error(`parentheses not supported: ${expr}`);
    return expr.split("||").some((alt) => alt.split("&&").every(term));
}

/** The `when` a rules list gives (first matching rule), or undefined when no rule matches. */
function rulesWhen(rules: any[] | undefined, vars: Vars): string | undefined {
    if (rules === undefined) return "on_success";
    for (const rule of rules) {
        expect(Object.keys(rule).every((k) => ["if", "when"].includes(k))).toBe(true);
        if (rule.if === undefined || evalIf(rule.if, vars)) return rule.when ?? "on_success";
    }
    return undefined;
}

function resolveExtends(p: Record<string, any>, job: Record<string, any>): Record<string, any> {
    const bases = job.extends === undefined ? [] : [job.extends].flat();
    let merged: Record<string, any> = {};
    for (const base of bases) merged = { ...merged, ...resolveExtends(p, p[base]) };
    const own = { ...job };
    delete own.extends;
    return { ...merged, ...own };
}

function jobs(p: Record<string, any>): [string, Record<string, any>][] {
    return Object.entries(p)
        .filter(([k]) => !GLOBAL_KEYS.has(k) && !k.startsWith("."))
        .map(([k, j]) => [k, resolveExtends(p, j)]);
}

function scriptLines(job: Record<string, any>): string[] {
    return ["before_script", "script", "after_script"].flatMap((k) => [job[k] ?? []].flat(3)).map(String);
}

/** Jobs of a pipeline for `vars`, with their `when`; empty when workflow:rules create no pipeline. */
function pipelineFor(p: Record<string, any>, vars: Vars): Record<string, string> {
    const out: Record<string, string> = {};
    const wf = rulesWhen(p.workflow?.rules, vars);
    if (wf === undefined || wf === "never") return out;
    for (const [name, job] of jobs(p)) {
        const when = rulesWhen(job.rules, vars);
        if (when !== undefined && when !== "never") out[name] = when;
    }
    return out;
}

const CONTEXTS: Record<string, Vars> = {
    "merge request": { CI_PIPELINE_SOURCE: "merge_request_event", CI_MERGE_REQUEST_IID: "7", CI_COMMIT_REF_NAME: "feature", CI_COMMIT_REF_PROTECTED: "false", CI_DEFAULT_BRANCH: "main" },
    "merge request from a protected branch": { CI_PIPELINE_SOURCE: "merge_request_event", CI_MERGE_REQUEST_IID: "8", CI_COMMIT_REF_NAME: "release/1", CI_COMMIT_REF_PROTECTED: "true", CI_DEFAULT_BRANCH: "main" },
    "push to main": { CI_PIPELINE_SOURCE: "push", CI_COMMIT_BRANCH: "main", CI_COMMIT_REF_NAME: "main", CI_COMMIT_REF_PROTECTED: "true", CI_DEFAULT_BRANCH: "main" },
    "push to a protected release branch": { CI_PIPELINE_SOURCE: "push", CI_COMMIT_BRANCH: "release/1", CI_COMMIT_REF_NAME: "release/1", CI_COMMIT_REF_PROTECTED: "true", CI_DEFAULT_BRANCH: "main" },
    "push to an unprotected branch": { CI_PIPELINE_SOURCE: "push", CI_COMMIT_BRANCH: "feature", CI_COMMIT_REF_NAME: "feature", CI_COMMIT_REF_PROTECTED: "false", CI_DEFAULT_BRANCH: "main" },
    "push to an unprotected branch with an open merge request": { CI_PIPELINE_SOURCE: "push", CI_COMMIT_BRANCH: "feature", CI_COMMIT_REF_NAME: "feature", CI_COMMIT_REF_PROTECTED: "false", CI_OPEN_MERGE_REQUESTS: "shop/app!7", CI_DEFAULT_BRANCH: "main" },
    "protected tag": { CI_PIPELINE_SOURCE: "push", CI_COMMIT_TAG: "v1.0.0", CI_COMMIT_REF_NAME: "v1.0.0", CI_COMMIT_REF_PROTECTED: "true", CI_DEFAULT_BRANCH: "main" },
    "schedule on main": { CI_PIPELINE_SOURCE: "schedule", CI_COMMIT_BRANCH: "main", CI_COMMIT_REF_NAME: "main", CI_COMMIT_REF_PROTECTED: "true", CI_DEFAULT_BRANCH: "main" },
};

describe("rules:if evaluation (the checker itself)", () => {
    test.each([
        ['$A == "x"', { A: "x" }, true],
        ['$A == "x"', { A: "y" }, false],
        ['$A != "x"', {}, true],
        ["$A == $B", { A: "m", B: "m" }, true],
        ["$A && $B", { A: "1" }, false],
        ["$A || $B", { B: "1" }, true],
        ['$A && $B == "1" || $C', { C: "c" }, true],
    ])("%s with %j is %s", (expr, vars, expected) => {
        expect(evalIf(expr, vars as Vars)).toBe(expected);
    });
    test("an expression it does not understand throws", () => {
        expect(() => evalIf('$A =~ /x/', {})).toThrow(/not understood/);
        expect(() => evalIf('($A)', {})).toThrow(/parentheses/);
    });
});

describe("app template: which jobs run", () => {
    const p = () => load(PIPELINES.app);
    test.each<[string, Record<string, string>]>([
        ["merge request", { test: "on_success" }],
        ["merge request from a protected branch", { test: "on_success" }],
        ["push to main", { test: "on_success", build: "on_success", "update-manifests": "on_success" }],
        ["push to a protected release branch", { test: "on_success", build: "on_success", "update-manifests": "on_success" }],
        ["push to an unprotected branch", {}],
        ["push to an unprotected branch with an open merge request", {}],
        ["protected tag", {}],
    ])("%s", (context, expected) => {
        expect(pipelineFor(p(), CONTEXTS[context])).toEqual(expected);
    });

    test("update-manifests only on protected branches: its rule requires CI_COMMIT_REF_PROTECTED", () => {
        const job = p()["update-manifests"];
        expect(job.rules).toEqual([{ if: '$CI_COMMIT_BRANCH && $CI_COMMIT_REF_PROTECTED == "true"' }]);
        expect(p().build.rules).toEqual(job.rules);
    });

    test("build: BuildKit rootless, pinned, daemonless, unprivileged, pushes the commit's image", () => {
        const build = p().build;
        expect(build.stage).toBe("build");
        expect(build.image.name).toMatch(/^moby\/buildkit:v\d+\.\d+\.\d+-rootless$/);
        expect(build.image.entrypoint).toEqual([""]);
        expect(build.variables.BUILDKITD_FLAGS).toBe("--oci-worker-no-process-sandbox");
        expect(build.services).toBeUndefined(); // no Docker-in-Docker
        const lines = scriptLines(build).join("\n");
        expect(lines).toMatch(/^buildctl-daemonless\.sh build --frontend dockerfile\.v0 /m);
        expect(lines).toContain('--output type=image,name="$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA",push=true');
        expect(lines).toContain('--opt label:org.opencontainers.image.revision="$CI_COMMIT_SHA"');
        expect(lines).toContain('> "$HOME/.docker/config.json"');
        expect(lines).not.toMatch(/echo\s+"?\$CI_REGISTRY_PASSWORD/);
    });

    test("update-manifests runs the shipped script, one per manifest file at a time, never interrupted", () => {
        const job = p()["update-manifests"];
        expect(job.stage).toBe("update-manifests");
        expect(job.needs).toEqual(["build"]);
        expect(job.resource_group).toContain("$MANIFEST_FILE");
        expect(job.interruptible).toBe(false);
        expect(job.variables.IMAGE_TAG).toBe("$CI_COMMIT_SHA");
        expect(scriptLines(job)).toContain('bash "$ZEROTOUCH_TOOLS_DIR/update-manifests.sh"');
        expect(scriptLines(job).join("\n")).toContain("yaml@2.9.1");
        expect(p().stages).toEqual(["test", "build", "update-manifests"]);
        for (const v of ["MANIFESTS_REPO", "MANIFEST_FILE", "IMAGE_KEY"]) expect(p().variables[v].description).toBeTruthy();
        expect(p().variables.GITOPS_TOKEN).toBeUndefined(); // a masked, protected project variable, never in the file
    });

    test("update-manifests.sh never traces", () => {
        const code = fs.readFileSync(UPDATE_SCRIPT, "utf8").split("\n").filter((l) => !l.trimStart().startsWith("#"));
        expect(code.join("\n")).not.toMatch(/set\s+-[a-z]*x|set\s+-o\s+xtrace/);
        expect(code[0] ?? "").toBe("set -euo pipefail");
    });
});

describe("repository pipeline: which jobs run", () => {
    const p = () => load(PIPELINES.repository);
    test.each<[string, Record<string, string>]>([
        ["merge request", { lint: "on_success", test: "on_success", preview: "on_success" }],
        ["push to main", { lint: "on_success", test: "on_success", deploy: "manual", "verify-exposure": "on_success" }],
        ["schedule on main", { drift: "on_success", "verify-exposure": "on_success" }],
        ["push to an unprotected branch", {}],
        ["push to a protected release branch", {}],
    ])("%s", (context, expected) => {
        expect(pipelineFor(p(), CONTEXTS[context])).toEqual(expected);
    });

    test("lint and test run npm ci, npm run lint and npm test", () => {
        const lint = jobs(p()).find(([n]) => n === "lint")![1];
        const test = jobs(p()).find(([n]) => n === "test")![1];
        expect(scriptLines(lint)).toEqual(expect.arrayContaining([expect.stringContaining("npm ci"), "npm run lint"]));
        expect(scriptLines(test)).toEqual(expect.arrayContaining([expect.stringContaining("npm ci"), "npm test"]));
    });

    test("preview on merge requests runs the policy pack", () => {
        const preview = jobs(p()).find(([n]) => n === "preview")![1];
        expect(preview.script.join("\n")).toMatch(/^pulumi preview --stack prod --policy-pack policy --policy-pack-config policy\/config\.eea\.json\b/m);
        expect(preview.allow_failure).toBeUndefined();
    });

    test("deploy is manual, on main only, in resource group production", () => {
        const deploy = jobs(p()).find(([n]) => n === "deploy")![1];
        expect(deploy.resource_group).toBe("production");
        expect(deploy.script.join("\n")).toMatch(/^pulumi up --stack prod --yes\b/m);
        expect(deploy.interruptible).toBe(false);
        expect(deploy.rules.at(-1)).toEqual({ if: "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", when: "manual" });
    });

    test("drift runs only on schedules and fails on any change", () => {
        const drift = jobs(p()).find(([n]) => n === "drift")![1];
        expect(drift.rules).toEqual([{ if: '$CI_PIPELINE_SOURCE == "schedule"' }]);
        expect(drift.script).toContain("pulumi preview --refresh --expect-no-changes --stack prod");
        expect(drift.needs).toEqual([]);
    });

    test("verify-exposure runs after deploy (and alone on schedules), from outside the VPN, with nmap, on the stack's outputs", () => {
        const job = jobs(p()).find(([n]) => n === "verify-exposure")![1];
        const stages: string[] = p().stages;
        expect(stages.indexOf(job.stage)).toBeGreaterThan(stages.indexOf("deploy"));
        expect(job.needs).toEqual([{ job: "deploy", optional: true }]);
        expect(job.resource_group).toBe("production");
        expect(job.variables.EXPOSURE_FROM).toBe("internet");
        const lines = scriptLines(job);
        expect(lines).toContain("pulumi stack output platform --json --stack prod > exposure-outputs.json");
        expect(lines.join("\n")).toMatch(/apt-get install [^\n]*\bnmap\b/);
        expect(lines).toContain(
            'npx ts-node --transpile-only components/firewall/verify-exposure.ts --outputs exposure-outputs.json --from "$EXPOSURE_FROM" --xml-out exposure-nmap.xml',
        );
        expect(fs.existsSync(path.join(ROOT, "components", "firewall", "verify-exposure.ts"))).toBe(true);
        expect(job.artifacts).toMatchObject({ when: "always", paths: ["exposure-nmap.xml"] });
        expect(job.allow_failure).toBeUndefined();
    });

    test("the Pulumi CLI is pinned to the SDK's release and checked by sha256", () => {
        const lock = JSON.parse(fs.readFileSync(path.join(ROOT, "package-lock.json"), "utf8"));
        expect(p().variables.PULUMI_VERSION).toBe(lock.packages["node_modules/@pulumi/pulumi"].version);
        const install = scriptLines(p()[".pulumi"]).join("\n");
        expect(install).toContain("sha256sum -c -");
        expect(install).not.toMatch(/curl[^\n]*\|\s*(ba)?sh/);
    });
});
