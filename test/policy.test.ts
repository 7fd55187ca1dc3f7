/**
 * Policy unit tests without the CLI: a compliant fixture per resource type
 * (test/fixtures/policy/compliant.json), one field changed per case, the violation text asserted;
 * unknown values (as the engine sends them during preview) are violations for the fail-closed
 * rules; the config schemas accept the shipped configs and reject bad ones.
 */
import Ajv from "ajv";
import { readFileSync } from "fs";
import * as path from "path";

import type { PolicyPackConfig, ResourceValidationPolicy } from "@pulumi/policy";

import { argocdSyncAutomated } from "../policy/argocdSync";
import { clusterAdminBreakGlass } from "../policy/clusterAdmin";
import { EEA_AND_EFTA } from "../policy/countries";
import { credentialKind, credentialOutputsSecret } from "../policy/credentialOutputs";
import { endpointHostsAllowed } from "../policy/endpointHosts";
import { firewallManagementPorts } from "../policy/firewallPorts";
import { imageRegistriesAllowed } from "../policy/imageRegistries";
import { endpointHost, hostAllowed, imageRegistry, UNKNOWN_MARKERS } from "../policy/lib";
import { nodeLocationAllowed } from "../policy/nodeLocation";
import { POLICIES } from "../policy/policies";
import { sshHostKeyPinned } from "../policy/sshHostKey";
import { workloadResidencyMode } from "../policy/workloadResidency";
import { AnyPolicy, mandatory, PackResource, runPack, UNKNOWN_OBJECT, UNKNOWN_STRING, validateResource, validateStack } from "./support/policyHarness";

const POLICY_DIR = path.join(__dirname, "..", "policy");
const FIXTURES = JSON.parse(readFileSync(path.join(__dirname, "fixtures", "policy", "compliant.json"), "utf8")) as Record<string, PackResource>;
const EEA = JSON.parse(readFileSync(path.join(POLICY_DIR, "config.eea.json"), "utf8")) as PolicyPackConfig;
const STRICT_NO = JSON.parse(readFileSync(path.join(POLICY_DIR, "config.strict-no.json"), "utf8")) as PolicyPackConfig;
const UNIT: PolicyPackConfig = {
    ...EEA,
    "image-registries-allowed": { allowedRegistries: ["quay.io", "ghcr.io", "public.ecr.aws", "registry.example.eu"] },
};

/** A copy of a fixture with the value at `keys` (a dotted path; numbers index arrays) replaced, or deleted when `value` is undefined. */
function changed(name: string, keys: string, value: unknown): PackResource {
    const r = structuredClone(FIXTURES[name]);
    const parts = keys.split(".");
    let cur: any = r;
    for (const k of parts.slice(0, -1)) {
        cur = cur[k];
    }
    const last = parts[parts.length - 1];
    if (value === undefined) {
        delete cur[last];
    } else {
        cur[last] = value;
    }
    return r;
}

async function messages(policy: AnyPolicy, r: PackResource | PackResource[], config: PolicyPackConfig = UNIT): Promise<string[]> {
    const d =
        "validateStack" in policy
            ? await validateStack(policy, Array.isArray(r) ? r : [r], config)
            : await validateResource(policy, r as PackResource, config);
    return mandatory(d).map((m) => m.slice(policy.name.length + 2));
}

/** A test body: `policy` on `fixture` with the value at `keys` unknown (`marker`) reports `expected`. */
function failsClosed(policy: AnyPolicy) {
    return async (fixture: string, keys: string, marker: unknown, expected: string): Promise<void> => {
        expect((await messages(policy, changed(fixture, keys, marker))).join("\n")).toContain(expected);
    };
}

