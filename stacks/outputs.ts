import { z } from "zod";

/**
 * The contract of this stack's outputs: one typed object, exported as `platform`.
 * Other stacks read it through a StackReference (see `./reference.ts`) and get it validated
 * against this schema, so a breaking change is caught where it is consumed, not deep inside.
 *
 * Bump `OUTPUTS_VERSION` on any change that is not purely additive.
 */
export const OUTPUTS_VERSION = 1;

/** The stack output name under which the object is exported. */
export const OUTPUT_NAME = "platform";

/** The stack output holding the admin kubeconfig, a secret (absent with `kubernetes.mode: none`). */
export const KUBECONFIG_OUTPUT_NAME = "kubeconfig";

/** One latency target as a node measured it at preflight. */
export const latencyTargetOutputSchema = z.object({
    /** What was measured, `host:port`. */
    target: z.string(),
    /** The address connected to; "" when the host did not resolve. */
    address: z.string(),
    tries: z.number(),
    /** Connects that succeeded within `preflight.latency.timeoutMs`. */
    connected: z.number(),
    /** Median and worst TCP connect time (ms, 3 decimals); null when no connect succeeded. */
    medianMs: z.number().nullable(),
    worstMs: z.number().nullable(),
});

export const nodeOutputSchema = z.object({
    host: z.string(),
    role: z.enum(["control-plane", "worker"]),
    location: z.object({
        country: z.string(),
        region: z.string(),
        datacenter: z.string(),
        provider: z.string(),
    }),
    /** The SSH host key the node presented (pinned or recorded on first connect). */
    hostKey: z.string(),
    /** `systemd-detect-virt` on the node. */
    virtualization: z.string(),
    /** Operating system, e.g. "Debian GNU/Linux 12 (bookworm)". */
    os: z.string(),
    /** The etcd data path's disk as found by preflight. */
    etcdDisk: z.string(),
    /** Worst fio fdatasync p99 (ms) measured on the etcd data path. */
    fsyncP99Ms: z.number(),
    /** The threshold that measurement was gated on (ms). */
    fsyncThresholdMs: z.number(),
    /** sha256 of the nftables ruleset applied on the node. */
    firewallRulesetHash: z.string(),
    /**
     * TCP connect times from the node, measured at preflight; a target not configured is null.
     * Optional in the contract: a stack last deployed before it existed still reads.
     */
    latency: z
        .object({
            gitlab: latencyTargetOutputSchema.nullable(),
            probe: latencyTargetOutputSchema.nullable(),
            /** The threshold on each median the node was gated on (ms); null: not gated. */
            maxLatencyMs: z.number().nullable(),
        })
        .optional(),
});

export const etcdMemberOutputSchema = z.object({
    memberId: z.string(),
    clusterId: z.string(),
    /** The etcd version the member runs. */
    version: z.string(),
    /** WAL fsync p99 under the gate's write load (ms), from etcd's own metrics. */
    walFsyncP99Ms: z.number(),
    /** Whether that figure is an interpolated estimate inside a wide bucket (e.g. 8–16 ms). */
    walFsyncEstimate: z.boolean(),
    /** Backend commit p99 under the same load (ms). */
    backendCommitP99Ms: z.number(),
    walFsyncThresholdMs: z.number(),
    backendCommitThresholdMs: z.number(),
});

export const etcdOutputSchema = z.object({
    /** The etcd CA certificate (PEM, public): what clients verify the members with. */
    caCertPem: z.string(),
    /** Every member's client URL. */
    clientEndpoints: z.array(z.string()),
    /** Per control-plane node. */
    members: z.record(z.string(), etcdMemberOutputSchema),
});

export const kubernetesOutputSchema = z.object({
    mode: z.enum(["k3s", "existing", "none"]),
    /** Host clients reach the API server at; null without a Kubernetes layer. */
    apiEndpoint: z.string().nullable(),
    /** `https://<apiEndpoint>:6443`; null without a Kubernetes layer. */
    apiServerUrl: z.string().nullable(),
});

