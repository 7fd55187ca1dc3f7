import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

import { EtcdCluster, EtcdClusterSettings } from "../components/etcd/cluster";
import { EtcdOffsiteCredentials, EtcdOffsiteTarget } from "../components/etcd/snapshot";
import { HostFirewall, HostFirewallSpec, hostFirewallSteps } from "../components/firewall/hostFirewall";
import { ExtraRule } from "../components/firewall/rules";
import { K3S_FIREWALL } from "../components/k8s/k3s";
import { Applications } from "../components/gitops/applications";
import { ArgoCd, ArgoCdRepository, ArgoCdValuesOverride } from "../components/gitops/argocd";
import { Provider as GitLabProvider } from "../components/gitops/gitlab/provider";
import { GitLabWiring } from "../components/gitops/gitlabWiring";
import { FsyncGate, FsyncGateStepArgs, fsyncGateSteps } from "../components/fsync/fsyncGate";
import { SshTarget } from "../components/lib/connection";
import { NodeStep } from "../components/lib/nodeScript";
import { ControlPlaneNode, ControlPlane } from "../components/k8s/controlPlane";
import { formatEndpoint, LatencyResult, nsToMs } from "../components/node/latency";
import { PreflightResult } from "../components/node/facts";
import { VpsNode, VpsNodeSpec, vpsNodeSteps } from "../components/node/vpsNode";
import { EtcdOutput, FirewallOutput, GitOpsOutput, KubernetesOutput, LatencyTargetOutput, NodeOutput, OUTPUTS_VERSION, PlatformOutputs } from "../stacks/outputs";
import { latencyTargets, NodeConfig, PlatformConfig } from "./config";

/** What the program decides for one node, as plain data (no resources, no secrets). */
export interface NodePlan {
    readonly name: string;
    readonly config: NodeConfig;
    readonly target: SshTarget;
    readonly vps: VpsNodeSpec;
    readonly gate: FsyncGateStepArgs;
    readonly firewall: HostFirewallSpec;
}

/** What every node's firewall gets besides the nodes, the VPN and management ranges: k3s' pod range and CNI port, then `firewall.extraRules`. */
export function clusterFirewall(cfg: PlatformConfig): FirewallOutput {
    return {
        podCidrs: cfg.kubernetes.mode === "k3s" ? [...K3S_FIREWALL.podCidrs] : [],
        extraRules: [...(cfg.kubernetes.mode === "k3s" ? K3S_FIREWALL.rules : []), ...cfg.firewall.extraRules].map(
            (r: ExtraRule): FirewallOutput["extraRules"][number] => ({
                name: r.name,
                protocol: r.protocol,
                ports: typeof r.ports === "number" ? r.ports : [r.ports[0], r.ports[1]],
                from: typeof r.from === "string" ? r.from : [...r.from],
            }),
        ),
    };
}

/** Plans every node from a validated config, sorted by name. Pure. */
export function planNodes(cfg: PlatformConfig): NodePlan[] {
    const names = Object.keys(cfg.nodes).sort();
    const cluster = Object.fromEntries(names.map((n) => [n, { role: cfg.nodes[n].role, address: cfg.nodes[n].host }]));
    const targets = latencyTargets(cfg);
    return names.map((name): NodePlan => {
        const node = cfg.nodes[name];
        const target: SshTarget = {
            host: node.host,
            port: node.sshPort,
            user: node.sshUser,
            ...(node.sshHostKey !== undefined ? { hostKey: node.sshHostKey } : {}),
        };
        return {
            name,
            config: node,
            target,
            vps: {
                node: name,
                target,
                role: node.role,
                etcdDataPath: node.etcdDataPath,
                allowedVirtualization: cfg.preflight.allowedVirtualization,
                requireNvme: cfg.preflight.requireNvme,
                location: node.location,
                latency: {
                    targets,
                    tries: cfg.preflight.latency.tries,
                    timeoutMs: cfg.preflight.latency.timeoutMs,
                    ...maxLatency(node.maxLatencyMs ?? cfg.preflight.maxLatencyMs),
                },
            },
            gate: {
                node: name,
                target,
                dataPath: node.etcdDataPath,
                thresholdMs: node.fsyncThresholdMs ?? cfg.fsyncGate.thresholdMs,
                runs: cfg.fsyncGate.runs,
                maxSecondsPerRun: cfg.fsyncGate.maxSecondsPerRun,
            },
            firewall: {
                node: name,
                role: node.role,
                address: node.host,
                cluster,
                vpnCidr: cfg.vpnCidr,
                managementCidrs: cfg.managementCidrs,
                ...clusterFirewall(cfg),
            },
        };
    });
}

