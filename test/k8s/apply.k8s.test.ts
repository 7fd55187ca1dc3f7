/**
 * Everything the GitOps layer creates (see gitopsApply.ts), as the program declares it under
 * mocks with Pulumi.prod.yaml, applied with server-side apply to a real Kubernetes API server
 * (kube-apiserver v1.36 on TLS etcd, on loopback: see cluster.ts). Every object must be accepted
 * with strict field validation, a second apply must change nothing, and deleting the namespace
 * must finish (the controller manager removes its finalizer). No kubelet runs: nothing here
 * starts a pod. The same objects go to the lab's API server in test/lab/kubeApi.lab.test.ts.
 */
import { prodStack } from "../support/program";
import { TestCluster } from "./cluster";
import { applyGitops, GitopsObjects, gitopsObjects, reapplyChanged } from "./gitopsApply";

describe("the GitOps layer applied to a real Kubernetes API server", () => {
    const cluster = new TestCluster();
    let set: GitopsObjects;

    beforeAll(async () => {
        await cluster.start();
        const { raw, secretKeys } = prodStack();
        set = await gitopsObjects(raw, secretKeys);
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
        const applied = await applyGitops(cluster, set);
        expect(applied).toHaveLength(set.objects.length);
        const secret = JSON.parse(cluster.must(["-n", "argocd", "get", "secret", "argocd-secret", "-o", "json"])) as { data: Record<string, string> };
        expect(Object.keys(secret.data).sort()).toEqual(["dex.gitlab.clientSecret", "webhook.gitlab.secret"]);
        const kinds = [...new Set(set.objects.map((o) => o.kind))].sort();
        console.log(`server-side apply: ${set.crds.length} CRDs, ${set.objects.length} objects (${kinds.join(", ")}), ${set.patches.length} patch(es) accepted`);
        expect(kinds).toEqual(expect.arrayContaining(["Application", "AppProject", "Deployment", "Ingress", "Middleware", "Secret", "StatefulSet"]));
    }, 600_000);

    test("a second apply changes nothing: every object keeps its resourceVersion", () => {
        const { before, changed } = reapplyChanged(cluster, set.objects);
        expect(Object.keys(before)).toHaveLength(set.objects.length);
        expect(changed).toEqual([]);
    }, 600_000);

    test("deleting the namespace finishes: the controller manager removes what is in it", () => {
        cluster.must(["delete", "namespace", "argocd", "--wait=true", "--timeout=120s"], undefined, 150);
        expect(cluster.kubectl(["get", "namespace", "argocd"]).stderr).toMatch(/NotFound/);
    }, 300_000);
});