describe("the pack", () => {
    test("every policy: kebab-case name, description, mandatory, a config schema; names unique", () => {
        for (const p of POLICIES) {
            expect(p.name).toMatch(/^[a-z]+(-[a-z]+)*$/);
            expect(p.description.length).toBeGreaterThan(20);
            expect(p.enforcementLevel).toBe("mandatory");
            expect(p.configSchema?.properties).toBeDefined();
        }
        expect(new Set(POLICIES.map((p) => p.name)).size).toBe(POLICIES.length);
    });

    test("the unknown markers are the SDK's", () => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const proxy = require("@pulumi/policy/proxy") as Record<string, unknown>;
        const sdk = Object.entries(proxy).filter(([k, v]) => /^unknown[A-Z]\w*Value$/.test(k) && typeof v === "string").map(([, v]) => v);
        expect([...UNKNOWN_MARKERS].sort()).toEqual([...sdk].sort());
    });

    test("every compliant fixture passes every policy", async () => {
        expect(await runPack(POLICIES, Object.values(FIXTURES), UNIT)).toEqual([]);
    });

    test("the EEA list holds the EU, the EEA EFTA states and Switzerland, and the shipped config the same", () => {
        expect(EEA_AND_EFTA).toHaveLength(31);
        expect(EEA_AND_EFTA).toEqual(expect.arrayContaining(["DE", "GR", "NO", "IS", "LI", "CH"]));
        expect(EEA_AND_EFTA).not.toContain("GB");
        expect((EEA["node-location-allowed"] as { allowedCountries: string[] }).allowedCountries).toEqual(EEA_AND_EFTA);
        expect((STRICT_NO["node-location-allowed"] as { allowedCountries: string[] }).allowedCountries).toEqual(["NO"]);
    });
});

describe("config schemas", () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validators = Object.fromEntries(
        POLICIES.map((p) => [
            p.name,
            ajv.compile({
                type: "object",
                properties: { ...p.configSchema!.properties, enforcementLevel: { enum: ["advisory", "mandatory", "remediate", "disabled"] } },
                required: p.configSchema!.required ?? [],
                additionalProperties: false,
            }),
        ]),
    );
    const check = (config: Record<string, unknown>): string[] =>
        Object.entries(config).flatMap(([name, c]) => {
            const v = validators[name];
            if (v === undefined) {
                return [`${name}: no such policy`];
            }
            return v(c) ? [] : [`${name}: ${ajv.errorsText(v.errors)}`];
        });

    test.each([["config.eea.json"], ["config.strict-no.json"]])("%s is valid and configures every policy", (file) => {
        const config = JSON.parse(readFileSync(path.join(POLICY_DIR, file), "utf8")) as Record<string, unknown>;
        expect(check(config)).toEqual([]);
        expect(Object.keys(config).sort()).toEqual(POLICIES.map((p) => p.name).sort());
    });

    test.each([
        [{ "node-location-allowed": { allowedCountries: ["no"] } }, /allowedCountries\/0 must match pattern/],
        [{ "node-location-allowed": { allowedCountries: [] } }, /must NOT have fewer than 1 items/],
        [{ "node-location-allowed": { allowedCountry: ["NO"] } }, /must NOT have additional properties/],
        [{ "endpoint-hosts-allowed": { allowedHosts: ["https://gitlab.example.com"] } }, /must match pattern/],
        [{ "image-registries-allowed": { allowedRegistries: "quay.io" } }, /must be array/],
        [{ "firewall-management-ports": { allowedSourceCidrs: ["10.8.0.0"] } }, /must match pattern/],
        [{ "firewall-management-ports": { protectedPorts: ["6443/tcp"] } }, /must match pattern/],
        [{ "cluster-admin-break-glass": { breakGlassGroup: "" } }, /must NOT have fewer than 1 characters/],
        [{ "ssh-host-key-pinned": { stacks: "prod" } }, /must be array/],
        [{ "credential-outputs-secret": { secretOutputs: ["kubeconfig", "kubeconfig"] } }, /duplicate items/],
        [{ "workload-residency-mode": { enforcementLevel: "strict" } }, /must be equal to one of the allowed values/],
        [{ "no-such-policy": {} }, /no such policy/],
    ])("rejects %j", (config, expected) => {
        expect(check(config).join("\n")).toMatch(expected);
    });
});

