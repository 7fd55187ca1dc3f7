/**
 * The program's host firewall on every lab node, as the component runs it (`hostFirewallSteps`:
 * apply, then confirm), or its removal: for lab tests that need the nodes locked down as a
 * deployed cluster has them.
 */
import { hostFirewallSteps } from "../../components/firewall/hostFirewall";
import type { FirewallNode } from "../../components/firewall/rules";
import { expectOk } from "./etcdLab";
import { Lab, runStep } from "./harness";

export function labFirewall(lab: Lab, action: "create" | "delete"): void {
    const cluster: Record<string, FirewallNode> = Object.fromEntries(lab.nodes.map((n) => [n.name, { role: n.role, address: n.address }]));
    for (const node of lab.nodes) {
        const steps = hostFirewallSteps({ node: node.name, role: node.role, address: node.address, cluster, vpnCidr: lab.vpnCidr, managementCidrs: [lab.managementCidr], rollbackSeconds: 30 });
        for (const step of action === "create" ? steps : steps.slice(0, 1)) {
            expectOk(node, runStep(lab, node, step, action));
        }
    }
}
