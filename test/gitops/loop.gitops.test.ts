/**
 * The GitOps loop, for real: Argo CD v3.6.2 (built from its Go module; test/gitops/argocd.ts) on
 * a real Kubernetes API server (test/k8s/cluster.ts), pulling the manifests repository from the
 * lab's Git server (HTTPS with basic auth, git http-backend; test/gitops/gitServer.ts).
 *
 * Everything Argo CD reads in the cluster is what the program declares for this config
 * (GitopsLoop in loop.ts: Pulumi.prod.yaml with the GitOps layer wired by hand to the lab's Git
 * server), run under mocks and applied with server-side apply: the chart with the program's
 * values, argocd-cm, the webhook secret, the repository Secret, the AppProject and the
 * Application. The app pipeline's own script (stacks/templates/update-manifests.sh) makes the
 * bump; the push event is posted to Argo CD's /api/webhook in GitLab's format, as GitLab would.
 *
 * Checks: the Application syncs the repository's head; a bump lands in the cluster after the
 * webhook; a webhook with a wrong secret is refused and changes nothing; a hand edit is reverted
 * (self-heal); an object removed from Git is deleted (prune); an Application whose repository is
 * not among its AppProject's sources is refused.
 */
import { writeFileSync } from "fs";
import * as path from "path";

import { appManifests } from "./appManifests";
import { GitopsLoop, LOOP, pushFiles, runUpdateManifests, secondsSince } from "./loop";

/** Long enough that within a test only the webhook (or self-heal) can start a sync. */
const RECONCILIATION_SECONDS = 600;

describe("the GitOps loop with Argo CD", () => {
    const loop = new GitopsLoop();

    beforeAll(async () => {
        await loop.start(RECONCILIATION_SECONDS);
        console.log(`${loop.argocd.version} on ${loop.cluster.apiServerUrl}; reconciliation ${loop.argocd.reconciliation} (the program's argocd-cm); repository ${loop.repoUrl}`);
    }, 600_000);

    afterAll(() => {
        loop.stop();
    });

    test("the Application syncs the repository's head into the cluster", async () => {
        const head = loop.head();
        await loop.waitUntil(`${LOOP.app} Synced at ${head}`, () => loop.synced(head), 180);
        expect(loop.image()).toBe(`${LOOP.image}:1.0.0`);
        expect(loop.object("configmap", "backend-service-extra")).toBeDefined();
        const health = (loop.application().status as { health?: { status?: string } }).health?.status;
        console.log(`first sync at ${head.slice(0, 8)}; health ${String(health)} (no kubelet: the Deployment never becomes available)`);
    });

    test("a bump by the app pipeline lands in the cluster after GitLab's push webhook", async () => {
        const seconds = await loop.bump("1.0.1", true, 60);
        console.log(`bump 1.0.0 -> 1.0.1: Synced with the new image ${seconds.toFixed(1)} s after the push`);
    });

    test("a webhook with a wrong secret is refused and changes nothing", async () => {
        const before = loop.head();
        runUpdateManifests({ url: loop.repoUrl, token: loop.writer.password, caFile: loop.git.caFile, tag: "1.0.2" });
        const after = loop.head();
        // Argo CD v3.6 answers a GitLab event whose token does not match with 400 ("Webhook
        // processing failed") and logs the failed verification.
        expect(await loop.webhook(before, after, [LOOP.valuesFile], `${loop.webhookSecret}-wrong`)).toBe(400);
        expect(loop.argocd.logTail("server", 200)).toContain("GitLab webhook token verification failed");
        // Well inside the reconciliation period: nothing but a webhook could start a sync now.
        await new Promise((r) => setTimeout(r, 15_000));
        expect((loop.application().status as { sync: { revision: string } }).sync.revision).toBe(before);
        expect(loop.image()).toBe(`${LOOP.image}:1.0.1`);
        // The right secret then brings the commit in.
        expect(await loop.webhook(before, after, [LOOP.valuesFile])).toBe(200);
        await loop.waitUntil(`${LOOP.app} Synced at ${after}`, () => loop.synced(after) && loop.image() === `${LOOP.image}:1.0.2`, 60);
        console.log("wrong X-Gitlab-Token: refused (400, token verification failed in Argo CD's log), no sync for 15 s; the right one: synced");
    });

    test("a hand edit in the cluster is reverted (self-heal)", async () => {
        const started = Date.now();
        loop.cluster.must(["-n", LOOP.appNamespace, "patch", "configmap", "backend-service-config", "--type", "merge", "-p", '{"data":{"imageTag":"edited-by-hand"}}']);
        await loop.waitUntil("the ConfigMap reverted", () => loop.object("configmap", "backend-service-config")?.data.imageTag === "1.0.2", 120);
        console.log(`hand edit reverted in ${secondsSince(started).toFixed(1)} s`);
    });

    test("an object removed from Git is deleted from the cluster (prune)", async () => {
        const before = loop.head();
        pushFiles({ url: loop.repoUrl, writer: loop.writer, caFile: loop.git.caFile, files: appManifests({ tag: "1.0.2", extraConfig: false }), message: "backend-service: drop the extra config" });
        const after = loop.head();
        const started = Date.now();
        expect(await loop.webhook(before, after, ["deployments/prod/templates/extra-configmap.yaml"])).toBe(200);
        await loop.waitUntil("backend-service-extra pruned", () => loop.object("configmap", "backend-service-extra") === undefined, 120);
        console.log(`removed from Git, pruned ${secondsSince(started).toFixed(1)} s after the webhook`);
    });

    test("an Application whose repository is not among its AppProject's sources is refused", async () => {
        const rogue = structuredClone(loop.set.objects.find((o) => o.kind === "Application" && o.metadata.name === LOOP.app)!);
        rogue.metadata = { name: "rogue", namespace: LOOP.namespace };
        rogue.spec.source.repoURL = "https://gitlab.example.com/elsewhere/manifests.git";
        const file = path.join(loop.dir, "rogue.json");
        writeFileSync(file, JSON.stringify(rogue));
        loop.cluster.must(["apply", "-f", file]);
        const message = (): string => {
            const conditions = ((loop.application("rogue").status ?? {}) as { conditions?: { type: string; message: string }[] }).conditions ?? [];
            return conditions
                .filter((c) => c.type === "InvalidSpecError")
                .map((c) => c.message)
                .join("; ");
        };
        await loop.waitUntil("the rogue Application refused", () => /application repo \S+ is not permitted in project 'prod'/.test(message()), 120);
        const status = loop.application("rogue").status as { sync?: { status?: string }; operationState?: unknown };
        expect(status.operationState).toBeUndefined();
        console.log(`refused: ${message()}`);
    });
});