describe("node-location-allowed", () => {
    test("a node in the US", async () => {
        expect(await messages(nodeLocationAllowed, changed("connect", "props.triggers.1.zerotouchNode.location.country", "US"))).toEqual([
            `node connect command fra-cp-1-connect: node fra-cp-1 is in country "US"; allowed: ${EEA_AND_EFTA.join(", ")}`,
        ]);
    });
    test("the Norway-only config refuses Germany", async () => {
        expect(await messages(nodeLocationAllowed, FIXTURES.connect, STRICT_NO)).toEqual(['node connect command fra-cp-1-connect: node fra-cp-1 is in country "DE"; allowed: NO']);
    });
    test("no location", async () => {
        expect(await messages(nodeLocationAllowed, changed("connect", "props.triggers.1.zerotouchNode.location", undefined))).toEqual([
            expect.stringContaining("node connect command fra-cp-1-connect: node fra-cp-1 has no location (not set)"),
        ]);
    });
    test("a connect command with no node declaration", async () => {
        expect(await messages(nodeLocationAllowed, changed("connect", "props.triggers", ["abc"]))).toEqual([expect.stringContaining("declares no node (triggers carry no zerotouchNode)")]);
    });
    test("a declared host other than the one it connects to", async () => {
        expect(await messages(nodeLocationAllowed, changed("connect", "props.connection.host", "198.51.100.7"))).toEqual([
            'node connect command fra-cp-1-connect: node fra-cp-1 declares host "192.0.2.10" but connects to "198.51.100.7"; allowed: the declared host, known from config',
        ]);
    });
    test.each([
        ["props.triggers.1.zerotouchNode.location.country", UNKNOWN_STRING, 'location.country is unknown during preview'],
        ["props.triggers.1.zerotouchNode.location", UNKNOWN_OBJECT, "has no location (unknown during preview)"],
        ["props.triggers.1", UNKNOWN_OBJECT, "its node declaration (triggers zerotouchNode) is unknown during preview"],
        ["props.triggers", UNKNOWN_OBJECT, "its node declaration (triggers zerotouchNode) is unknown during preview"],
    ])("fails closed: %s unknown", async (keys, marker, expected) => {
        expect((await messages(nodeLocationAllowed, changed("connect", keys, marker))).join("\n")).toContain(expected);
    });
    test("a step whose payload hash alone is unknown (a secret step in a new stack's preview) declares no node", async () => {
        const step = changed("firewall", "props.triggers", [UNKNOWN_STRING]);
        expect(await messages(nodeLocationAllowed, { ...step, name: "etcd-fra-cp-1-member", urn: step.urn.replace(/::[^:]+$/, "::etcd-fra-cp-1-member") })).toEqual([]);
        expect(await messages(firewallManagementPorts, [FIXTURES.connect, step])).toEqual([]);
    });
    test("a connect command whose payload hash is unknown still shows its node", async () => {
        expect(await messages(nodeLocationAllowed, changed("connect", "props.triggers.0", UNKNOWN_STRING))).toEqual([]);
    });
    test("without fail-closed handling CrossGuard would only advise: reading an unknown through the proxy", async () => {
        const naive: ResourceValidationPolicy = {
            name: "naive",
            description: "reads the country through the proxy",
            enforcementLevel: "mandatory",
            validateResource: (args, report) => {
                if ((args.props.triggers[1].zerotouchNode.location.country as string) !== "DE") {
                    report("not DE");
                }
            },
        };
        const d = await validateResource(naive, changed("connect", "props.triggers.1.zerotouchNode.location.country", UNKNOWN_STRING));
        expect(d).toEqual([expect.objectContaining({ enforcementLevel: "advisory", message: expect.stringContaining("can't be known during preview") })]);
    });
});