/** The latency threshold as an optional field. */
function maxLatency(ms: number | undefined): { maxLatencyMs?: number } {
    return ms !== undefined ? { maxLatencyMs: ms } : {};
}

/**
 * A node's phases in the order the program runs them (each waits for the one before): the host
 * firewall is applied and confirmed right after preflight, before the fsync gate judges the
 * node, so a refused node is as locked down as an accepted one.
 */
export function nodeSteps(plan: NodePlan): NodeStep[] {
    return NODE_PHASES.flatMap((phase) => NODE_PHASE_STEPS[phase](plan));
}

/**
 * A node's phases, in the order they run; each starts when the one before it is done (locked down
 * first, judged after). The one list both the program (nodeLayer: a component per phase) and the
 * lab runner (nodeSteps: the same steps over SSH) follow.
 */
export const NODE_PHASES = ["node", "firewall", "fsync"] as const;
export type NodePhase = (typeof NODE_PHASES)[number];

/** Each phase's steps, in order. */
const NODE_PHASE_STEPS: Readonly<Record<NodePhase, (plan: NodePlan) => NodeStep[]>> = {
    node: (plan) => {
        const vps = vpsNodeSteps(plan.vps);
        return [vps.connect, vps.preflight];
    },
    firewall: (plan) => [...hostFirewallSteps(plan.firewall)],
    fsync: (plan) => fsyncGateSteps(plan.gate),
};

/** What the phases of one node have built so far. */
interface NodeBuild {
    vps?: VpsNode;
    firewall?: HostFirewall;
    gate?: FsyncGate;
}

/** Each phase's component, after `after` (the phase before); returns what the next phase waits for. */
const NODE_PHASE_COMPONENTS: Readonly<Record<NodePhase, (plan: NodePlan, after: pulumi.Resource | undefined, built: NodeBuild, privateKey: pulumi.Input<string>) => pulumi.Resource>> = {
    node: (plan, _after, built, privateKey) => {
        built.vps = new VpsNode(plan.name, { ...plan.vps, privateKey });
        return built.vps.ready;
    },
    firewall: (plan, after, built) => {
        const vps = built.vps!;
        built.firewall = new HostFirewall(`${plan.name}-firewall`, { ...plan.firewall, target: plan.target, connection: vps.connection, dependsOn: [after!] }, { parent: vps });
        return built.firewall.ready;
    },
    fsync: (plan, after, built) => {
        const vps = built.vps!;
        built.gate = new FsyncGate(`${plan.name}-fsync`, { ...plan.gate, connection: vps.connection, dependsOn: [after!] }, { parent: vps });
        return built.gate.command;
    },
};

/** Everything the node layer made for one node. */
export interface NodeLayerMember {
    readonly vps: VpsNode;
    readonly gate: FsyncGate;
    readonly firewall: HostFirewall;
}

/** Argo CD, its Applications, and (with `gitops.gitlab`) the GitLab wiring around them. */
export interface GitOpsLayer {
    readonly argocd: ArgoCd;
    /** Absent without `gitops.gitlab`: the repository, its webhook and CI token are wired by hand. */
    readonly gitlab?: GitLabWiring;
    readonly applications: Applications;
    /** The secret GitLab's push webhook sends (secret); to be set by hand without `gitops.gitlab`. */
    readonly webhookSecret: pulumi.Output<string>;
}

/** The secrets of the stack config, each only where the config needs it. */
export interface PlatformSecrets {
    readonly privateKey: pulumi.Input<string>;
    /** With `kubernetes.mode: existing`. */
    readonly kubeconfig?: pulumi.Input<string>;
    /** With `gitops.gitlab`. */
    readonly gitlabToken?: pulumi.Input<string>;
    /** With `gitops.argocd.sso`. */
    readonly argocdSsoClientSecret?: pulumi.Input<string>;
    /** With `gitops` but without `gitops.gitlab`: the manifests repository's read credential. */
    readonly manifestsPassword?: pulumi.Input<string>;
    /** With `etcd.snapshots.offsite`: the off-node target's credentials. */
    readonly etcdOffsite?: pulumi.Input<EtcdOffsiteCredentials>;
}

