/**
 * The manifests repository as an app team lays it out for the GitOps loop: one Helm chart per
 * environment under `deployments/<env>`, whose `values-<env>.yaml` holds the image tag that the
 * app pipeline's update-manifests job bumps (stacks/templates/update-manifests.sh). The lab's
 * Application (test/lab/kubeApi.ts `labGitopsConfig`) points Argo CD at `deployments/prod` with
 * the value file `values-prod.yaml`.
 *
 * The chart is plain: no helpers, no hooks, fixed object names, nothing that needs a node. The
 * ConfigMaps and the ClusterIP Service are healthy as soon as they are stored; the Deployment's
 * pod needs a kubelet to become available (Argo CD reports it Progressing without one): a loop
 * that must reach Healthy on an API server without nodes sets `replicas: 0`.
 */

/** Where the chart lives in the repository (the Application's `path`). */
export const CHART_PATH = "deployments/prod";
/** The value file the Application names, relative to CHART_PATH. */
export const VALUES_FILE = "values-prod.yaml";
/** The value file from the repository's root: update-manifests.sh's MANIFEST_FILE. */
export const MANIFEST_FILE = `${CHART_PATH}/${VALUES_FILE}`;
/** The key the app pipeline sets: update-manifests.sh's IMAGE_KEY. */
export const IMAGE_KEY = "image.tag";
export const IMAGE_REPOSITORY = "registry.example.eu/backend/backend-service";
/** The comment line of values-prod.yaml that a bump must keep. */
export const VALUES_COMMENT = "# Production values of backend-service. The app pipeline sets image.tag; change the rest by merge request.";

/** Object names the chart renders, by role. */
export const OBJECT_NAMES = {
    config: "backend-service-config",
    extraConfig: "backend-service-extra",
    service: "backend-service",
    deployment: "backend-service",
} as const;

/** A template's object: its apiVersion, kind, name and the chart's label, then `body` (YAML, from the top level). */
function chartObject(apiVersion: string, kind: string, name: string, body: string): string {
    return `apiVersion: ${apiVersion}
kind: ${kind}
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/name: backend-service
${body}`;
}

/** An image tag, as bump-image.mjs accepts it (so it is written quoted and needs no escaping). */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export interface AppManifestsOptions {
    /** The image tag in values-prod.yaml. */
    readonly tag: string;
    /** Adds the ConfigMap `backend-service-extra` (its own template file). Defaults to false. */
    readonly extraConfig?: boolean;
    /** The Deployment's replicas, written to values-prod.yaml when given. Defaults to values.yaml's 1. */
    readonly replicas?: number;
}

/**
 * The files of the manifests repository (path → content). Pure. Without `extraConfig` the extra
 * ConfigMap's template is absent from the record, not empty: to remove it from Git, delete the
 * paths that the new record no longer holds.
 */
export function appManifests(opts: AppManifestsOptions): Record<string, string> {
    if (typeof opts.tag !== "string" || !TAG.test(opts.tag)) {
        throw new Error(`appManifests: tag is ${JSON.stringify(opts.tag)}; allowed: an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})`);
    }
    if (opts.replicas !== undefined && (!Number.isInteger(opts.replicas) || opts.replicas < 0)) {
        throw new Error(`appManifests: replicas is ${JSON.stringify(opts.replicas)}; allowed: a whole number, 0 or more`);
    }
    const extraConfig = opts.extraConfig ?? false;
    const files: Record<string, string> = {
        "README.md": `# Manifests

One Helm chart per environment under \`deployments/<env>\`. Argo CD renders
\`${CHART_PATH}\` with \`${VALUES_FILE}\`; the app pipeline commits the image tag
(\`${IMAGE_KEY}\` in \`${MANIFEST_FILE}\`) and nothing else.
`,
        [`${CHART_PATH}/Chart.yaml`]: `apiVersion: v2
name: backend-service
description: The backend service, as its team deploys it through the manifests repository.
type: application
version: 0.1.0
appVersion: "1.0.0"
`,
        [`${CHART_PATH}/values.yaml`]: `# Defaults of the backend-service chart; ${VALUES_FILE} sets production's.
replicaCount: 1

image:
  repository: ${IMAGE_REPOSITORY}
  # Required: every environment's value file pins it.
  tag: ""
  pullPolicy: IfNotPresent

service:
  port: 80

containerPort: 8080

logLevel: info
`,
        [MANIFEST_FILE]: `${VALUES_COMMENT}
image:
  repository: ${IMAGE_REPOSITORY}
  tag: "${opts.tag}"  # written by update-manifests
${opts.replicas !== undefined ? `\nreplicaCount: ${opts.replicas}\n` : ""}`,
        [`${CHART_PATH}/templates/configmap.yaml`]: chartObject("v1", "ConfigMap", OBJECT_NAMES.config, `data:
  imageTag: {{ required "image.tag is required" .Values.image.tag | quote }}
  logLevel: {{ .Values.logLevel | quote }}
`),
        [`${CHART_PATH}/templates/service.yaml`]: chartObject("v1", "Service", OBJECT_NAMES.service, `spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: backend-service
  ports:
    - name: http
      port: {{ .Values.service.port }}
      targetPort: http
      protocol: TCP
`),
        [`${CHART_PATH}/templates/deployment.yaml`]: chartObject("apps/v1", "Deployment", OBJECT_NAMES.deployment, `spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/name: backend-service
  template:
    metadata:
      labels:
        app.kubernetes.io/name: backend-service
    spec:
      containers:
        - name: backend-service
          image: "{{ .Values.image.repository }}:{{ required "image.tag is required" .Values.image.tag }}"
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .Values.containerPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: ${OBJECT_NAMES.config}
`),
    };
    if (extraConfig) {
        files[`${CHART_PATH}/templates/extra-configmap.yaml`] = chartObject("v1", "ConfigMap", OBJECT_NAMES.extraConfig, `data:
  featureFlags: "beta-search"
`);
    }
    return files;
}
