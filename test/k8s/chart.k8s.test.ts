/**
 * The argo-cd chart the program pins, rendered by a real helm (built from its Go module) with the
 * values the program builds, for each sizing tier: what the chart really reads and renders, not
 * our reading of its documentation.
 *
 * - the committed values index (what the override guard and the residency policy use) is the one
 *   derived from the chart tarball, and no key the program sets is one the chart ignores;
 * - every container of every workload the program deploys (init containers and Jobs included)
 *   has DATA_RESIDENCY_MODE=strict_eea, requests and limits, and an image from the allowed
 *   registries; without the post-renderer only the containers no values key reaches lack it;
 * - every Secret and ConfigMap a rendered workload needs is among what is deployed without hooks
 *   (helm.v4.Chart runs no hooks) or made by the program, and Redis' password Secret is the
 *   program's; with the chart's hook Job turned back on and no Secret of the program's, the check
 *   fails.
 */
import { readFileSync } from "fs";
import * as path from "path";

import { ARGOCD_CHART, ARGOCD_RELEASE, argoCdValuesIndex, argoCdPostRenderer, argoCdValues, ArgoCdValuesSpec, REDIS_SECRET } from "../../components/gitops/argocd";
import { formatKeyPath, unreadValues } from "../../components/gitops/chartValues";
import { prodStack, runProgram } from "../support/program";
import { containersOf, extractChart, helmTemplate, indexChart, podSpecsOf } from "../support/chart";
import { referenceFile } from "../support/reference";

const CHART = referenceFile("charts", `${ARGOCD_CHART.chart}-${ARGOCD_CHART.version}.tgz`);
/** The pinned k3s' Kubernetes minor. */
const KUBE_VERSION = "v1.36.4";
const NAMESPACE = "argocd";
const RESIDENCY = { name: "DATA_RESIDENCY_MODE", value: "strict_eea" };
/** The registries the EEA policy config allows (policy/config.eea.json). */
const ALLOWED_REGISTRIES: string[] = (
    JSON.parse(readFileSync(path.join(__dirname, "..", "..", "policy", "config.eea.json"), "utf8")) as { "image-registries-allowed": { allowedRegistries: string[] } }
)["image-registries-allowed"].allowedRegistries;
/** What the program deploys next to the chart that workloads refer to (components/gitops/argocd.ts). */
const PROGRAM_OBJECTS = [`Secret/${REDIS_SECRET.name}`, "Secret/manifests-repository"];
/** Containers no values key of the chart reaches: they get the variable from the post-renderer only. */
const POST_RENDERED_ONLY = ["Deployment/argocd-repo-server initContainers copyutil", "Deployment/argocd-dex-server initContainers copyutil"];

const SPEC: ArgoCdValuesSpec = {
    hostname: "argocd.example.com",
    sso: { provider: "gitlab", issuer: "https://gitlab.example.com", clientId: "argocd" },
    breakGlassGroup: "platform/argocd-breakglass",
    extraPolicyLines: [],
    reconciliationSeconds: 180,
    nodeCount: 3,
    clusters: 1,
};
/** One node count per sizing tier (small, medium, large; GitLab sign-on through Dex), and OIDC sign-on without Dex. */
const VARIANTS: [string, ArgoCdValuesSpec][] = [
    ["small (1 node)", { ...SPEC, nodeCount: 1 }],
    ["medium (5 nodes)", { ...SPEC, nodeCount: 5 }],
    ["large (20 nodes)", { ...SPEC, nodeCount: 20 }],
    ["medium, OIDC sign-on (no Dex)", { ...SPEC, nodeCount: 5, sso: { provider: "oidc", issuer: "https://id.example.eu/realms/ops", clientId: "argocd" } }],
];

const render = (values: Record<string, unknown>, postRender: boolean): Record<string, any>[] =>
    helmTemplate(CHART, {
        release: ARGOCD_RELEASE,
        namespace: NAMESPACE,
        values,
        kubeVersion: KUBE_VERSION,
        ...(postRender ? { postRenderer: argoCdPostRenderer() } : {}),
    });

const where = (c: { object: string; list: string; container: Record<string, any> }): string => `${c.object} ${c.list} ${c.container.name}`;

