import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";

import { argocdSyncAutomated } from "./argocdSync";
import { clusterAdminBreakGlass } from "./clusterAdmin";
import { credentialOutputsSecret } from "./credentialOutputs";
import { endpointHostsAllowed } from "./endpointHosts";
import { firewallManagementPorts } from "./firewallPorts";
import { imageRegistriesAllowed } from "./imageRegistries";
import { nodeLocationAllowed } from "./nodeLocation";
import { sshHostKeyPinned } from "./sshHostKey";
import { workloadResidencyMode } from "./workloadResidency";

/** Residency policies: where nodes are, where data goes, how workloads run. */
export const RESIDENCY_POLICIES: readonly (ResourceValidationPolicy | StackValidationPolicy)[] = [
    nodeLocationAllowed,
    endpointHostsAllowed,
    imageRegistriesAllowed,
    workloadResidencyMode,
];

/** Security policies: exposure of management ports, GitOps drift, RBAC, secrets, SSH trust. */
export const SECURITY_POLICIES: readonly (ResourceValidationPolicy | StackValidationPolicy)[] = [
    firewallManagementPorts,
    argocdSyncAutomated,
    clusterAdminBreakGlass,
    credentialOutputsSecret,
    sshHostKeyPinned,
];

/** Every policy of the pack, without starting the pack (index.ts does that). */
export const POLICIES: readonly (ResourceValidationPolicy | StackValidationPolicy)[] = [...RESIDENCY_POLICIES, ...SECURITY_POLICIES];