describe("endpoint-hosts-allowed", () => {
    test("an Application repo on another host; credentials in the URL never shown", async () => {
        expect(await messages(endpointHostsAllowed, changed("application", "props.spec.source.repoURL", "https://user:s3cret@git.example.us/x.git"))).toEqual([
            'Application applications-app-shop: spec.source.repoURL is on host "git.example.us"; allowed: gitlab.example.com, argoproj.github.io',
        ]);
    });
    test("an Application repo unknown during preview", async () => {
        expect(await messages(endpointHostsAllowed, changed("application", "props.spec.source.repoURL", UNKNOWN_STRING))).toEqual([
            "Application applications-app-shop: spec.source.repoURL is unknown during preview; allowed: a known URL on gitlab.example.com, argoproj.github.io",
        ]);
    });
    test("an AppProject allowing any repository", async () => {
        expect(await messages(endpointHostsAllowed, changed("appProject", "props.spec.sourceRepos", ["*"]))).toEqual([expect.stringContaining('spec.sourceRepos[0] is "*" (any repository)')]);
    });
    test("the GitLab provider without baseUrl (gitlab.com) or on another host", async () => {
        expect(await messages(endpointHostsAllowed, changed("gitlab", "props.baseUrl", undefined))).toEqual([expect.stringContaining("gitlab gitlab: baseUrl is not set")]);
        const other = await messages(endpointHostsAllowed, changed("gitlab", "props.baseUrl", "https://gitlab.com/api/v4/"));
        expect(other).toEqual(['gitlab gitlab: baseUrl is on host "gitlab.com"; allowed: gitlab.example.com, argoproj.github.io']);
    });
    test("a Helm repository on another host, and an OCI chart", async () => {
        expect(await messages(endpointHostsAllowed, changed("chart", "props.repositoryOpts.repo", "https://charts.example.us"))).toEqual([
            'Chart argocd-chart: repositoryOpts.repo is on host "charts.example.us"; allowed: gitlab.example.com, argoproj.github.io',
        ]);
        const oci = changed("chart", "props.repositoryOpts", undefined);
        oci.props.chart = "oci://registry.example.us/charts/argo-cd";
        expect(await messages(endpointHostsAllowed, oci)).toEqual([expect.stringContaining('chart is on host "registry.example.us"')]);
    });
    test("host matching", () => {
        expect(endpointHost("git@gitlab.example.com:platform/manifests.git")).toBe("gitlab.example.com");
        expect(endpointHost("https://GitLab.Example.com:8443/x")).toBe("gitlab.example.com");
        expect(hostAllowed("a.example.eu", ["*.example.eu"])).toBe(true);
        expect(hostAllowed("example.eu", ["*.example.eu"])).toBe(false);
        expect(hostAllowed("evil-example.eu", ["*.example.eu"])).toBe(false);
    });
});

describe("image-registries-allowed", () => {
    test("an image from Docker Hub in a Deployment", async () => {
        expect(await messages(imageRegistriesAllowed, changed("deployment", "props.spec.template.spec.containers.0.image", "nginx:1.27"))).toEqual([
            'Deployment api: spec.template.spec.containers[0].image is "nginx:1.27" from registry "docker.io"; allowed: quay.io, ghcr.io, public.ecr.aws, registry.example.eu',
        ]);
    });
    test("an init container and a CronJob are checked too", async () => {
        expect(await messages(imageRegistriesAllowed, changed("deployment", "props.spec.template.spec.initContainers.0.image", "ghcr.io.evil.us/x:1"))).toEqual([expect.stringContaining("initContainers[0].image")]);
        expect(await messages(imageRegistriesAllowed, changed("cronJob", "props.spec.jobTemplate.spec.template.spec.containers.0.image", "registry.example.us/r:1"))).toEqual([
            expect.stringContaining('CronJob report: spec.jobTemplate.spec.template.spec.containers[0].image is "registry.example.us/r:1"'),
        ]);
    });
    test("the chart's values naming an image elsewhere", async () => {
        expect(await messages(imageRegistriesAllowed, changed("chart", "props.values.value.redis.image.repository", "docker.io/library/redis"))).toEqual([
            'Chart argocd-chart: values.redis.image.repository is "docker.io/library/redis" from registry "docker.io"; allowed: quay.io, ghcr.io, public.ecr.aws, registry.example.eu',
        ]);
    });
    test("an Application's inline values naming an image elsewhere", async () => {
        expect(await messages(imageRegistriesAllowed, changed("application", "props.spec.source.helm.valuesObject.image.repository", "registry.example.us/shop/api"))).toEqual([
            expect.stringContaining("spec.source.helm.valuesObject.image.repository"),
        ]);
    });
    test.each([
        ["chart", "props.values", UNKNOWN_OBJECT, "Chart argocd-chart: its images are unknown during preview"],
        ["chart", "props.values.value.redis.image.repository", UNKNOWN_STRING, "values.redis.image.repository is unknown during preview"],
        ["deployment", "props.spec.template.spec.containers.0.image", UNKNOWN_STRING, "containers[0].image is unknown during preview"],
        ["deployment", "props.spec.template.spec", UNKNOWN_OBJECT, "its images are unknown during preview"],
    ])("fails closed: %s %s unknown", failsClosed(imageRegistriesAllowed));
    test("registry parsing", () => {
        expect(imageRegistry("redis")).toBe("docker.io");
        expect(imageRegistry("library/redis:8")).toBe("docker.io");
        expect(imageRegistry("localhost:5000/x")).toBe("localhost");
        expect(imageRegistry("registry.example.eu:5000/x/y@sha256:abc")).toBe("registry.example.eu");
    });
});