/** The off-node target of a validated config (its type's keys are there: the schema checked them). */
export function offsiteTarget(o: NonNullable<PlatformConfig["etcd"]["snapshots"]["offsite"]>): EtcdOffsiteTarget {
    const path = o.path !== undefined ? { path: o.path } : {};
    if (o.type === "s3") {
        return { type: "s3", endpoint: o.endpoint!, bucket: o.bucket!, retain: o.retain, ...(o.region !== undefined ? { region: o.region } : {}), ...path };
    }
    return { type: "sftp", host: o.host!, user: o.user!, hostKey: o.hostKey!, retain: o.retain, ...(o.port !== undefined ? { port: o.port } : {}), ...path };
}

/** The snapshot settings of a validated config, as the etcd cluster takes them. */
export function etcdSnapshotSettings(cfg: PlatformConfig): EtcdClusterSettings["snapshots"] {
    const { schedule, retain, dir, offsite } = cfg.etcd.snapshots;
    return { schedule, retain, dir, ...(offsite !== undefined ? { offsite: offsiteTarget(offsite) } : {}) };
}

/**
 * The manifests repository's clone URL, known from config (so at preview too): the GitLab
 * project's, or the one given without GitLab wiring.
 */
export function manifestsRepoUrl(gitops: NonNullable<PlatformConfig["gitops"]>): string {
    if (gitops.gitlab === undefined) {
        return gitops.manifests.url!;
    }
    return `${gitlabUrl(gitops.gitlab)}/${gitops.manifests.project}.git`;
}

/** The GitLab instance's URL without a trailing slash. */
function gitlabUrl(gitlab: NonNullable<NonNullable<PlatformConfig["gitops"]>["gitlab"]>): string {
    return gitlab.baseUrl.replace(/\/$/, "");
}

export interface Platform {
    readonly nodes: Readonly<Record<string, NodeLayerMember>>;
    /** The etcd cluster over the control-plane nodes. */
    readonly etcd: EtcdCluster;
    /** The Kubernetes layer; absent with `kubernetes.mode: none`. */
    readonly kubernetes?: ControlPlane;
    /** The admin kubeconfig (secret); absent with `kubernetes.mode: none`. */
    readonly kubeconfig?: pulumi.Output<string>;
    /** The GitOps layer; absent without `gitops`. */
    readonly gitops?: GitOpsLayer;
    /**
     * Per node, the resource everything installed later must depend on: the node passed
     * preflight, its host firewall is confirmed, and its etcd disk passed the fsync gate.
     */
    readonly gated: Readonly<Record<string, pulumi.Resource>>;
    readonly outputs: pulumi.Output<PlatformOutputs>;
}

/**
 * The zerotouch program for a validated config, as a list of layers, each on top of the one
 * before: the nodes (bootstrapped in parallel, see `nodeLayer`), etcd over the control-plane
 * nodes, Kubernetes over etcd, GitOps over Kubernetes, and the stack outputs.
 */
export function buildPlatform(cfg: PlatformConfig, secrets: PlatformSecrets): Platform {
    const plans = planNodes(cfg);
    const nodes = nodeLayer(plans, secrets.privateKey);
    const etcd = etcdLayer(cfg, plans, nodes, secrets.etcdOffsite);
    const kubernetes = kubernetesLayer(cfg, plans, nodes, etcd, secrets.kubeconfig);
    // GitOps on top of the cluster: Argo CD pulling the manifests repository, which GitLab holds
    // (wired by the program with gitops.gitlab, or by hand without it).
    const gitops = cfg.gitops !== undefined && kubernetes !== undefined ? gitopsLayer(cfg, cfg.gitops, secrets, kubernetes, plans.length) : undefined;
    const outputs = platformOutputs(cfg, plans, { nodes, etcd, kubernetes, gitops });
    const gated = Object.fromEntries(plans.map((p) => [p.name, nodes[p.name].gate.command]));
    return {
        nodes,
        gated,
        outputs,
        etcd,
        ...(kubernetes !== undefined ? { kubernetes, kubeconfig: kubernetes.kubeconfig } : {}),
        ...(gitops !== undefined ? { gitops } : {}),
    };
}

