/**
 * `npm run bench:gitops` (test/gitops/run.sh bench): the GitOps loop timed, in one run (GitopsLoop,
 * test/gitops/loop.ts: Argo CD v3.6.2 on a real API server, the lab's Git server, the program's
 * GitOps layer): a bump by the app pipeline until the Application is Synced with the new image, 10
 * times with GitLab's push webhook and 10 times without (Argo CD's periodic refresh alone, at the
 * program's `reconciliationSeconds` plus Argo CD's jitter), then self-heal (an object changed
 * through the API until it is reverted) and prune (an object removed from Git, with the webhook,
 * until it is deleted).
 */
import { appManifests } from "../gitops/appManifests";
import { GitopsLoop, LOOP, pushFiles, secondsSince } from "../gitops/loop";

const RECONCILIATION_SECONDS = 30;
const PUSHES = 10;

const median = (xs: readonly number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
    const loop = new GitopsLoop();
    try {
        await loop.start(RECONCILIATION_SECONDS);
        const jitter = loop.argocd.controllerEnv.ARGOCD_RECONCILIATION_JITTER ?? "60s (Argo CD's default)";
        console.log(`${loop.argocd.version}; reconciliation ${loop.argocd.reconciliation} (gitops.argocd.reconciliationSeconds ${RECONCILIATION_SECONDS}), jitter ${jitter}`);
        const head = loop.head();
        await loop.waitUntil("the first sync", () => loop.synced(head), 300);
        let tag = 0;
        const runs = async (webhook: boolean): Promise<number[]> => {
            const times: number[] = [];
            for (let i = 0; i < PUSHES; i++) {
                tag += 1;
                const s = await loop.bump(`2.0.${tag}`, webhook, RECONCILIATION_SECONDS + 120);
                console.log(`  push ${i + 1}/${PUSHES} ${webhook ? "with" : "without"} the webhook: ${s.toFixed(1)} s`);
                times.push(s);
            }
            return times;
        };
        const withHook = await runs(true);
        const withoutHook = await runs(false);

        const healStarted = Date.now();
        loop.cluster.must(["-n", LOOP.appNamespace, "patch", "configmap", "backend-service-config", "--type", "merge", "-p", '{"data":{"imageTag":"edited-by-hand"}}']);
        await loop.waitUntil("self-heal", () => loop.object("configmap", "backend-service-config")?.data.imageTag === `2.0.${tag}`, 300);
        const heal = secondsSince(healStarted);

        const before = loop.head();
        pushFiles({ url: loop.repoUrl, writer: loop.writer, caFile: loop.git.caFile, files: appManifests({ tag: `2.0.${tag}`, extraConfig: false }), message: "drop the extra config" });
        const pruneStarted = Date.now();
        const status = await loop.webhook(before, loop.head(), ["deployments/prod/templates/extra-configmap.yaml"]);
        if (status !== 200) {
            throw new Error(`the webhook answered ${status}`);
        }
        await loop.waitUntil("prune", () => loop.object("configmap", "backend-service-extra") === undefined, 300);
        const prune = secondsSince(pruneStarted);

        console.log(`\n${loop.argocd.version} on kube-apiserver ${loop.cluster.apiServerUrl}, reconciliation ${RECONCILIATION_SECONDS} s + jitter ${jitter}\n`);
        console.log("| path | runs | median (s) | worst (s) |");
        console.log("|---|---:|---:|---:|");
        console.log(`| push → Synced, with GitLab's webhook | ${withHook.length} | ${median(withHook).toFixed(1)} | ${Math.max(...withHook).toFixed(1)} |`);
        console.log(`| push → Synced, periodic refresh only | ${withoutHook.length} | ${median(withoutHook).toFixed(1)} | ${Math.max(...withoutHook).toFixed(1)} |`);
        console.log(`| self-heal: edit through the API → reverted | 1 | ${heal.toFixed(1)} | ${heal.toFixed(1)} |`);
        console.log(`| prune: removed from Git (webhook) → deleted | 1 | ${prune.toFixed(1)} | ${prune.toFixed(1)} |`);
    } finally {
        loop.stop();
    }
}

main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
});
