/**
 * Ranges of values that both the stack config and a component take: written once, used by the
 * config schema (infra/config.ts) and by the component's own check, so the two cannot disagree.
 */

/** Argo CD's periodic refresh (`timeout.reconciliation`), whole seconds; webhooks start syncs at once. */
export const RECONCILIATION_SECONDS = { min: 30, max: 3600, default: 180 } as const;

/** A latency threshold in milliseconds: above 0, at most 1000, whole nanoseconds (the gates compare in ns). */
export const THRESHOLD_MS = { max: 1000, decimals: 6 } as const;

/** What THRESHOLD_MS allows, as a refusal says it. */
export const THRESHOLD_MS_ALLOWED = `allowed: a number of ms above 0 and at most ${THRESHOLD_MS.max}, at most ${THRESHOLD_MS.decimals} decimals (whole ns)`;

/** Whether `ms` is a threshold THRESHOLD_MS allows. */
export function isThresholdMs(ms: number): boolean {
    const scale = 10 ** THRESHOLD_MS.decimals;
    return Number.isFinite(ms) && ms > 0 && ms <= THRESHOLD_MS.max && Math.round(ms * scale) / scale === ms;
}

/** Whether `s` is a reconciliation interval RECONCILIATION_SECONDS allows. */
export function isReconciliationSeconds(s: number): boolean {
    return Number.isInteger(s) && s >= RECONCILIATION_SECONDS.min && s <= RECONCILIATION_SECONDS.max;
}