describe("workload-residency-mode", () => {
    test("a container without the variable", async () => {
        expect(await messages(workloadResidencyMode, changed("deployment", "props.spec.template.spec.containers.0.env", []))).toEqual([
            "Deployment api: container api (containers[0]) has DATA_RESIDENCY_MODE not set; allowed: DATA_RESIDENCY_MODE=strict_eea",
        ]);
    });
    test("a container with another value, or one from a Secret", async () => {
        expect(await messages(workloadResidencyMode, changed("cronJob", "props.spec.jobTemplate.spec.template.spec.containers.0.env.0.value", "off"))).toEqual([
            'CronJob report: container report (containers[0]) has DATA_RESIDENCY_MODE "off"; allowed: DATA_RESIDENCY_MODE=strict_eea',
        ]);
        expect(await messages(workloadResidencyMode, changed("deployment", "props.spec.template.spec.initContainers.0.env.0", { name: "DATA_RESIDENCY_MODE", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }))).toEqual([
            expect.stringContaining("container migrate (initContainers[0]) has DATA_RESIDENCY_MODE set from a Secret or ConfigMap"),
        ]);
    });
    test("the Argo CD chart without it in global.env, the list that reaches every component", async () => {
        expect(await messages(workloadResidencyMode, changed("chart", "props.values.value.global.env", undefined))).toEqual([
            "Chart argocd-chart: values.global.env (reaches every component of chart argo-cd) has DATA_RESIDENCY_MODE not set; allowed: DATA_RESIDENCY_MODE=strict_eea in global.env",
        ]);
    });
    test("an env key the pinned chart does not read fails closed, even with the right value (Helm drops it)", async () => {
        expect(await messages(workloadResidencyMode, changed("chart", "props.values.value.applicationSet", { env: [{ name: "DATA_RESIDENCY_MODE", value: "strict_eea" }] }))).toEqual([
            "Chart argocd-chart: values.applicationSet.env is not read by chart argo-cd 10.1.1 (Helm ignores it); allowed: env keys the chart reads, e.g. global.env",
        ]);
        // The key the chart does read there is fine.
        expect(await messages(workloadResidencyMode, changed("chart", "props.values.value.applicationSet", { extraEnv: [{ name: "DATA_RESIDENCY_MODE", value: "strict_eea" }] }))).toEqual([]);
    });
    test("a component's own env list setting another value", async () => {
        expect(await messages(workloadResidencyMode, changed("chart", "props.values.value.server", { env: [{ name: "DATA_RESIDENCY_MODE", value: "off" }] }))).toEqual([
            'Chart argocd-chart: values.server.env has DATA_RESIDENCY_MODE "off"; allowed: DATA_RESIDENCY_MODE=strict_eea',
        ]);
    });
    test("no post-renderer: the init containers no values key reaches would run without it", async () => {
        expect(await messages(workloadResidencyMode, changed("chart", "props.postRenderer", undefined))).toEqual([
            expect.stringMatching(/^Chart argocd-chart: chart argo-cd has no post-renderer adding DATA_RESIDENCY_MODE=strict_eea \(postRenderer.args null\); its init containers/),
        ]);
    });
    test("a chart from a local tarball or an OCI registry is the same chart to the policy", async () => {
        expect(await messages(workloadResidencyMode, changed("chart", "props.chart", "/srv/charts/argo-cd-10.1.1.tgz"))).toEqual([]);
        const local = changed("chart", "props.chart", "/srv/charts/argo-cd-10.1.1.tgz");
        expect(await messages(workloadResidencyMode, { ...local, props: { ...local.props, postRenderer: undefined } })).toEqual([expect.stringContaining("has no post-renderer")]);
        expect(await messages(workloadResidencyMode, changed("chart", "props.chart", "oci://registry.example.eu/charts/argo-cd"))).toEqual([]);
    });
    test("a chart version without an index of what it reads fails closed", async () => {
        expect(await messages(workloadResidencyMode, changed("chart", "props.version", "10.3.3"))).toEqual([
            'Chart argocd-chart: chart argo-cd version "10.3.3" has no index of the values it reads, so its env keys cannot be checked; allowed: version 10.1.1',
        ]);
    });
    test("Application inline values without it, or with another value", async () => {
        expect(await messages(workloadResidencyMode, changed("application", "props.spec.source.helm.valuesObject.env", [{ name: "LOG", value: "x" }]))).toEqual([
            expect.stringContaining("Application applications-app-shop: inline Helm values (spec.source.helm.valuesObject) set no DATA_RESIDENCY_MODE"),
        ]);
        expect(await messages(workloadResidencyMode, changed("application", "props.spec.source.helm.valuesObject.env.0.value", "relaxed"))).toEqual([
            'Application applications-app-shop: spec.source.helm.valuesObject.env has DATA_RESIDENCY_MODE "relaxed"; allowed: DATA_RESIDENCY_MODE=strict_eea',
        ]);
    });
    test("an Application without inline values is not this policy's business", async () => {
        expect(await messages(workloadResidencyMode, changed("application", "props.spec.source.helm", undefined))).toEqual([]);
    });
    test.each([
        ["deployment", "props.spec.template.spec.containers.0.env.0.value", UNKNOWN_STRING, "has DATA_RESIDENCY_MODE unknown during preview"],
        ["deployment", "props.spec.template.spec.containers", UNKNOWN_OBJECT, "its containers are unknown during preview"],
        ["chart", "props.values", UNKNOWN_OBJECT, "values are unknown during preview"],
        ["chart", "props.values.value.global.env", UNKNOWN_OBJECT, "values.global.env (reaches every component of chart argo-cd) has DATA_RESIDENCY_MODE unknown during preview"],
        ["chart", "props.postRenderer.args", UNKNOWN_OBJECT, "postRenderer.args unknown during preview"],
        ["application", "props.spec.source.helm.valuesObject", UNKNOWN_OBJECT, "valuesObject is unknown during preview"],
    ])("fails closed: %s %s unknown", failsClosed(workloadResidencyMode));
});

