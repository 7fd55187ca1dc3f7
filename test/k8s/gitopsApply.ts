/**
 * Everything the GitOps layer creates, as the objects it sends to a Kubernetes API server, and
 * their server-side apply: shared by the loopback API server (`apply.k8s.test.ts`) and the lab's
 * (`test/lab/kubeApi.lab.test.ts`).
 *
 * The objects: the argo-cd chart's as helm renders them with the values and post-renderer the
 * program passes (`helm.v4.Chart` deploys the same, without hooks), and the program's own as it
 * declares them under mocks (namespace, Redis' Secret, repository Secret, the argocd-secret
 * patch, Traefik Middlewares with Traefik's CRDs, the Ingresses, AppProjects, Applications).
 */
import { spawnSync } from "child_process";
import { readdirSync, readFileSync } from "fs";
import { parseAllDocuments } from "yaml";

import { ARGOCD_RELEASE, argoCdPostRenderer } from "../../components/gitops/argocd";
import { helmTemplate } from "../support/chart";
import type { Recorded } from "../support/mocks";
import { runProgram } from "../support/program";
import { referenceFile } from "../support/reference";

/** The Kubernetes version the chart is rendered for: the pinned k3s'. */
export const KUBE_VERSION = "v1.36.4";
const FIELD_MANAGER = "zerotouch";

export type K8sObject = Record<string, any> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; resourceVersion?: string } };

export interface KubectlResult {
    code: number;
    stdout: string;
    stderr: string;
}

/** A kubectl bound to one cluster: `kubectl` never throws; `must` throws with stderr unless it exits 0. */
export interface Kubectl {
    kubectl(args: readonly string[], input?: string, timeoutSec?: number): KubectlResult;
    must(args: readonly string[], input?: string, timeoutSec?: number): string;
}

/** `must` on top of a cluster's own `kubectl`. */
export abstract class KubectlBase implements Kubectl {
    abstract kubectl(args: readonly string[], input?: string, timeoutSec?: number): KubectlResult;

