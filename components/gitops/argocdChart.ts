/** The Argo CD chart the program pins, and which values keys it reads. */
import { readFileSync } from "fs";
import * as path from "path";

import { ChartValuesIndex } from "./chartValues";

/**
 * The pinned chart: argo-helm's `argo-cd` 10.1.1, whose appVersion is Argo CD v3.4.4. It is the
 * newest chart whose tarball could be rendered and checked here (`npm run test:k8s` renders it
 * with the program's values and checks what it reads); a pin that cannot be checked is how keys
 * the chart ignores went unnoticed before. Its CRDs are the ones the Application tests use.
 */
export const ARGOCD_CHART = {
    repo: "https://argoproj.github.io/argo-helm",
    chart: "argo-cd",
    version: "10.1.1",
    appVersion: "v3.4.4",
} as const;

let valuesIndex: ChartValuesIndex | undefined;

/**
 * Which values keys the pinned chart reads: derived from its tarball (`indexChart` in
 * test/support/chart.ts), and compared with it by the tests. An override key outside it is
 * refused. Read on first use (only the override guard needs it), then kept.
 */
export function argoCdValuesIndex(): ChartValuesIndex {
    valuesIndex ??= JSON.parse(readFileSync(path.join(__dirname, "charts", `argo-cd-${ARGOCD_CHART.version}.values-index.json`), "utf8")) as ChartValuesIndex;
    return valuesIndex;
}
