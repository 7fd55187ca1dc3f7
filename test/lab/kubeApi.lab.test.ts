/**
 * A real Kubernetes API on the lab (kubeApi.ts): kube-apiserver v1.36 on two control-plane
 * nodes and kube-controller-manager on one, backed by a 3-member lab etcd over TLS with the
 * `kube-apiserver` client certificate, as k3s runs on zerotouch's etcd, behind the program's host
 * firewall. That etcd is installed the way `etcd.source: release` installs it: etcd 3.6 (built
 * from its Go modules) from the lab's HTTPS mirror (etcdMirror.ts), its tarball checked against
 * the configured sha256 before it is unpacked. The lab stack with `kubernetes.mode: existing` and the kubeconfig the lab wrote is
 * run under mocks, and everything its GitOps layer declares is applied to this API server with
 * server-side apply. Then Argo CD (test/gitops/argocd.ts) runs in the lab's VPN namespace, where
 * its pods' traffic would come from, against these API servers through the nodes' firewall, pulling
 * the manifests repository from the lab host (test/gitops/gitServer.ts) with the lab stack's read
 * credential. No kubelet runs: objects are stored and validated, pods never start.
 */
import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";

import { clientUrl, LOCAL_CLIENT_URL, parseEtcdMemberResult } from "../../components/etcd/member";
import { etcdInstallSteps, parseEtcdInstallResult } from "../../components/etcd/release";
import { applyGitops, GitopsObjects, gitopsObjects, reapplyChanged } from "../k8s/gitopsApply";
import { appManifests } from "../gitops/appManifests";
import { ArgoCd } from "../gitops/argocd";
import { GitServer } from "../gitops/gitServer";
import { LOOP, LoopDriver, loopUsers, secondsSince } from "../gitops/loop";
import { makeEtcdPem } from "../support/etcdCerts";
import { referenceFile } from "../support/reference";
import { etcdctl, expectOk, LabEtcd, wipeEtcd } from "./etcdLab";
import { EtcdRelease, LabEtcdMirror, packEtcdRelease } from "./etcdMirror";
import { Lab, LabNode, loadLab, nodesByRole, REPO_ROOT, RunResult, runStep, sshRun, tcpProbe } from "./harness";
import { labFirewall } from "./labFirewall";
import { API_PORT, LAB_GITOPS_SECRETS, LabKubeApi, labGitopsConfig, labStackWithKubernetes, toolchainBin } from "./kubeApi";

/** The version an etcd binary reports. */
function etcdVersionOf(binary: string): string {
    const out = execFileSync(binary, ["--version"], { encoding: "utf8", timeout: 30_000 });
    const m = /^etcd Version: (\d+\.\d+\.\d+)$/m.exec(out);
    if (m === null) {
        throw new Error(`${binary} --version printed no version: ${out}`);
    }
    return m[1];
}

jest.setTimeout(900_000);

/** The lab stack's application (labGitopsConfig). */
const LAB_APP = "backend-service-lab";

