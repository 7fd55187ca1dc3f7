/**
 * Everything the GitOps layer creates, applied with server-side apply to a real Kubernetes API
 * server (kube-apiserver v1.36 on TLS etcd, see cluster.ts): the argo-cd chart's objects as
 * helm renders them with the values and post-renderer the program passes (`helm.v4.Chart`
 * deploys the same, without hooks), and the program's own objects as it declares them under
 * mocks with Pulumi.prod.yaml (namespace, Redis' Secret, repository Secret, the argocd-secret
 * patch, Traefik Middlewares with Traefik's CRDs installed, the Ingresses, AppProjects and
 * Applications). Every object must be accepted with strict field validation, a second apply
 * must change nothing, and deleting the namespace must finish (the controller manager removes
 * its finalizer). No kubelet runs: nothing here starts a pod.
 */
import { spawnSync } from "child_process";
import { readdirSync, readFileSync } from "fs";
import * as path from "path";
import { parseAllDocuments } from "yaml";

import { ARGOCD_RELEASE, argoCdPostRenderer } from "../../components/gitops/argocd";
import { parseStackFile } from "../../infra/config";
import { TEST_KEY } from "../support/config";
import { helmTemplate } from "../support/chart";
import type { Recorded } from "../support/mocks";
import { runProgram } from "../support/program";
import { referenceFile } from "../support/reference";
import { TestCluster } from "./cluster";

const KUBE_VERSION = "v1.36.4";
const FIELD_MANAGER = "zerotouch";

type K8sObject = Record<string, any> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; resourceVersion?: string } };

const key = (o: K8sObject): string => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
/** A stream kubectl reads exactly as meant: one JSON document per object (JSON is YAML). */
const toYaml = (objects: readonly K8sObject[]): string => objects.map((o) => `---\n${JSON.stringify(o)}\n`).join("");

/** A recorded resource of the kubernetes provider as the object it sends to the API server. */
function asObject(r: Recorded): K8sObject {
    const { apiVersion, kind, metadata, ...rest } = r.inputs as K8sObject;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
        throw new Error(`${r.type} ${r.name}: no apiVersion/kind in its inputs`);
    }
    return { apiVersion, kind, metadata, ...rest };
}