describe("firewall-management-ports", () => {
    const withRule = (rule: Record<string, unknown>) => {
        const fw = structuredClone(FIXTURES.firewall);
        ((fw.props.triggers as any[])[1].zerotouchFirewall.rules as unknown[]).push(rule);
        return [FIXTURES.connect, fw];
    };
    test("6443 open to a range outside the VPN", async () => {
        expect(await messages(firewallManagementPorts, withRule({ name: "partner", protocol: "tcp", ports: "6443", sources: ["198.18.0.0/15"] }))).toEqual([
            'firewall command fra-cp-1-firewall-apply: node fra-cp-1 rule partner opens "6443" (management port 6443) to 198.18.0.0/15, outside the VPN, pod and node CIDRs; allowed: 10.8.0.0/24, 10.42.0.0/16 and the nodes\' addresses',
        ]);
    });
    test.each([
        [{ name: "etcd-any", protocol: "tcp", ports: "2379-2380", sources: ["any"] }, '"any", everyone or unparsable'],
        [{ name: "kubelet-v6", protocol: "tcp", ports: "10250", sources: ["::/0"] }, '"::/0", everyone'],
        [{ name: "wide", protocol: "tcp", ports: "1-65535", sources: ["0.0.0.0/0"] }, "(management port 6443, 2379-2380, 10250)"],
        [{ name: "vpn-wider", protocol: "tcp", ports: "6443", sources: ["10.8.0.0/16"] }, "to 10.8.0.0/16, outside"],
        [{ name: "unknown", protocol: "tcp", ports: "6443", sources: [UNKNOWN_STRING] }, "to a source unknown during preview"],
        [{ name: "unknown-ports", protocol: "tcp", ports: UNKNOWN_STRING, sources: ["10.8.0.0/24"] }, "ports are unknown during preview"],
    ])("%j", async (rule, expected) => {
        expect((await messages(firewallManagementPorts, withRule(rule))).join("\n")).toContain(expected);
    });
    test("other ports may be open to everyone; management ports to the VPN, pods and nodes", async () => {
        expect(await messages(firewallManagementPorts, withRule({ name: "nodeports", protocol: "tcp", ports: "30000-32767", sources: ["any"] }))).toEqual([]);
    });
    test("a node address is allowed only when a node declares it", async () => {
        expect(await messages(firewallManagementPorts, [FIXTURES.firewall])).toEqual([expect.stringContaining("rule etcd opens")].concat(Array(2).fill(expect.stringContaining("192.0.2.10/32"))));
    });
    test("rules unknown during preview", async () => {
        expect(await messages(firewallManagementPorts, [FIXTURES.connect, changed("firewall", "props.triggers.1.zerotouchFirewall.rules", UNKNOWN_OBJECT)])).toEqual([
            "firewall command fra-cp-1-firewall-apply: its rules (triggers zerotouchFirewall.rules) are unknown during preview; allowed: rules known from config",
        ]);
    });
});