export const gitopsOutputSchema = z.object({
    /** Argo CD's UI and API (reached over the VPN). */
    argocdUrl: z.string(),
    argocdNamespace: z.string(),
    /** The public webhook GitLab calls on every push. */
    webhookUrl: z.string(),
    /** The manifests repository Argo CD pulls. */
    manifestsRepoUrl: z.string(),
    /** When the current GITOPS_TOKEN expires (ISO date); it is replaced before that on `pulumi up`. */
    gitopsTokenExpiresAt: z.string().nullable(),
    /** GitLab projects whose pipelines get GITOPS_TOKEN. */
    appProjects: z.array(z.string()),
    /** The Argo CD Applications the platform declares. */
    applications: z.array(z.string()),
});

/** One further firewall rule every node has (the CNI's, `firewall.extraRules`), as `ExtraRule` in components/firewall/rules.ts. */
export const firewallExtraRuleOutputSchema = z.object({
    name: z.string(),
    protocol: z.enum(["tcp", "udp"]),
    /** One port, or an inclusive range `[first, last]`. */
    ports: z.union([z.number().int(), z.tuple([z.number().int(), z.number().int()])]),
    /** `any`, a named source group, or a list of addresses/CIDRs. */
    from: z.union([z.literal("any"), z.enum(["cluster", "control-plane", "vpn", "management", "pods"]), z.array(z.string())]),
});

/**
 * What every node's host firewall is decided from besides the nodes, `vpnCidr` and
 * `managementCidrs`: with those, `firewallRules()` gives each node's ruleset again. The exposure
 * check derives from it which ports may answer where it stands.
 */
export const firewallOutputSchema = z.object({
    /** Pod ranges the API server and kubelets accept (k3s' cluster CIDR); empty without k3s. */
    podCidrs: z.array(z.string()),
    /** Further rules, in the order the firewall was given them. */
    extraRules: z.array(firewallExtraRuleOutputSchema),
});

export const platformOutputsSchema = z.object({
    outputsVersion: z.literal(OUTPUTS_VERSION),
    project: z.literal("zerotouch"),
    stack: z.string(),
    nodes: z.record(z.string(), nodeOutputSchema),
    controlPlaneNodes: z.array(z.string()),
    workerNodes: z.array(z.string()),
    vpnCidr: z.string(),
    managementCidrs: z.array(z.string()),
    /**
     * Optional in the contract: a stack last deployed before it existed still reads; `pulumi up`
     * adds it, and the exposure check requires it.
     */
    firewall: firewallOutputSchema.optional(),
    etcd: etcdOutputSchema,
    kubernetes: kubernetesOutputSchema,
    /** The GitOps layer; null without `gitops`. */
    gitops: gitopsOutputSchema.nullable(),
});

export type NodeOutput = z.infer<typeof nodeOutputSchema>;
export type LatencyTargetOutput = z.infer<typeof latencyTargetOutputSchema>;
export type EtcdOutput = z.infer<typeof etcdOutputSchema>;
export type KubernetesOutput = z.infer<typeof kubernetesOutputSchema>;
export type FirewallOutput = z.infer<typeof firewallOutputSchema>;
export type GitOpsOutput = z.infer<typeof gitopsOutputSchema>;
export type PlatformOutputs = z.infer<typeof platformOutputsSchema>;

/** Validates a value read from another stack; the message names each mismatching field. */
export function parsePlatformOutputs(value: unknown, source: string): PlatformOutputs {
    const parsed = platformOutputsSchema.safeParse(value);
    if (!parsed.success) {
        const fields = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
        throw new Error(`${source}: the "${OUTPUT_NAME}" output does not match the zerotouch outputs contract v${OUTPUTS_VERSION}: ${fields}`);
    }
    return parsed.data;
}
