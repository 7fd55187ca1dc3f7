/**
 * The whole program under mocks with Pulumi.prod.yaml (stack prod), every resource fed through
 * every policy of the pack as CrossGuard would: zero violations with the shipped configs. Then
 * one bad change at a time, each firing exactly the policy expected, naming the resource.
 */
import { readFileSync } from "fs";
import * as path from "path";

import type { PolicyPackConfig } from "@pulumi/policy";

import { validateConfig } from "../infra/config";
import { POLICIES } from "../policy/policies";
import { Diagnostic, mandatory, PackResource, PolicyRun, runPack, runPolicyProgram, secretValue } from "./support/policyHarness";
import { PROD_TEST_SECRETS, prodStack } from "./support/program";

const GITLAB_TOKEN = PROD_TEST_SECRETS.gitlabToken;
const CONFIG_DIR = path.join(__dirname, "..", "policy");
const EEA = JSON.parse(readFileSync(path.join(CONFIG_DIR, "config.eea.json"), "utf8")) as PolicyPackConfig;
const STRICT_NO = JSON.parse(readFileSync(path.join(CONFIG_DIR, "config.strict-no.json"), "utf8")) as PolicyPackConfig;

const prodConfig = prodStack;

async function runWith(change: (raw: Record<string, any>) => void): Promise<PolicyRun> {
    const { raw, secretKeys } = prodConfig();
    change(raw);
    return runPolicyProgram(raw, secretKeys);
}

/** The policies that fired (mandatory), sorted and once each. */
function fired(diagnostics: readonly Diagnostic[]): string[] {
    return [...new Set(diagnostics.filter((d) => d.enforcementLevel === "mandatory").map((d) => d.policy))].sort();
}

function noSecretsIn(diagnostics: readonly Diagnostic[]): void {
    const text = diagnostics.map((d) => d.message).join("\n");
    expect(text).not.toContain(GITLAB_TOKEN);
    expect(text).not.toContain("PRIVATE KEY");
    expect(text).not.toContain("client-key-data");
}

function byName(run: PolicyRun, name: string): PackResource {
    const r = run.resources.find((x) => x.name === name);
    if (r === undefined) {
        throw new Error(`no resource ${name}`);
    }
    return r;
}

