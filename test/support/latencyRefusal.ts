/**
 * The wording of a latency refusal as components/node/scripts/latency.sh prints it, where the
 * verdict is made (the node): the tests hold the script's output to it. Test code only.
 */
import { formatEndpoint, formatMs3, LatencyResult, LatencyTargetName } from "../../components/node/latency";

/** What a target is called in messages. */
const LATENCY_TARGET_LABEL: Readonly<Record<LatencyTargetName, string>> = {
    gitlab: "the GitLab host",
    probe: "the probe target",
};

/** How to raise the threshold: for this node, or for all. */
function overrideText(node: string): string {
    return (
        "To accept it anyway, raise the threshold for this node: " +
        `pulumi config set --path 'zerotouch:nodes.${node}.maxLatencyMs' <ms>, ` +
        "or for all nodes: pulumi config set --path 'zerotouch:preflight.maxLatencyMs' <ms>"
    );
}

/**
 * The preflight problem of a target the node refused: node, measured median (and worst), the
 * threshold and the override, as `latency.sh` prints it; the preflight prefixes it with `zerotouch: preflight failed on node <node>: `.
 */
export function formatLatencyRefusal(node: string, r: LatencyResult): string {
    const what = `${LATENCY_TARGET_LABEL[r.name]} ${formatEndpoint(r)}`;
    const threshold = `the threshold of ${String(r.thresholdMs)} ms`;
    if (r.medianNs === null || r.worstNs === null) {
        const where = r.address === "" ? `${r.host} did not resolve` : `no TCP connect to ${r.address} succeeded in ${r.tries} tries of at most ${r.timeoutMs} ms each`;
        return `latency: ${what}: ${where}, so ${threshold} cannot be checked. Check the node's route and DNS to it, or the target (zerotouch:preflight.latency.${r.name})`;
    }
    return (
        `latency: ${what} (${r.address}): TCP connect took a median of ${formatMs3(r.medianNs)} ms over ${r.connected} of ${r.tries} tries ` +
        `(worst ${formatMs3(r.worstNs)} ms), above ${threshold}. ` +
        `The node is far from it; a node nearer to it is the better fix. ${overrideText(node)}`
    );
}