describe("the GitOps layer applied to a real Kubernetes API server", () => {
    const cluster = new TestCluster();
    let crds: K8sObject[];
    let objects: K8sObject[];
    let patches: K8sObject[];

    beforeAll(async () => {
        await cluster.start();
        // What the program declares, with the shipped stack file.
        const text = readFileSync(path.join(__dirname, "..", "..", "Pulumi.prod.yaml"), "utf8");
        const { raw, secretKeys } = parseStackFile(text, { sshPrivateKey: TEST_KEY, gitlabToken: "glpat-test-0123456789", argocdSsoClientSecret: "sso-test-0123456789" });
        const run = await runProgram(raw, [...secretKeys]);
        const k8s = run.recorder.resources.filter((r) => r.type.startsWith("kubernetes:") && r.type !== "kubernetes:helm.sh/v4:Chart");
        const chart = run.recorder.ofType("kubernetes:helm.sh/v4:Chart")[0];
        // The chart as helm.v4.Chart renders it: same values, same post-renderer, no hooks.
        const rendered = helmTemplate(referenceFile("charts", `argo-cd-${String(chart.inputs.version)}.tgz`), {
            release: ARGOCD_RELEASE,
            namespace: String(chart.inputs.namespace),
            values: chart.inputs.values as Record<string, unknown>,
            kubeVersion: KUBE_VERSION,
            postRenderer: argoCdPostRenderer(),
        }) as K8sObject[];
        const traefik = readdirSync(referenceFile("traefik-crds")).map((f) => parseAllDocuments(readFileSync(referenceFile("traefik-crds", f), "utf8"))[0].toJSON() as K8sObject);
        const all = [...rendered, ...k8s.filter((r) => !r.type.endsWith(":SecretPatch")).map(asObject)];
        crds = [...traefik, ...all.filter((o) => o.kind === "CustomResourceDefinition")];
        objects = all.filter((o) => o.kind !== "CustomResourceDefinition");
        patches = k8s.filter((r) => r.type.endsWith(":SecretPatch")).map(asObject);
    }, 600_000);

    afterAll(() => {
        cluster.stop();
    });

    test("the API server is the pinned Kubernetes minor, backed by etcd over TLS", () => {
        const version = JSON.parse(cluster.must(["version", "-o", "json"])) as { serverVersion: { major: string; minor: string; gitVersion: string } };
        expect(version.serverVersion).toMatchObject({ major: "1", minor: "36" });
        console.log(`API server ${version.serverVersion.gitVersion} at ${cluster.apiServerUrl}`);
    });

    test("every object is accepted by server-side apply with strict field validation, CRDs first", async () => {
        cluster.must(["apply", "--server-side", `--field-manager=${FIELD_MANAGER}`, "--validate=strict", "-f", "-"], toYaml(crds));
        await cluster.waitEstablished(crds.map((c) => c.metadata.name));
        // Namespaces first, then the rest (one stream: kubectl applies in order).
        const ordered = [...objects.filter((o) => o.kind === "Namespace"), ...objects.filter((o) => o.kind !== "Namespace")];
        const out = cluster.must(["apply", "--server-side", `--field-manager=${FIELD_MANAGER}`, "--validate=strict", "-f", "-"], toYaml(ordered), 300);
        const applied = out.trim().split("\n").filter((l) => / serverside-applied$/.test(l));
        expect(applied).toHaveLength(ordered.length);
        // The argocd-secret patch, as SecretPatch sends it: its own field manager, over the chart's fields.
        cluster.must(["apply", "--server-side", "--field-manager=zerotouch-patch", "--force-conflicts", "--validate=strict", "-f", "-"], toYaml(patches));
        const secret = JSON.parse(cluster.must(["-n", "argocd", "get", "secret", "argocd-secret", "-o", "json"])) as { data: Record<string, string> };
        expect(Object.keys(secret.data).sort()).toEqual(["dex.gitlab.clientSecret", "webhook.gitlab.secret"]);
        const kinds = [...new Set(ordered.map((o) => o.kind))].sort();
        console.log(`server-side apply: ${crds.length} CRDs, ${ordered.length} objects (${kinds.join(", ")}), ${patches.length} patch(es) accepted`);
        expect(kinds).toEqual(expect.arrayContaining(["Application", "AppProject", "Deployment", "Ingress", "Middleware", "Secret", "StatefulSet"]));
    }, 600_000);

    test("a second apply changes nothing: every object keeps its resourceVersion", () => {
        const versions = (): Record<string, string> => {
            const list = JSON.parse(cluster.must(["get", "-f", "-", "-o", "json"], toYaml(objects), 300)) as { items: K8sObject[] };
            return Object.fromEntries(list.items.map((o) => [key(o), String(o.metadata.resourceVersion)]));
        };
        // Controllers settle first (the namespace controller writes the new namespace once); bounded.
        let before = versions();
        for (let i = 0; i < 30; i++) {
            spawnSync("sleep", ["1"]);
            const again = versions();
            if (JSON.stringify(again) === JSON.stringify(before)) {
                break;
            }
            before = again;
        }
        expect(Object.keys(before)).toHaveLength(objects.length);
        cluster.must(["apply", "--server-side", `--field-manager=${FIELD_MANAGER}`, "--validate=strict", "-f", "-"], toYaml(objects), 300);
        const after = versions();
        const changed = Object.keys(before).filter((k) => after[k] !== before[k]);
        for (const k of changed) {
            const o = objects.find((x) => key(x) === k)!;
            console.log(`${k} changed; sent ${JSON.stringify(o)}; now:\n${cluster.kubectl(["get", o.kind, o.metadata.name, ...(o.metadata.namespace ? ["-n", o.metadata.namespace] : []), "-o", "yaml", "--show-managed-fields"]).stdout}`);
        }
        expect(changed).toEqual([]);
    }, 600_000);

    test("deleting the namespace finishes: the controller manager removes what is in it", () => {
        cluster.must(["delete", "namespace", "argocd", "--wait=true", "--timeout=120s"], undefined, 150);
        expect(cluster.kubectl(["get", "namespace", "argocd"]).stderr).toMatch(/NotFound/);
    }, 300_000);
});