/**
 * The node layer: per node a VpsNode, its HostFirewall and its FsyncGate. Each node's phases form
 * one chain (connect → preflight → firewall → fsync gate, in NODE_PHASES' order) and no chain waits on
 * another node's.
 */
export function nodeLayer(plans: readonly NodePlan[], privateKey: pulumi.Input<string>): Record<string, NodeLayerMember> {
    const nodes: Record<string, NodeLayerMember> = {};
    for (const plan of plans) {
        const built: NodeBuild = {};
        let after: pulumi.Resource | undefined;
        for (const phase of NODE_PHASES) {
            after = NODE_PHASE_COMPONENTS[phase](plan, after, built, privateKey);
        }
        nodes[plan.name] = { vps: built.vps!, firewall: built.firewall!, gate: built.gate! };
    }
    return nodes;
}

/**
 * The etcd layer: etcd on the control-plane nodes. No member is created before every
 * control-plane node passed its gate: with one refused, the cluster would have fewer members than
 * asked (2 of 3 has no fault tolerance at all). The gates run in parallel, so this waits only for
 * the slowest one.
 */
export function etcdLayer(
    cfg: PlatformConfig,
    plans: readonly NodePlan[],
    nodes: Readonly<Record<string, NodeLayerMember>>,
    offsiteCredentials?: pulumi.Input<EtcdOffsiteCredentials>,
): EtcdCluster {
    const controlPlanes = plans.filter((p) => p.config.role === "control-plane");
    const allControlPlanesGated: pulumi.Resource[] = controlPlanes.map((p) => nodes[p.name].gate.command);
    return new EtcdCluster("etcd", {
        source: cfg.etcd.source,
        ...(cfg.etcd.version !== undefined ? { version: cfg.etcd.version } : {}),
        ...(cfg.etcd.releaseBaseUrl !== undefined ? { releaseBaseUrl: cfg.etcd.releaseBaseUrl } : {}),
        ...(cfg.etcd.sha256 !== undefined ? { sha256: cfg.etcd.sha256 } : {}),
        ...(cfg.etcd.bootstrapMember !== undefined ? { bootstrapMember: cfg.etcd.bootstrapMember } : {}),
        clusterToken: cfg.etcd.clusterToken ?? `zerotouch-${pulumi.getStack()}`,
        walFsyncThresholdMs: cfg.etcd.walFsyncThresholdMs,
        backendCommitThresholdMs: cfg.etcd.backendCommitThresholdMs,
        walGateWrites: cfg.etcd.walGateWrites,
        walGateMaxSeconds: cfg.etcd.walGateMaxSeconds,
        healthTimeoutSeconds: cfg.etcd.healthTimeoutSeconds,
        quotaBackendBytes: cfg.etcd.quotaBackendBytes,
        snapshots: etcdSnapshotSettings(cfg),
        ...(cfg.etcd.snapshots.offsite !== undefined && offsiteCredentials !== undefined ? { offsiteCredentials } : {}),
        wipeDataOnDelete: cfg.etcd.wipeDataOnDelete,
        members: controlPlanes.map((p) => ({
            name: p.name,
            target: p.target,
            connection: nodes[p.name].vps.connection,
            address: p.config.host,
            dataDir: p.config.etcdDataPath,
            dependsOn: allControlPlanesGated,
        })),
    });
}

/**
 * The Kubernetes layer: k3s servers on the external etcd, then agents, each node after its own
 * gate; or an existing cluster through the given kubeconfig; undefined with `kubernetes.mode: none`.
 */