describe("argocd-sync-automated", () => {
    test.each([
        ["props.spec.syncPolicy.automated.selfHeal", false, "spec.syncPolicy.automated.selfHeal is false; allowed: true"],
        ["props.spec.syncPolicy.automated.prune", undefined, "spec.syncPolicy.automated.prune is not set; allowed: true"],
        ["props.spec.syncPolicy.automated", undefined, "spec.syncPolicy.automated is not set; allowed: {prune: true, selfHeal: true}"],
        ["props.spec.syncPolicy.automated.enabled", false, "spec.syncPolicy.automated.enabled is false; allowed: true or not set"],
        ["props.spec.syncPolicy.automated.selfHeal", UNKNOWN_STRING, "spec.syncPolicy.automated.selfHeal is unknown during preview; allowed: true"],
        ["props.spec.syncPolicy", UNKNOWN_OBJECT, "spec.syncPolicy.automated is unknown during preview; allowed: {prune: true, selfHeal: true}"],
    ])("%s = %j", async (keys, value, expected) => {
        expect(await messages(argocdSyncAutomated, changed("application", keys, value))).toEqual([`Application applications-app-shop: ${expected}`]);
    });
});

describe("cluster-admin-break-glass", () => {
    test("cluster-admin to another group, a user, or with no group configured", async () => {
        expect(await messages(clusterAdminBreakGlass, changed("clusterRoleBinding", "props.subjects.0.name", "developers"))).toEqual([
            'ClusterRoleBinding break-glass: grants cluster-admin to "Group" "developers"; allowed: only the Group "platform/cluster-admins"',
        ]);
        expect(await messages(clusterAdminBreakGlass, changed("clusterRoleBinding", "props.subjects.0", { kind: "User", name: "alice" }))).toEqual([expect.stringContaining('grants cluster-admin to "User" "alice"')]);
        expect(await messages(clusterAdminBreakGlass, FIXTURES.clusterRoleBinding, {})).toEqual([expect.stringContaining("allowed: no subject (no break-glass group is configured)")]);
    });
    test("other roles are not this policy's business; unknown roles and subjects fail closed", async () => {
        expect(await messages(clusterAdminBreakGlass, changed("clusterRoleBinding", "props.roleRef.name", "view"))).toEqual([]);
        expect(await messages(clusterAdminBreakGlass, changed("clusterRoleBinding", "props.roleRef.name", UNKNOWN_STRING))).toEqual([expect.stringContaining("roleRef is unknown during preview")]);
        expect(await messages(clusterAdminBreakGlass, changed("clusterRoleBinding", "props.subjects.0.name", UNKNOWN_STRING))).toEqual([expect.stringContaining('grants cluster-admin to "Group" unknown during preview')]);
    });
});