/** Secrets and ConfigMaps the workloads need (`optional` not true), as `Kind/name` with who needs them. */
function requiredRefs(objects: readonly Record<string, any>[]): { ref: string; by: string; optional: boolean }[] {
    const out: { ref: string; by: string; optional: boolean }[] = [];
    const specs = podSpecsOf(objects);
    for (const [i, o] of objects.entries()) {
        const spec = specs[i];
        if (spec === undefined) {
            continue;
        }
        const by = `${o.kind}/${o.metadata.name}`;
        const add = (kind: string, name: string | undefined, optional: boolean | undefined) => {
            if (name !== undefined) {
                out.push({ ref: `${kind}/${name}`, by, optional: optional === true });
            }
        };
        for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...(spec.ephemeralContainers ?? [])]) {
            for (const e of c.env ?? []) {
                add("Secret", e.valueFrom?.secretKeyRef?.name, e.valueFrom?.secretKeyRef?.optional);
                add("ConfigMap", e.valueFrom?.configMapKeyRef?.name, e.valueFrom?.configMapKeyRef?.optional);
            }
            for (const e of c.envFrom ?? []) {
                add("Secret", e.secretRef?.name, e.secretRef?.optional);
                add("ConfigMap", e.configMapRef?.name, e.configMapRef?.optional);
            }
        }
        for (const v of spec.volumes ?? []) {
            add("Secret", v.secret?.secretName, v.secret?.optional);
            add("ConfigMap", v.configMap?.name, v.configMap?.optional);
            for (const s of v.projected?.sources ?? []) {
                add("Secret", s.secret?.name, s.secret?.optional);
                add("ConfigMap", s.configMap?.name, s.configMap?.optional);
            }
        }
    }
    return out;
}

/** The references no deployed object satisfies. */
function missingRefs(objects: readonly Record<string, any>[], programObjects: readonly string[]): string[] {
    const deployed = new Set([...objects.map((o) => `${o.kind}/${o.metadata?.name}`), ...programObjects]);
    return [...new Set(requiredRefs(objects).filter((r) => !r.optional && !deployed.has(r.ref)).map((r) => `${r.ref} (needed by ${r.by})`))].sort();
}