export function kubernetesLayer(
    cfg: PlatformConfig,
    plans: readonly NodePlan[],
    nodes: Readonly<Record<string, NodeLayerMember>>,
    etcd: EtcdCluster,
    kubeconfig: pulumi.Input<string> | undefined,
): ControlPlane | undefined {
    const controlPlanes = plans.filter((p) => p.config.role === "control-plane");
    const workers = plans.filter((p) => p.config.role === "worker");
    const apiEndpoint = cfg.kubernetes.apiEndpoint ?? controlPlanes[0].config.host;
    if (cfg.kubernetes.mode === "k3s") {
        const k8sNode = (p: NodePlan): ControlPlaneNode => ({
            target: p.target,
            connection: nodes[p.name].vps.connection,
            address: p.config.host,
            region: p.config.location.region,
            zone: p.config.location.datacenter,
            dependsOn: [nodes[p.name].gate.command],
        });
        const apiClient = etcd.pki.clients["kube-apiserver"];
        return new ControlPlane("kubernetes", {
            mode: "k3s",
            servers: Object.fromEntries(controlPlanes.map((p) => [p.name, k8sNode(p)])),
            workers: Object.fromEntries(workers.map((p) => [p.name, k8sNode(p)])),
            apiEndpoint,
            k3s: {
                source: cfg.kubernetes.k3s.source,
                ...(cfg.kubernetes.k3s.version !== undefined ? { version: cfg.kubernetes.k3s.version } : {}),
                ...(cfg.kubernetes.k3s.releaseBaseUrl !== undefined ? { releaseBaseUrl: cfg.kubernetes.k3s.releaseBaseUrl } : {}),
            },
            etcd: { endpoints: [...etcd.plan.clientEndpoints], caCertPem: etcd.caCertPem, certPem: apiClient.certPem, keyPem: apiClient.keyPem },
            dependsOn: [etcd.ready],
        });
    }
    if (cfg.kubernetes.mode === "existing") {
        if (kubeconfig === undefined) {
            throw new Error("kubernetes.mode existing needs zerotouch:kubeconfig");
        }
        return new ControlPlane("kubernetes", { mode: "existing", kubeconfig });
    }
    return undefined;
}

/** What the stack outputs are made of: every layer the program built. */
interface PlatformLayers {
    readonly nodes: Readonly<Record<string, NodeLayerMember>>;
    readonly etcd: EtcdCluster;
    readonly kubernetes: ControlPlane | undefined;
    readonly gitops: GitOpsLayer | undefined;
}

/** The stack outputs: one typed object over every layer. */
export function platformOutputs(cfg: PlatformConfig, plans: readonly NodePlan[], layers: PlatformLayers): pulumi.Output<PlatformOutputs> {
    const names = plans.map((p) => p.name);
    return pulumi
        .all([nodeOutputs(plans, layers.nodes), etcdOutput(layers.etcd), kubernetesOutput(cfg, layers.kubernetes), gitopsOutput(cfg, layers.gitops)])
        .apply(
            ([resolved, etcdResolved, kubernetesResolved, gitopsResolved]): PlatformOutputs => ({
                outputsVersion: OUTPUTS_VERSION,
                project: "zerotouch",
                stack: pulumi.getStack(),
                nodes: resolved,
                controlPlaneNodes: names.filter((n) => cfg.nodes[n].role === "control-plane"),
                workerNodes: names.filter((n) => cfg.nodes[n].role === "worker"),
                vpnCidr: cfg.vpnCidr,
                managementCidrs: cfg.managementCidrs,
                firewall: clusterFirewall(cfg),
                etcd: etcdResolved,
                kubernetes: kubernetesResolved,
                gitops: gitopsResolved,
            }),
        );
}

/** Per node: its host, role, facts, fsync result and firewall ruleset hash. */
function nodeOutputs(plans: readonly NodePlan[], nodes: Readonly<Record<string, NodeLayerMember>>): Record<string, pulumi.Output<NodeOutput>> {
    const outputs: Record<string, pulumi.Output<NodeOutput>> = {};
    for (const plan of plans) {
        const { vps, gate, firewall } = nodes[plan.name];
        outputs[plan.name] = pulumi
            .all([vps.hostKey, vps.facts, gate.p99Ms, firewall.rulesetHash])
            .apply(
                ([hostKey, facts, p99Ms, rulesetHash]): NodeOutput => ({
                    host: plan.config.host,
                    role: plan.config.role,
                    location: plan.config.location,
                    hostKey,
                    virtualization: facts.virtualization,
                    os: facts.os.prettyName,
                    etcdDisk: facts.etcdDisk.description,
                    fsyncP99Ms: p99Ms,
                    fsyncThresholdMs: plan.gate.thresholdMs,
                    firewallRulesetHash: rulesetHash,
                    latency: latencyOutput(plan, facts),
                }),
            );
    }
    return outputs;
}