    /** kubectl that must succeed: returns stdout, throws with stderr otherwise. */
    must(args: readonly string[], input?: string, timeoutSec = 120): string {
        const r = this.kubectl(args, input, timeoutSec);
        if (r.code !== 0) {
            throw new Error(`kubectl ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
        }
        return r.stdout;
    }
}

export interface GitopsObjects {
    /** Traefik's CRDs (from the shared reference) and the chart's. */
    readonly crds: K8sObject[];
    /** Every other object, namespaces first. */
    readonly objects: K8sObject[];
    /** What `SecretPatch` resources send (their own field manager, over the chart's fields). */
    readonly patches: K8sObject[];
    /** The program run they come from. */
    readonly run: Awaited<ReturnType<typeof runProgram>>;
}

export const objectKey = (o: K8sObject): string => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
/** A stream kubectl reads exactly as meant: one JSON document per object (JSON is YAML). */
export const toYaml = (objects: readonly K8sObject[]): string => objects.map((o) => `---\n${JSON.stringify(o)}\n`).join("");

/** A recorded resource of the kubernetes provider as the object it sends to the API server. */
function asObject(r: Recorded): K8sObject {
    const { apiVersion, kind, metadata, ...rest } = r.inputs as K8sObject;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
        throw new Error(`${r.type} ${r.name}: no apiVersion/kind in its inputs`);
    }
    return { apiVersion, kind, metadata, ...rest };
}

/** Runs the program under mocks with this stack config and collects what its GitOps layer sends. */
export async function gitopsObjects(raw: Record<string, unknown>, secretKeys: readonly string[]): Promise<GitopsObjects> {
    const run = await runProgram(raw, [...secretKeys]);
    const k8s = run.recorder.resources.filter((r) => r.type.startsWith("kubernetes:") && r.type !== "kubernetes:helm.sh/v4:Chart");
    const chart = run.recorder.ofType("kubernetes:helm.sh/v4:Chart")[0];
    if (chart === undefined) {
        throw new Error("the program declared no argo-cd chart: is the GitOps layer configured?");
    }
    const rendered = helmTemplate(referenceFile("charts", `argo-cd-${String(chart.inputs.version)}.tgz`), {
        release: ARGOCD_RELEASE,
        namespace: String(chart.inputs.namespace),
        values: chart.inputs.values as Record<string, unknown>,
        kubeVersion: KUBE_VERSION,
        postRenderer: argoCdPostRenderer(),
    }) as K8sObject[];
    const traefik = readdirSync(referenceFile("traefik-crds")).map((f) => parseAllDocuments(readFileSync(referenceFile("traefik-crds", f), "utf8"))[0].toJSON() as K8sObject);
    const all = [...rendered, ...k8s.filter((r) => !r.type.endsWith(":SecretPatch")).map(asObject)];
    const rest = all.filter((o) => o.kind !== "CustomResourceDefinition");
    return {
        crds: [...traefik, ...all.filter((o) => o.kind === "CustomResourceDefinition")],
        objects: [...rest.filter((o) => o.kind === "Namespace"), ...rest.filter((o) => o.kind !== "Namespace")],
        patches: k8s.filter((r) => r.type.endsWith(":SecretPatch")).map(asObject),
        run,
    };
}

/**
 * Waits, bounded, until the CRDs are Established (polling: `kubectl wait` fails on a CRD whose
 * status has no conditions yet).
 */
export async function waitEstablished(k: Kubectl, names: readonly string[], timeoutSec = 60): Promise<void> {
    const deadline = Date.now() + timeoutSec * 1000;
    let pending = [...names];
    while (pending.length > 0 && Date.now() < deadline) {
        pending = pending.filter((n) => k.kubectl(["get", "crd", n, "-o", 'jsonpath={.status.conditions[?(@.type=="Established")].status}'], undefined, 10).stdout.trim() !== "True");
        if (pending.length > 0) {
            await new Promise((r) => setTimeout(r, 500));
        }
    }
    if (pending.length > 0) {
        throw new Error(`CRDs not Established within ${timeoutSec}s: ${pending.join(", ")}`);
    }
}

const apply = (k: Kubectl, objects: readonly K8sObject[], manager = FIELD_MANAGER, force = false): string =>
    k.must(["apply", "--server-side", `--field-manager=${manager}`, ...(force ? ["--force-conflicts"] : []), "--validate=strict", "-f", "-"], toYaml(objects), 300);

/**
 * Server-side apply with strict field validation: CRDs first (until Established), then every
 * object in one stream (kubectl applies in order), then the patches. Returns the objects kubectl
 * reported as applied.
 */
export async function applyGitops(k: Kubectl, set: GitopsObjects): Promise<string[]> {
    apply(k, set.crds);
    await waitEstablished(k, set.crds.map((c) => c.metadata.name));
    const applied = apply(k, set.objects)
        .trim()
        .split("\n")
        .filter((l) => / serverside-applied$/.test(l));
    apply(k, set.patches, "zerotouch-patch", true);
    return applied;
}

/** Each object's resourceVersion, once controllers have settled (bounded: 30 s without a change). */
export function settledVersions(k: Kubectl, objects: readonly K8sObject[]): Record<string, string> {
    const versions = (): Record<string, string> => {
        const list = JSON.parse(k.must(["get", "-f", "-", "-o", "json"], toYaml(objects), 300)) as { items: K8sObject[] };
        return Object.fromEntries(list.items.map((o) => [objectKey(o), String(o.metadata.resourceVersion)]));
    };
    // The namespace controller writes a new namespace once; wait for that.
    let before = versions();
    for (let i = 0; i < 30; i++) {
        spawnSync("sleep", ["1"]);
        const again = versions();
        if (JSON.stringify(again) === JSON.stringify(before)) {
            break;
        }
        before = again;
    }
    return before;
}

/** Applies the objects again; returns the keys of those whose resourceVersion changed (printing them as sent and as stored). */
export function reapplyChanged(k: Kubectl, objects: readonly K8sObject[]): { before: Record<string, string>; changed: string[] } {
    const before = settledVersions(k, objects);
    apply(k, objects);
    const list = JSON.parse(k.must(["get", "-f", "-", "-o", "json"], toYaml(objects), 300)) as { items: K8sObject[] };
    const after = Object.fromEntries(list.items.map((o) => [objectKey(o), String(o.metadata.resourceVersion)]));
    const changed = Object.keys(before).filter((key) => after[key] !== before[key]);
    for (const key of changed) {
        const o = objects.find((x) => objectKey(x) === key)!;
        const ns = o.metadata.namespace ? ["-n", o.metadata.namespace] : [];
        console.log(`${key} changed; sent ${JSON.stringify(o)}; now:\n${k.kubectl(["get", o.kind, o.metadata.name, ...ns, "-o", "yaml", "--show-managed-fields"]).stdout}`);
    }
    return { before, changed };
}