describe("ssh-host-key-pinned", () => {
    test("no host key in prod", async () => {
        expect(await messages(sshHostKeyPinned, changed("connect", "props.connection.hostKey", undefined))).toEqual([
            'command fra-cp-1-connect (host "192.0.2.10", stack prod): connection.hostKey is not set; allowed: a host key pinned in config (nodes.<node>.sshHostKey)',
        ]);
    });
    test("a key learnt on first connect (unknown at preview) fails closed; a malformed key is refused", async () => {
        expect(await messages(sshHostKeyPinned, changed("firewall", "props.connection.hostKey", UNKNOWN_STRING))).toEqual([expect.stringContaining("connection.hostKey is unknown during preview (learnt on first connect)")]);
        expect(await messages(sshHostKeyPinned, changed("connect", "props.connection.hostKey", "192.0.2.10 ssh-ed25519 AAAA"))).toEqual([expect.stringContaining('not a public key of a known type (starts "192.0.2.10")')]);
    });
    test("other stacks are not checked", async () => {
        const dev = changed("connect", "props.connection.hostKey", undefined);
        expect(await messages(sshHostKeyPinned, { ...dev, urn: dev.urn.replace("urn:pulumi:prod::", "urn:pulumi:dev::") })).toEqual([]);
    });
});

describe("credential-outputs-secret", () => {
    const stack = FIXTURES.stack;
    test("a private key, a kubeconfig, a token in a plain output: named, never shown", async () => {
        const leak = {
            ...stack,
            outputs: {
                ...stack.outputs,
                platform: { sshKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n", ci: { token: "glpat-leaked-SECRET-0123456789abcd" }, admin: { password: "hunter2-SECRET" } },
            },
        };
        const m = await messages(credentialOutputsSecret, leak);
        expect(m).toEqual([
            expect.stringContaining("stack output platform: platform.sshKey holds a private key (value not shown)"),
            expect.stringContaining("platform.ci.token holds a GitLab token (value not shown)"),
            expect.stringContaining("platform.admin.password holds a value named password (value not shown)"),
        ]);
        expect(m.join("\n")).not.toMatch(/SECRET|b3Blbn/);
    });
    test("a kubeconfig in an output not listed as secret", async () => {
        const m = await messages(credentialOutputsSecret, stack, { "credential-outputs-secret": { secretOutputs: [] } });
        expect(m).toEqual([expect.stringContaining("stack output kubeconfig: kubeconfig holds a kubeconfig with credentials (value not shown) in an output that is not secret")]);
    });
    test("a command reading a kubeconfig must keep stdout secret", async () => {
        const cmd: PackResource = {
            type: "command:remote:Command",
            name: "kubernetes-kubeconfig",
            urn: "urn:pulumi:prod::zerotouch::command:remote:Command::kubernetes-kubeconfig",
            props: {},
            outputs: { stdout: JSON.stringify({ kubeconfig: "apiVersion: v1\nkind: Config\nusers:\n- user:\n    token: abc-SECRET\n" }) },
            additionalSecretOutputs: ["stdout", "stderr"],
        };
        expect(await messages(credentialOutputsSecret, cmd)).toEqual([]);
        const m = await messages(credentialOutputsSecret, { ...cmd, additionalSecretOutputs: ["stderr"] });
        expect(m).toEqual(['command kubernetes-kubeconfig: stdout holds a kubeconfig with credentials (value not shown) but is not secret; allowed: stdout listed in additionalSecretOutputs (with logging "none")']);
        // During preview the output is unknown: nothing has been read yet.
        expect(await messages(credentialOutputsSecret, { ...cmd, outputs: { stdout: UNKNOWN_STRING }, additionalSecretOutputs: [] })).toEqual([]);
    });
    test("credential detection", () => {
        expect(credentialKind("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")).toBeUndefined();
        expect(credentialKind("-----BEGIN EC PRIVATE KEY-----")).toBe("a private key");
        expect(credentialKind("apiVersion: v1\nkind: Config\nclusters: []\n")).toBeUndefined();
        expect(credentialKind('{"kind":"Config","users":[{"user":{"token":"x"}}]}')).toBe("a kubeconfig with credentials");
    });
});