describe(`the argo-cd chart ${ARGOCD_CHART.version} rendered by helm with the program's values`, () => {
    const totals = { objects: 0, containers: 0 };

    afterAll(() => {
        console.log(`rendered ${totals.objects} objects in ${VARIANTS.length} variants; checked ${totals.containers} containers`);
    });

    test("the committed values index is the one derived from the chart tarball", () => {
        const { dir, cleanup } = extractChart(CHART);
        try {
            expect(indexChart(dir)).toEqual(argoCdValuesIndex());
        } finally {
            cleanup();
        }
    });

    test("single sign-on reaches the rendered objects: Dex's GitLab connector in argocd-cm, Dex running; or Argo CD's own OIDC client", () => {
        const gitlab = render(argoCdValues(SPEC), true);
        const cm = gitlab.find((o) => o.kind === "ConfigMap" && o.metadata.name === "argocd-cm")!;
        expect(cm.data["dex.config"]).toContain("type: gitlab");
        expect(cm.data["dex.config"]).toContain("clientSecret: $dex.gitlab.clientSecret");
        expect(gitlab.some((o) => o.kind === "Deployment" && o.metadata.name === "argocd-dex-server")).toBe(true);
        const rbac = gitlab.find((o) => o.kind === "ConfigMap" && o.metadata.name === "argocd-rbac-cm")!;
        expect(rbac.data).toMatchObject({ "policy.default": "role:readonly", "policy.csv": "g, platform/argocd-breakglass, role:admin\n", scopes: "[groups]" });
        const oidc = render(argoCdValues(VARIANTS[3][1]), true);
        expect(oidc.find((o) => o.kind === "ConfigMap" && o.metadata.name === "argocd-cm")!.data["oidc.config"]).toContain("clientSecret: $oidc.clientSecret");
        expect(oidc.some((o) => o.kind === "Deployment" && o.metadata.name === "argocd-dex-server")).toBe(false);
    });

    test("the index finds what it must: the per-component env lists the chart ignores", () => {
        // The keys an earlier version of the values set: the chart reads extraEnv there.
        const old = { applicationSet: { env: [RESIDENCY] }, notifications: { env: [RESIDENCY] }, commitServer: { env: [RESIDENCY] }, controller: { env: [RESIDENCY] } };
        expect(unreadValues(argoCdValuesIndex(), old).map(formatKeyPath).sort()).toEqual(["applicationSet.env", "commitServer.env", "notifications.env"]);
        // And rendering proves it: the applicationset controller never gets that env.
        const rendered = containersOf(render(old, false)).find((c) => c.container.name === "applicationset-controller")!;
        expect((rendered.container.env ?? []).some((e: { name: string }) => e.name === RESIDENCY.name)).toBe(false);
    });

    test.each(VARIANTS)("%s: every key read; every container with the residency mode, requests and limits, an allowed image", (_name, spec) => {
        const values = argoCdValues(spec);
        expect(unreadValues(argoCdValuesIndex(), values).map(formatKeyPath)).toEqual([]);

        // Values alone: every container the chart's env keys reach has it; the others are the
        // known init containers, which the post-renderer covers.
        const plain = containersOf(render(values, false));
        const without = plain.filter((c) => !(c.container.env ?? []).some((e: { name: string; value: string }) => e.name === RESIDENCY.name && e.value === RESIDENCY.value));
        expect(without.map(where).filter((w) => !POST_RENDERED_ONLY.includes(w))).toEqual([]);
        expect(without.length).toBeGreaterThan(0);

        const objects = render(values, true);
        const containers = containersOf(objects);
        totals.objects += objects.length;
        totals.containers += containers.length;
        expect(containers.length).toBeGreaterThanOrEqual(6);
        for (const c of containers) {
            const env = (c.container.env ?? []) as { name: string; value?: string }[];
            expect([where(c), env.filter((e) => e.name === RESIDENCY.name)]).toEqual([where(c), [RESIDENCY]]);
            for (const kind of ["requests", "limits"]) {
                expect([where(c), kind, Object.keys(c.container.resources?.[kind] ?? {}).sort()]).toEqual([where(c), kind, ["cpu", "memory"]]);
            }
            const registry = String(c.container.image).split("/")[0];
            expect([where(c), ALLOWED_REGISTRIES.includes(registry)]).toEqual([where(c), true]);
        }
        // The images are the pinned Argo CD release.
        expect(containers.filter((c) => String(c.container.image).startsWith("quay.io/argoproj/argocd:")).map((c) => c.container.image)).toContain(
            `quay.io/argoproj/argocd:${ARGOCD_CHART.appVersion}`,
        );
    });

    test.each(VARIANTS)("%s: every Secret and ConfigMap a workload needs is deployed; Redis' password comes from the program", (_name, spec) => {
        const objects = render(argoCdValues(spec), true);
        expect(missingRefs(objects, PROGRAM_OBJECTS)).toEqual([]);
        // No hook Job is left to make it, and the workloads read Redis' password from the program's Secret.
        expect(objects.filter((o) => o.kind === "Job")).toEqual([]);
        const redisRefs = requiredRefs(objects).filter((r) => r.ref === `Secret/${REDIS_SECRET.name}`);
        expect(redisRefs.length).toBeGreaterThanOrEqual(3);
        expect(objects.some((o) => o.kind === "Secret" && o.metadata.name === REDIS_SECRET.name)).toBe(false);
    });

    test("with the chart's Redis hook Job back on and no Secret of the program's, the check finds the missing Secret", () => {
        const values = argoCdValues(SPEC) as Record<string, any>;
        const objects = render({ ...values, redisSecretInit: { ...values.redisSecretInit, enabled: true } }, true);
        expect(missingRefs(objects, [])).toEqual(
            expect.arrayContaining([expect.stringMatching(/^Secret\/argocd-redis \(needed by Deployment\/argocd-server\)$/), expect.stringMatching(/^Secret\/argocd-redis \(needed by Deployment\/argocd-redis\)$/)]),
        );
    });
});

describe("the README's table of what the chart renders", () => {
    test("every row matches helm's rendering with the values the program builds from Pulumi.prod.yaml", async () => {
        const readme = readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
        const block = readme.slice(readme.indexOf("<!-- rendered-values:start -->"), readme.indexOf("<!-- rendered-values:end -->"));
        const rows = block
            .split("\n")
            .filter((l) => l.startsWith("| ") && !l.startsWith("| rendered object") && !l.startsWith("|---"))
            .map((l) => l.split("|").slice(1, -1).map((c) => c.trim().replace(/^`|`$/g, "")));
        expect(rows.length).toBeGreaterThanOrEqual(15);
        // The program's own values for the shipped stack file.
        const { raw, secretKeys } = prodStack();
        const run = await runProgram(raw, secretKeys);
        const chart = run.recorder.ofType("kubernetes:helm.sh/v4:Chart")[0];
        const objects = render(chart.inputs.values as Record<string, unknown>, true);
        for (const [what, field, value] of rows) {
            if (what.startsWith("every container")) {
                for (const c of containersOf(objects)) {
                    expect([where(c), (c.container.env ?? []).find((e: { name: string }) => e.name === field)?.value]).toEqual([where(c), value]);
                }
                continue;
            }
            const [kind, name] = what.split(/\s+/).map((w) => w.replace(/`/g, ""));
            const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
            expect([what, o !== undefined]).toEqual([what, true]);
            const actual = field === "replicas" ? String(o!.spec.replicas) : String(o!.data[field]).trim();
            expect([what, field, actual]).toEqual([what, field, value]);
        }
    });
});
