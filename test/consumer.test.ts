/**
 * The StackReference reader (stacks/reference.ts) and the example consumer stack
 * (stacks/consumer) under mocks: the platform's outputs come back typed and validated, the
 * kubeconfig stays a secret, and the team's AppProject and Application are built from the
 * outputs and validate against Argo CD's CRDs.
 */
import { crdValidator, errorsOf } from "./support/crdSchema";
import type { Recorder } from "./support/mocks";
import { isSecret, resolve, wireSecret } from "./support/mocks";

const STACK_REFERENCE = "pulumi:pulumi:StackReference";
const KUBECONFIG = "apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: consumer-kube-SECRET}}]\n";

/** A platform output object as a zerotouch stack exports it. */
function platformOutputs(gitops: boolean): Record<string, unknown> {
    return {
        outputsVersion: 1,
        project: "zerotouch",
        stack: "prod",
        nodes: {},
        controlPlaneNodes: ["osl-cp-1"],
        workerNodes: [],
        vpnCidr: "10.8.0.0/24",
        managementCidrs: ["198.51.100.0/28"],
        firewall: { podCidrs: ["10.42.0.0/16"], extraRules: [{ name: "flannel-vxlan", protocol: "udp", ports: 8472, from: "cluster" }] },
        etcd: { caCertPem: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", clientEndpoints: ["https://203.0.113.11:2379"], members: {} },
        kubernetes: { mode: "k3s", apiEndpoint: "api.osl.example.net", apiServerUrl: "https://api.osl.example.net:6443" },
        gitops: gitops
            ? {
                  argocdUrl: "https://argocd.vpn.osl.example.net",
                  argocdNamespace: "argocd",
                  webhookUrl: "https://argocd-hooks.osl.example.net/api/webhook",
                  manifestsRepoUrl: "https://gitlab.example.com/platform/manifests.git",
                  gitopsTokenExpiresAt: "2027-05-25",
                  appProjects: ["shop/backend-service"],
                  applications: ["backend-service-prod"],
              }
            : null,
    };
}

async function runConsumer(outputs: Record<string, unknown>): Promise<{ recorder: Recorder; exports: Record<string, any>; error?: unknown }> {
    let recorder!: Recorder;
    let exports: Record<string, any> = {};
    let error: unknown;
    await jest.isolateModulesAsync(async () => {
        const mocks = await import("./support/mocks");
        recorder = await mocks.installMocks({
            project: "zerotouch-team-app",
            stack: "dev",
            config: {
                "zerotouch-team-app:platformStack": "acme/zerotouch/prod",
                "zerotouch-team-app:team": "payments",
                "zerotouch-team-app:path": "apps/payments",
                "zerotouch-team-app:namespace": "payments",
                "zerotouch-team-app:valueFiles": JSON.stringify(["values-prod.yaml"]),
            },
            stateFor: (type) =>
                type === STACK_REFERENCE ? { outputs: { platform: outputs, kubeconfig: KUBECONFIG }, secretOutputNames: ["kubeconfig"] } : undefined,
        });
        try {
            exports = (await import("../stacks/consumer/index")) as Record<string, any>;
            await resolve(exports.manifestsRepoUrl);
        } catch (err) {
            error = err;
        }
        await mocks.settle();
    });
    return { recorder, exports, error };
}

describe("a team's stack on the platform", () => {
    test("reads the platform through one StackReference and deploys its Application with the outputs", async () => {
        const { recorder, exports } = await runConsumer(platformOutputs(true));
        expect(recorder.ofType(STACK_REFERENCE).map((r) => r.inputs.name)).toEqual(["acme/zerotouch/prod"]);
        expect(await resolve(exports.manifestsRepoUrl)).toBe("https://gitlab.example.com/platform/manifests.git");
        const app = recorder.byName("payments-application");
        const project = recorder.byName("payments-project");
        expect(recorder.dependsOn(app.name, project.name)).toBe(true);
        expect(app.inputs.spec).toMatchObject({
            project: "payments",
            source: { repoURL: "https://gitlab.example.com/platform/manifests.git", path: "apps/payments", helm: { valueFiles: ["values-prod.yaml"] } },
            destination: { namespace: "payments" },
            syncPolicy: { automated: { prune: true, selfHeal: true } },
        });
        expect(project.inputs.spec.sourceRepos).toEqual(["https://gitlab.example.com/platform/manifests.git"]);
        for (const [r, file] of [[app, "application-crd.yaml"], [project, "appproject-crd.yaml"]] as const) {
            const validate = crdValidator(file);
            const { apiVersion, kind, metadata, spec } = r.inputs;
            expect([validate({ apiVersion, kind, metadata: { name: metadata.name, namespace: metadata.namespace }, spec }), errorsOf(validate)]).toEqual([true, []]);
        }
    });

    test("the kubeconfig stays a secret across the reference", async () => {
        const { recorder } = await runConsumer(platformOutputs(true));
        const provider = recorder.byName("platform");
        expect(provider.inputs.kubeconfig).toBe(KUBECONFIG);
        expect(wireSecret(provider.wire, ["kubeconfig"])).toBe(true);
        await jest.isolateModulesAsync(async () => {
            const mocks = await import("./support/mocks");
            await mocks.installMocks({
                stateFor: (type) =>
                    type === STACK_REFERENCE ? { outputs: { platform: platformOutputs(true), kubeconfig: KUBECONFIG }, secretOutputNames: ["kubeconfig"] } : undefined,
            });
            const { readPlatform } = await import("../stacks/reference");
            const ref = readPlatform("acme/zerotouch/prod");
            expect(await isSecret(ref.kubeconfig)).toBe(true);
            expect((await resolve(ref.outputs)).kubernetes.apiEndpoint).toBe("api.osl.example.net");
            await mocks.settle();
        });
    });

    test("a platform output that breaks the contract is refused where it is read, naming each field", async () => {
        // What readPlatform applies to the referenced output (an Output that throws cannot be awaited under mocks).
        const { parsePlatformOutputs } = await import("../stacks/outputs");
        const broken = { ...platformOutputs(true), outputsVersion: 2, gitops: { ...(platformOutputs(true).gitops as object), argocdUrl: 7 } };
        expect(() => parsePlatformOutputs(broken, "stack acme/zerotouch/prod")).toThrow(
            /^stack acme\/zerotouch\/prod: the "platform" output does not match the zerotouch outputs contract v1: outputsVersion: .*; gitops\.argocdUrl: Invalid input: expected string, received number$/,
        );
        expect(parsePlatformOutputs(platformOutputs(false), "x").gitops).toBeNull();
    });

    test("a platform stack last deployed before the firewall output existed still reads", async () => {
        const { parsePlatformOutputs } = await import("../stacks/outputs");
        const { firewall, ...older } = platformOutputs(true);
        expect(firewall).toBeDefined();
        expect(parsePlatformOutputs(older, "x").firewall).toBeUndefined();
    });

    test("the platform stack's name is checked", async () => {
        const { readPlatform } = await import("../stacks/reference");
        expect(() => readPlatform("prod")).toThrow(/platform stack "prod": allowed: <organization>\/<project>\/<stack>/);
    });
});
