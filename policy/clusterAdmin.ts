import type { ResourceValidationPolicy } from "@pulumi/policy";

import { get, plain, show, UNKNOWN } from "./lib";

export const CLUSTER_ADMIN = "cluster-admin-break-glass";

export const CLUSTER_ROLE_BINDING_TYPES = [
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
    "kubernetes:rbac.authorization.k8s.io/v1beta1:ClusterRoleBinding",
];

/**
 * No ClusterRoleBinding grants `cluster-admin` except to the configured break-glass group: every
 * subject of such a binding is a Group with that name. Without a configured group, no binding
 * may grant it. Unknown role references or subjects are violations.
 */
export const clusterAdminBreakGlass: ResourceValidationPolicy = {
    name: CLUSTER_ADMIN,
    description: "No ClusterRoleBinding grants cluster-admin except to the configured break-glass group.",
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            breakGlassGroup: {
                type: "string",
                minLength: 1,
                description: "The one group that may hold cluster-admin (break glass). Defaults to none.",
            },
        },
    },
    validateResource: (args, reportViolation) => {
        if (!CLUSTER_ROLE_BINDING_TYPES.includes(args.type)) {
            return;
        }
        const props = plain(args.props);
        const what = `ClusterRoleBinding ${args.name}`;
        const group = args.getConfig<{ breakGlassGroup?: string }>().breakGlassGroup;
        const allowed = group === undefined ? "no subject (no break-glass group is configured)" : `only the Group ${JSON.stringify(group)}`;
        const kind = get(props, ["roleRef", "kind"]);
        const role = get(props, ["roleRef", "name"]);
        if (role === UNKNOWN || kind === UNKNOWN) {
            reportViolation(`${what}: roleRef is unknown during preview; allowed: a known role (cluster-admin to ${allowed})`);
            return;
        }
        if (role !== "cluster-admin" || kind !== "ClusterRole") {
            return;
        }
        const subjects = get(props, ["subjects"]);
        if (!Array.isArray(subjects)) {
            if (subjects !== undefined) {
                reportViolation(`${what}: grants cluster-admin to subjects ${show(subjects)}; allowed: ${allowed}`);
            }
            return;
        }
        subjects.forEach((_, i) => {
            const k = get(subjects, [i, "kind"]);
            const n = get(subjects, [i, "name"]);
            if (k !== "Group" || group === undefined || n !== group) {
                reportViolation(`${what}: grants cluster-admin to ${show(k)} ${show(n)}; allowed: ${allowed}`);
            }
        });
    },
};