describe("a real Kubernetes API on the lab, on the lab's etcd", () => {
    let lab: Lab;
    let members: LabNode[];
    let dir: string;
    let api: LabKubeApi;
    let set: GitopsObjects;
    let mirror: LabEtcdMirror;
    let release: EtcdRelease;
    const installs: Record<string, RunResult> = {};
    const memberVersions: Record<string, string> = {};

    const install = (node: LabNode, sha256: string): RunResult =>
        runStep(lab, node, etcdInstallSteps({ node: node.name, source: "release", version: release.version, baseUrl: mirror.baseUrl, sha256: { amd64: sha256 } })[0]);


    beforeAll(async () => {
        lab = loadLab();
        members = nodesByRole(lab, "control-plane").slice(0, 3);
        expect(members).toHaveLength(3);
        dir = mkdtempSync(path.join(os.tmpdir(), "zt-lab-kube-"));
        const etcdPki = makeEtcdPem(path.join(dir, "etcd"), members.map((m) => ({ name: m.name, address: m.address })));
        members.forEach((m) => wipeEtcd(lab, m));
        labFirewall(lab, "create");
        // etcd.source release, from the lab's mirror, with the tarball's sha256 as configured.
        release = packEtcdRelease(path.dirname(toolchainBin("etcd")), etcdVersionOf(toolchainBin("etcd")), path.join(dir, "mirror"));
        mirror = new LabEtcdMirror(lab, path.join(dir, "mirror"));
        await mirror.start();
        const etcd = new LabEtcd(lab, etcdPki.pem, members[0]);
        for (const m of members) {
            mirror.trust(m);
            installs[m.name] = install(m, release.sha256);
            expectOk(m, installs[m.name]);
            const r = etcd.run(m, etcd.step(m, { source: "release" }));
            expectOk(m, r);
            memberVersions[m.name] = parseEtcdMemberResult(r.stdout).version;
        }
        api = new LabKubeApi(
            lab,
            members.slice(0, 2),
            { endpoints: members.map((m) => clientUrl(m.address)), caCert: etcdPki.caCert, ...etcdPki.clients["kube-apiserver"] },
            path.join(dir, "kube"),
        );
        const started = Date.now();
        await api.start();
        console.log(`API servers on ${api.servers.map((s) => s.name).join(", ")} ready in ${((Date.now() - started) / 1000).toFixed(1)} s; kubeconfig ${api.kubeconfig}`);
    });

    afterAll(() => {
        if (lab === undefined) {
            return;
        }
        api?.stop();
        members.forEach((m) => wipeEtcd(lab, m));
        for (const node of lab.nodes) {
            mirror?.untrust(node);
            sshRun(lab, node, "rm -f /usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl");
        }
        mirror?.stop();
        labFirewall(lab, "delete");
        rmSync(dir, { recursive: true, force: true });
    });

    test("etcd.source release: the mirror's tarball is checked against its sha256 and installed on every member, which runs that version", () => {
        for (const m of members) {
            const result = parseEtcdInstallResult(installs[m.name].stdout);
            expect(result).toMatchObject({ node: m.name, source: "release", version: release.version, etcd: "/usr/local/bin/etcd" });
            expect(installs[m.name].stderr).toContain(`sha256 ${release.sha256} matches the pinned checksum`);
            expect(memberVersions[m.name]).toBe(release.version);
        }
        console.log(`etcd ${release.version} from ${mirror.baseUrl} (tarball sha256 ${release.sha256}) on ${members.map((m) => m.name).join(", ")}`);
    });

    test("a tarball whose sha256 is not the configured one is refused before it is unpacked, naming node and figures", () => {
        const node = lab.nodes.find((n) => !members.includes(n))!;
        mirror.trust(node);
        const wrong = "0".repeat(64);
        const r = install(node, wrong);
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain(`etcd install refused on node ${node.name}: ${mirror.baseUrl}/v${release.version}/etcd-v${release.version}-linux-amd64.tar.gz has sha256 ${release.sha256}, but ${wrong} is pinned`);
        expect(sshRun(lab, node, "test -e /usr/local/bin/etcd").code).not.toBe(0);
    });

    test("the API server is the pinned Kubernetes minor and keeps its objects in the lab's etcd", () => {
        const version = JSON.parse(api.must(["version", "-o", "json"])) as { serverVersion: { major: string; minor: string; gitVersion: string } };
        expect(version.serverVersion).toMatchObject({ major: "1", minor: "36" });
        expect(api.must(["get", "--raw", "/readyz?verbose"])).toContain("[+]etcd ok");
        // Written through one API server, read through the other, stored in etcd under /registry.
        api.must(["create", "configmap", "zt-lab-probe", "--from-literal=written-through=" + api.servers[0].name]);
        const other = `https://${api.servers[1].address}:${API_PORT}`;
        const seen = api.kubectlAt(other, ["get", "configmap", "zt-lab-probe", "-o", "jsonpath={.data.written-through}"]);
        expect(seen).toMatchObject({ code: 0, stdout: api.servers[0].name });
        const keys = etcdctl(lab, members[2], "get /registry/configmaps/default/zt-lab-probe --keys-only", LOCAL_CLIENT_URL);
        expect(keys.trim()).toBe("/registry/configmaps/default/zt-lab-probe");
        api.must(["delete", "configmap", "zt-lab-probe"]);
        console.log(`API server ${version.serverVersion.gitVersion} on ${api.servers.map((s) => s.name).join(" and ")}, etcd ${members.map((m) => m.name).join(", ")}`);
    });

    test("behind the host firewall, 6443 answers the VPN and not the internet", () => {
        for (const node of api.servers) {
            expect({ node: node.name, vpn: tcpProbe("vpn", lab, node.address, API_PORT), internet: tcpProbe("internet", lab, node.address, API_PORT) }).toEqual({
                node: node.name,
                vpn: true,
                internet: false,
            });
        }
    });

    test("the lab stack with kubernetes.mode existing: the GitOps layer is accepted by the lab's API server, and a second apply changes nothing", async () => {
        const kubeconfig = readFileSync(api.kubeconfig, "utf8");
        const { raw, secretKeys } = labStackWithKubernetes(lab, path.join(REPO_ROOT, "Pulumi.lab.yaml"), kubeconfig, referenceFile("charts", "argo-cd-10.1.1.tgz"));
        set = await gitopsObjects(raw, [...secretKeys]);
        // The program's Kubernetes provider is the lab's cluster, its kubeconfig a secret.
        const providers = set.run.recorder.ofType("pulumi:providers:kubernetes");
        expect(providers.length).toBeGreaterThan(0);
        expect(providers.every((p) => p.inputs.kubeconfig === kubeconfig)).toBe(true);
        const applied = await applyGitops(api, set);
        expect(applied).toHaveLength(set.objects.length);
        const { changed } = reapplyChanged(api, set.objects);
        expect(changed).toEqual([]);
        console.log(`lab API server: ${set.crds.length} CRDs, ${set.objects.length} objects, ${set.patches.length} patch(es) applied; a second apply changed none`);
    });

    test("Argo CD, in the VPN namespace, runs the loop on the lab's API servers: the first sync, a bump through GitLab's webhook, a hand edit reverted", async () => {
        // The manifests repository where the lab stack's config says it is: on the lab host, read
        // with the lab stack's read credential; the app pipeline's writer may push.
        const host = lab.managementCidr.split("/")[0];
        const { writer } = loopUsers();
        const git = new GitServer({ reader: { username: "argocd-reader", password: LAB_GITOPS_SECRETS.manifestsPassword }, writer, address: host, port: 443 });
        const loop = new LoopDriver(api, git, writer, { ...LOOP, app: LAB_APP });
        try {
            await git.start();
            loop.repoUrl = git.createRepo(LOOP.repo, appManifests({ tag: "1.0.0", extraConfig: true }));
            expect(loop.repoUrl).toBe((labGitopsConfig(lab, "").manifests as { url: string }).url);
            loop.webhookSecret = loop.readWebhookSecret();
            // Where the pods would run: behind the nodes' firewall, 6443 answers the VPN only.
            loop.argocd = new ArgoCd({
                kubeconfig: api.kubeconfig,
                dir: path.join(dir, "argocd"),
                namespace: LOOP.namespace,
                trustedCas: { [host]: git.caPem },
                objects: set.objects,
                netns: lab.clients.vpn.netns,
                serverAddress: lab.clients.vpn.address,
            });
            const started = Date.now();
            await loop.argocd.start();
            const head = loop.head();
            await loop.waitUntil(`${LAB_APP} Synced at ${head}`, () => loop.synced(head), 240);
            expect(loop.image()).toBe(`${LOOP.image}:1.0.0`);
            const firstSync = secondsSince(started);
            const bump = await loop.bump("1.0.1", true, 90);
            const edited = Date.now();
            api.must(["-n", LOOP.appNamespace, "patch", "configmap", "backend-service-config", "--type", "merge", "-p", '{"data":{"imageTag":"edited-by-hand"}}']);
            await loop.waitUntil("the ConfigMap reverted", () => loop.object("configmap", "backend-service-config")?.data.imageTag === "1.0.1", 120);
            console.log(
                `${loop.argocd.version} in ${lab.clients.vpn.netns} against ${api.server} (reconciliation ${loop.argocd.reconciliation}), repository ${loop.repoUrl}: ` +
                    `first sync ${firstSync.toFixed(1)} s after start; bump 1.0.0 -> 1.0.1 Synced ${bump.toFixed(1)} s after the push with the webhook; hand edit reverted in ${secondsSince(edited).toFixed(1)} s`,
            );
        } finally {
            loop.argocd?.stop();
            git.stop();
        }
    });

    test("deleting the namespace finishes: the lab's controller manager removes what is in it", () => {
        api.must(["delete", "namespace", "argocd", "--wait=true", "--timeout=120s"], undefined, 150);
        expect(api.kubectl(["get", "namespace", "argocd"]).stderr).toMatch(/NotFound/);
    });
});