describe("the pack over the whole program (Pulumi.prod.yaml, stack prod)", () => {
    let base: PolicyRun;

    beforeAll(async () => {
        const { raw, secretKeys } = prodConfig();
        base = await runPolicyProgram(raw, secretKeys);
    });

    test("the run holds what the policies read", () => {
        const types = new Set(base.resources.map((r) => r.type));
        for (const t of [
            "pulumi:pulumi:Stack",
            "command:remote:Command",
            "kubernetes:helm.sh/v4:Chart",
            "kubernetes:argoproj.io/v1alpha1:Application",
            "kubernetes:argoproj.io/v1alpha1:AppProject",
            "pulumi:providers:gitlab",
        ]) {
            expect([t, types.has(t)]).toEqual([t, true]);
        }
        expect(base.resources.filter((r) => r.name.endsWith("-connect"))).toHaveLength(5);
        expect(base.resources.filter((r) => r.name.endsWith("-firewall-apply"))).toHaveLength(5);
    });

    test.each([
        ["config.eea.json", EEA],
        ["config.strict-no.json", STRICT_NO],
    ])("zero violations, zero advisories with %s", async (_name, config) => {
        const diagnostics = await runPack(POLICIES, base.resources, config);
        expect(diagnostics).toEqual([]);
    });

    test("a node in the US: node-location-allowed names its connect command", async () => {
        const run = await runWith((raw) => {
            raw.nodes["osl-worker-2"].location.country = "US";
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["node-location-allowed"]);
        expect(mandatory(d)).toEqual([expect.stringMatching(/osl-worker-2-connect: node osl-worker-2 is in country "US"; allowed: AT, BE/)]);
    });

    test("a node with no location: the config schema refuses it, so the recorded connect command is changed instead", async () => {
        // infra/config.ts requires nodes.*.location: a stack file cannot express this case, only
        // a program that forgets to declare it. The declaration is taken off the recorded command.
        const { raw, secretKeys } = prodConfig();
        delete raw.nodes["osl-cp-1"].location;
        expect(() => validateConfig(raw, new Set(secretKeys))).toThrow(/nodes\.osl-cp-1\.location/);
        const resources = base.resources.map((r) => {
            if (r.name !== "osl-cp-1-connect") {
                return r;
            }
            const triggers = (r.props.triggers as any[]).map((t) => {
                if (t !== null && typeof t === "object" && "zerotouchNode" in t) {
                    const node = { ...t.zerotouchNode };
                    delete node.location;
                    return { zerotouchNode: node };
                }
                return t;
            });
            return { ...r, props: { ...r.props, triggers } };
        });
        const d = await runPack(POLICIES, resources, EEA);
        expect(fired(d)).toEqual(["node-location-allowed"]);
        expect(mandatory(d)).toEqual([expect.stringMatching(/osl-cp-1-connect: node osl-cp-1 has no location/)]);
    });

    test("an extra firewall rule opening 6443 to 198.18.0.0/15: firewall-management-ports names each node's firewall", async () => {
        const run = await runWith((raw) => {
            raw.firewall = { extraRules: [{ name: "partner-api", protocol: "tcp", ports: 6443, from: ["198.18.0.0/15"] }] };
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["firewall-management-ports"]);
        const messages = mandatory(d);
        expect(messages).toHaveLength(5);
        for (const node of ["osl-cp-1", "osl-cp-2", "osl-cp-3", "osl-worker-1", "osl-worker-2"]) {
            expect(messages).toContainEqual(expect.stringContaining(`${node}-firewall-apply: node ${node} rule partner-api opens "6443" (management port 6443) to 198.18.0.0/15, outside`));
        }
        expect(d.every((x) => x.urn?.includes("-firewall-apply"))).toBe(true);
    });

    test("an extra rule opening the kubelet to everyone fires too; one on another port does not", async () => {
        const run = await runWith((raw) => {
            raw.firewall = {
                extraRules: [
                    { name: "kubelet-any", protocol: "tcp", ports: 10250, from: "any" },
                    { name: "nodeports", protocol: "tcp", ports: [30000, 32767], from: ["198.18.0.0/15"] },
                ],
            };
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["firewall-management-ports"]);
        expect(mandatory(d)).toHaveLength(5);
        expect(mandatory(d).every((m) => m.includes('rule kubelet-any opens "10250"') && m.includes('"any"'))).toBe(true);
        expect(mandatory(d).some((m) => m.includes("nodeports"))).toBe(false);
    });

    test("an Application repo on a host off the allowlist: endpoint-hosts-allowed names the Application", async () => {
        const run = await runWith((raw) => {
            raw.gitops.gitlab.baseUrl = "https://gitlab.example.us";
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["endpoint-hosts-allowed"]);
        const messages = mandatory(d);
        expect(messages).toContainEqual(expect.stringMatching(/Application applications-app-backend-service-prod: spec.source.repoURL is on host "gitlab.example.us"; allowed: gitlab.example.com/));
        // The same base URL also moves the GitLab provider and the AppProject's source.
        expect(messages).toContainEqual(expect.stringMatching(/gitlab gitlab: baseUrl is on host "gitlab.example.us"/));
        expect(messages).toContainEqual(expect.stringMatching(/AppProject applications-project-prod: spec.sourceRepos\[0\] is on host "gitlab.example.us"/));
    });

    test("an image from a registry off the allowlist (gitops.argocd.values): image-registries-allowed names the chart", async () => {
        const run = await runWith((raw) => {
            raw.gitops.argocd.values = { redis: { image: { repository: "registry.example.us/mirror/redis" } } };
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["image-registries-allowed"]);
        expect(mandatory(d)).toEqual([
            expect.stringMatching(/Chart argocd-chart: values.redis.image.repository is "registry.example.us\/mirror\/redis" from registry "registry.example.us"; allowed: quay.io, ghcr.io, public.ecr.aws/),
        ]);
    });

    test("an Application's inline values without DATA_RESIDENCY_MODE: workload-residency-mode names it", async () => {
        const run = await runWith((raw) => {
            raw.gitops.applications["backend-service-prod"].values = { replicaCount: 2, env: [{ name: "LOG_LEVEL", value: "info" }] };
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["workload-residency-mode"]);
        expect(mandatory(d)).toEqual([expect.stringMatching(/Application applications-app-backend-service-prod: inline Helm values .* set no DATA_RESIDENCY_MODE/)]);
    });

    test("inline values that set it pass", async () => {
        const run = await runWith((raw) => {
            raw.gitops.applications["backend-service-prod"].values = { env: [{ name: "DATA_RESIDENCY_MODE", value: "strict_eea" }] };
        });
        expect(await runPack(POLICIES, run.resources, EEA)).toEqual([]);
    });

    test("the Argo CD chart override turning a component's mode off: workload-residency-mode names the chart", async () => {
        const run = await runWith((raw) => {
            raw.gitops.argocd.values = { server: { env: [{ name: "DATA_RESIDENCY_MODE", value: "off" }] } };
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["workload-residency-mode"]);
        expect(mandatory(d)).toEqual(["workload-residency-mode: Chart argocd-chart: values.server.env has DATA_RESIDENCY_MODE \"off\"; allowed: DATA_RESIDENCY_MODE=strict_eea"]);
    });

    test("selfHeal off: no config turns it off, so the recorded Application is changed; argocd-sync-automated names it", async () => {
        const resources = base.resources.map((r) =>
            r.type === "kubernetes:argoproj.io/v1alpha1:Application"
                ? { ...r, props: { ...r.props, spec: { ...(r.props.spec as any), syncPolicy: { ...(r.props.spec as any).syncPolicy, automated: { prune: true, selfHeal: false } } } } }
                : r,
        );
        const d = await runPack(POLICIES, resources, EEA);
        expect(fired(d)).toEqual(["argocd-sync-automated"]);
        expect(mandatory(d)).toEqual(["argocd-sync-automated: Application applications-app-backend-service-prod: spec.syncPolicy.automated.selfHeal is false; allowed: true"]);
    });

    test("a kubeconfig in an output that is not secret: credential-outputs-secret names the output, never the value", async () => {
        // CrossGuard decrypts secrets before policies see them, so the case is a kubeconfig
        // exported where plain outputs are (the platform object), as a program change would.
        const stack = byName(base, `zerotouch-${base.stack}`);
        const wrapped = stack.outputs!.kubeconfig as { value: string };
        const platform = stack.outputs!.platform as Record<string, any>;
        const leaked = { ...stack, outputs: { ...stack.outputs, platform: { ...platform, kubernetes: { ...platform.kubernetes, kubeconfig: wrapped.value } } } };
        const resources = base.resources.map((r) => (r === stack ? leaked : r));
        const d = await runPack(POLICIES, resources, EEA);
        expect(fired(d)).toEqual(["credential-outputs-secret"]);
        expect(mandatory(d)).toEqual([
            expect.stringMatching(/stack output platform: platform.kubernetes.kubeconfig holds a kubeconfig with credentials \(value not shown\) in an output that is not secret/),
        ]);
        noSecretsIn(d);
    });

    test("the kubeconfig exported as plain text reads the same to a policy: CrossGuard shows no secrecy", async () => {
        const stack = byName(base, `zerotouch-${base.stack}`);
        expect(stack.outputs!.kubeconfig).toEqual(secretValue(expect.any(String)));
        const plain = { ...stack, outputs: { ...stack.outputs, kubeconfig: (stack.outputs!.kubeconfig as { value: string }).value } };
        const d = await runPack(POLICIES, base.resources.map((r) => (r === stack ? plain : r)), EEA);
        // Documented limit (pulumi/pulumi-policy#241); the program test asserts the output's secrecy.
        expect(d).toEqual([]);
    });

    test("the kubeconfig command without secret stdout: credential-outputs-secret names the command", async () => {
        const resources = base.resources.map((r) => (r.name === "kubernetes-kubeconfig" ? { ...r, additionalSecretOutputs: [] } : r));
        expect(byName(base, "kubernetes-kubeconfig").additionalSecretOutputs).toEqual(expect.arrayContaining(["stdout", "stderr"]));
        const d = await runPack(POLICIES, resources, EEA);
        expect(fired(d)).toEqual(["credential-outputs-secret"]);
        expect(mandatory(d)).toEqual([expect.stringMatching(/command kubernetes-kubeconfig: stdout holds a kubeconfig with credentials \(value not shown\) but is not secret/)]);
        noSecretsIn(d);
    });

    test("a node without a pinned host key in prod: ssh-host-key-pinned names every command that connects unpinned", async () => {
        const run = await runWith((raw) => {
            delete raw.nodes["osl-worker-1"].sshHostKey;
        });
        const d = await runPack(POLICIES, run.resources, EEA);
        expect(fired(d)).toEqual(["ssh-host-key-pinned"]);
        const messages = mandatory(d);
        expect(messages).toContainEqual(expect.stringMatching(/command osl-worker-1-connect \(host "203.0.113.21", stack prod\): connection.hostKey is not set/));
        expect(messages.every((m) => m.includes('"203.0.113.21"'))).toBe(true);
    });

    test("a node in Sweden passes the EEA config and fails the Norway-only one", async () => {
        const run = await runWith((raw) => {
            raw.nodes["osl-worker-2"].location.country = "SE";
        });
        expect(await runPack(POLICIES, run.resources, EEA)).toEqual([]);
        const d = await runPack(POLICIES, run.resources, STRICT_NO);
        expect(mandatory(d)).toEqual(['node-location-allowed: node connect command osl-worker-2-connect: node osl-worker-2 is in country "SE"; allowed: NO']);
    });
});