/** A node's latency figures for the outputs, from its preflight's report. */
function latencyOutput(plan: NodePlan, facts: PreflightResult): NodeOutput["latency"] {
    const target = (r: LatencyResult | undefined): LatencyTargetOutput | null =>
        r === undefined
            ? null
            : { target: formatEndpoint(r), address: r.address, tries: r.tries, connected: r.connected, medianMs: nsToMs(r.medianNs), worstMs: nsToMs(r.worstNs) };
    return {
        gitlab: target(facts.latency.find((r) => r.name === "gitlab")),
        probe: target(facts.latency.find((r) => r.name === "probe")),
        maxLatencyMs: plan.vps.latency?.maxLatencyMs ?? null,
    };
}

function etcdOutput(etcd: EtcdCluster): pulumi.Output<EtcdOutput> {
    return pulumi
        .all([etcd.caCertPem, etcd.clientEndpoints, etcd.members])
        .apply(([caCertPem, clientEndpoints, members]): EtcdOutput => ({ caCertPem, clientEndpoints, members }));
}

function kubernetesOutput(cfg: PlatformConfig, kubernetes: ControlPlane | undefined): pulumi.Output<KubernetesOutput> {
    if (kubernetes === undefined) {
        return pulumi.output<KubernetesOutput>({ mode: "none", apiEndpoint: null, apiServerUrl: null });
    }
    return pulumi
        .all([kubernetes.apiEndpoint, kubernetes.apiServerUrl])
        .apply(([endpoint, url]): KubernetesOutput => ({ mode: cfg.kubernetes.mode, apiEndpoint: endpoint, apiServerUrl: url }));
}

function gitopsOutput(cfg: PlatformConfig, gitops: GitOpsLayer | undefined): pulumi.Output<GitOpsOutput | null> {
    const g = cfg.gitops;
    if (gitops === undefined || g === undefined) {
        return pulumi.output(null);
    }
    return pulumi
        .all([
            gitops.argocd.url,
            gitops.argocd.webhookUrl,
            gitops.gitlab?.manifestsRepoUrl ?? manifestsRepoUrl(g),
            gitops.gitlab?.accessTokenExpiresAt ?? pulumi.output<string | undefined>(undefined),
        ])
        .apply(
            ([argocdUrl, webhookUrl, repoUrl, expiresAt]): GitOpsOutput => ({
                argocdUrl,
                argocdNamespace: g.argocd.namespace,
                webhookUrl,
                manifestsRepoUrl: repoUrl,
                gitopsTokenExpiresAt: expiresAt ?? null,
                appProjects: g.appProjects,
                applications: Object.keys(g.applications).sort(),
            }),
        );
}

type GitOpsConfig = NonNullable<PlatformConfig["gitops"]>;

/**
 * The GitOps layer: with `gitops.gitlab` the GitLab wiring (manifests project, deploy token,
 * GITOPS_TOKEN, webhook) and Argo CD reading through its deploy token; without it Argo CD alone,
 * reading the given repository with the given credential (the rest is wired by hand, see README).
 * Then the Applications, once Argo CD can read the repository.
 */
export function gitopsLayer(
    cfg: PlatformConfig,
    g: GitOpsConfig,
    secrets: PlatformSecrets,
    kubernetes: ControlPlane,
    nodeCount: number,
): GitOpsLayer {
    const repoUrl = manifestsRepoUrl(g);
    const webhookSecret = new random.RandomPassword("gitops-webhook-secret", { length: 40, special: false });
    const { wiring, repository } = manifestsSource(g, secrets, repoUrl, webhookSecret.result);
    const argocd = argoCd(cfg, g, secrets, kubernetes, { nodeCount, webhookSecret: webhookSecret.result, repository });
    const applications = gitopsApplications(g, repoUrl, argocd, kubernetes);
    return { argocd, ...(wiring !== undefined ? { gitlab: wiring } : {}), applications, webhookSecret: webhookSecret.result };
}

/**
 * Where Argo CD reads the manifests from: with `gitops.gitlab` the GitLab wiring and its deploy
 * token; without it the given repository and credential.
 */
