import type { ResourceValidationPolicy } from "@pulumi/policy";

import { APPLICATION } from "./endpointHosts";
import { get, plain, show } from "./lib";

export const ARGOCD_SYNC = "argocd-sync-automated";

/**
 * Argo CD Applications sync automatically with `prune` and `selfHeal` on, so the cluster
 * follows the manifests repository and drift is undone. `automated.enabled: false` (Argo CD 3)
 * turns it off and is a violation too. Unknown values are violations.
 */
export const argocdSyncAutomated: ResourceValidationPolicy = {
    name: ARGOCD_SYNC,
    description: "Argo CD Applications have automated sync with prune and selfHeal.",
    enforcementLevel: "mandatory",
    configSchema: { properties: {} },
    validateResource: (args, reportViolation) => {
        if (args.type !== APPLICATION) {
            return;
        }
        const props = plain(args.props);
        const what = `Application ${args.name}`;
        const automated = get(props, ["spec", "syncPolicy", "automated"]);
        if (automated === null || typeof automated !== "object") {
            reportViolation(`${what}: spec.syncPolicy.automated is ${show(automated)}; allowed: {prune: true, selfHeal: true}`);
            return;
        }
        for (const field of ["prune", "selfHeal"]) {
            const v = get(automated, [field]);
            if (v !== true) {
                reportViolation(`${what}: spec.syncPolicy.automated.${field} is ${show(v)}; allowed: true`);
            }
        }
        const enabled = get(automated, ["enabled"]);
        if (enabled !== undefined && enabled !== true) {
            reportViolation(`${what}: spec.syncPolicy.automated.enabled is ${show(enabled)}; allowed: true or not set`);
        }
    },
};
