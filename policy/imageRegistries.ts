import type { ResourceValidationPolicy } from "@pulumi/policy";

import { APPLICATION, HELM_CHART_TYPES } from "./endpointHosts";
import { configList, FoundImage, get, HOST_NAME_PATTERN, hostAllowed, imageRegistry, plain, podContainers, stringListProperty, UNKNOWN, valuesImages, WORKLOAD_POD_SPEC } from "./lib";

export const IMAGE_REGISTRIES = "image-registries-allowed";

/** The images a resource runs or makes run, or UNKNOWN when where they are is unknown. */
function imagesOf(type: string, props: unknown): FoundImage[] | typeof UNKNOWN | undefined {
    const podPath = WORKLOAD_POD_SPEC[type];
    if (podPath !== undefined) {
        const containers = podContainers(get(props, podPath));
        if (containers === UNKNOWN) {
            return UNKNOWN;
        }
        return containers.map((c) => {
            const image = get(c.value, ["image"]);
            return { path: `${podPath.join(".")}.${c.path}.image`, image: typeof image === "string" ? image : UNKNOWN };
        });
    }
    if (HELM_CHART_TYPES.includes(type)) {
        const values = get(props, ["values"]);
        return values === UNKNOWN ? UNKNOWN : valuesImages(values, ["values"]);
    }
    if (type === APPLICATION) {
        const helm = get(props, ["spec", "source", "helm"]);
        if (helm === UNKNOWN) {
            return UNKNOWN;
        }
        const values = get(helm, ["valuesObject"]);
        return values === UNKNOWN ? UNKNOWN : valuesImages(values, ["spec", "source", "helm", "valuesObject"]);
    }
    return undefined;
}

/**
 * Every container image the platform runs comes from an allowed registry: the containers of
 * Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods, the images named
 * in Helm charts' values (the Argo CD chart) and in Applications' inline Helm values. An image
 * without a registry host is Docker Hub's (`docker.io`). Unknown images are violations.
 */
export const imageRegistriesAllowed: ResourceValidationPolicy = {
    name: IMAGE_REGISTRIES,
    description: "Container images in workloads, Helm chart values and Applications' inline values come from allowed registries.",
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            allowedRegistries: stringListProperty("Registry hosts images may come from (docker.io for Docker Hub); `*.example.com` allows every host under it. Defaults to none.", { pattern: HOST_NAME_PATTERN }),
        },
    },
    validateResource: (args, reportViolation) => {
        const images = imagesOf(args.type, plain(args.props));
        if (images === undefined) {
            return;
        }
        const allowed = configList(args.getConfig<Record<string, unknown>>(), "allowedRegistries", []);
        const allowedText = allowed.length > 0 ? allowed.join(", ") : "none configured";
        const what = `${args.type.split(":").pop()} ${args.name}`;
        if (images === UNKNOWN) {
            reportViolation(`${what}: its images are unknown during preview; allowed: images known from config, from ${allowedText}`);
            return;
        }
        for (const { path, image } of images) {
            if (image === UNKNOWN) {
                reportViolation(`${what}: ${path} is unknown during preview; allowed: an image from ${allowedText}`);
                continue;
            }
            const registry = imageRegistry(image);
            if (!hostAllowed(registry, allowed)) {
                reportViolation(`${what}: ${path} is ${JSON.stringify(image)} from registry ${JSON.stringify(registry)}; allowed: ${allowedText}`);
            }
        }
    },
};