function manifestsSource(
    g: GitOpsConfig,
    secrets: PlatformSecrets,
    repoUrl: string,
    webhookSecret: pulumi.Output<string>,
): { wiring?: GitLabWiring; repository: ArgoCdRepository } {
    if (g.gitlab === undefined) {
        if (secrets.manifestsPassword === undefined) {
            throw new Error("gitops without gitops.gitlab needs zerotouch:manifestsPassword");
        }
        return { repository: { url: repoUrl, username: g.manifests.username!, password: pulumi.secret(secrets.manifestsPassword) } };
    }
    if (secrets.gitlabToken === undefined) {
        throw new Error("gitops.gitlab needs zerotouch:gitlabToken");
    }
    const gitlabProvider = new GitLabProvider("gitlab", {
        baseUrl: `${gitlabUrl(g.gitlab)}/api/v4/`,
        token: pulumi.secret(secrets.gitlabToken),
    });
    const wiring = new GitLabWiring("gitlab", {
        provider: gitlabProvider,
        manifestsProject: {
            path: g.manifests.project!,
            mode: g.manifests.mode,
            ...(g.manifests.namespaceId !== undefined ? { namespaceId: g.manifests.namespaceId } : {}),
        },
        appProjects: g.appProjects,
        webhookUrl: `https://${g.argocd.webhookHostname}/api/webhook`,
        webhookSecret,
        accessTokenExpiryDays: g.accessTokenExpiryDays,
        rotateBeforeDays: g.rotateBeforeDays,
    });
    return { wiring, repository: { url: repoUrl, username: wiring.deployTokenUsername, password: wiring.deployToken } };
}

/** Argo CD on the cluster, once it is ready, reading the manifests repository. */
function argoCd(
    cfg: PlatformConfig,
    g: GitOpsConfig,
    secrets: PlatformSecrets,
    kubernetes: ControlPlane,
    wired: { nodeCount: number; webhookSecret: pulumi.Output<string>; repository: ArgoCdRepository },
): ArgoCd {
    const sso = g.argocd.sso;
    const issuer = sso?.issuer ?? (g.gitlab !== undefined ? gitlabUrl(g.gitlab) : undefined);
    if (sso !== undefined && (issuer === undefined || secrets.argocdSsoClientSecret === undefined)) {
        throw new Error("gitops.argocd.sso needs an issuer and zerotouch:argocdSsoClientSecret");
    }
    const chart = g.argocd.chart;
    return new ArgoCd(
        "argocd",
        {
            namespace: g.argocd.namespace,
            hostname: g.argocd.hostname,
            webhookHostname: g.argocd.webhookHostname,
            vpnCidr: cfg.vpnCidr,
            ...(sso !== undefined
                ? {
                      sso: { provider: sso.provider, issuer: issuer!, clientId: sso.clientId, groupsClaim: sso.groupsClaim },
                      ssoClientSecret: pulumi.secret(secrets.argocdSsoClientSecret!),
                  }
                : {}),
            ...(g.argocd.breakGlassGroup !== undefined ? { breakGlassGroup: g.argocd.breakGlassGroup } : {}),
            ...(chart?.repo !== undefined ? { chartSource: { repo: chart.repo } } : chart?.path !== undefined ? { chartSource: { path: chart.path } } : {}),
            reconciliationSeconds: g.argocd.reconciliationSeconds,
            nodeCount: wired.nodeCount,
            gitlabWebhookSecret: wired.webhookSecret,
            repository: wired.repository,
            values: g.argocd.values as ArgoCdValuesOverride,
        },
        { providers: [kubernetes.provider], dependsOn: kubernetes.ready },
    );
}

/** One AppProject per environment, one Application per configured application, once Argo CD reads the repository. */
function gitopsApplications(g: GitOpsConfig, repoUrl: string, argocd: ArgoCd, kubernetes: ControlPlane): Applications {
    const environments = [...new Set(Object.values(g.applications).map((a) => a.environment))].sort();
    return new Applications(
        "applications",
        {
            repoUrl,
            argoCdNamespace: g.argocd.namespace,
            projects: Object.fromEntries(
                environments.map((env) => [
                    env,
                    {
                        namespaces: [...new Set(Object.values(g.applications).filter((a) => a.environment === env).map((a) => a.namespace))].sort(),
                    },
                ]),
            ),
            applications: Object.entries(g.applications)
                .sort(([a], [b]) => a.localeCompare(b))
                .map(([name, a]) => ({
                    name,
                    project: a.environment,
                    path: a.path,
                    namespace: a.namespace,
                    targetRevision: a.targetRevision,
                    valueFiles: a.valueFiles,
                    ...(a.values !== undefined ? { values: a.values } : {}),
                })),
            chart: argocd.chart,
            dependsOn: [argocd.repositorySecret],
        },
        { providers: [kubernetes.provider] },
    );
}
