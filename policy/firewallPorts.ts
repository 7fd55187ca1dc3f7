import type { StackValidationPolicy } from "@pulumi/policy";

import { cidrWithin, configList, get, isObject, isUnknown, parsePorts, plain, REMOTE_COMMAND, show, stringListProperty, toCidr, triggerFact, UNKNOWN } from "./lib";

export const FIREWALL_PORTS = "firewall-management-ports";

/** Kubernetes API, etcd client and peer, kubelet. Defaults of `protectedPorts`. */
export const PROTECTED_PORTS: readonly string[] = ["6443", "2379-2380", "10250"];

/** The VPN's and k3s' pod range. Defaults of `allowedSourceCidrs`. */
export const DEFAULT_SOURCE_CIDRS: readonly string[] = ["10.8.0.0/24", "10.42.0.0/16"];

/**
 * No node's firewall opens a management port (the Kubernetes API 6443, etcd 2379-2380, the
 * kubelet 10250) to anything outside the VPN, the pod range and the cluster's own nodes, and none
 * to everyone (`any`, 0.0.0.0/0, ::/0). Reads each `<node>-firewall-apply` command's rules
 * (`triggers[1].zerotouchFirewall`, sources resolved to CIDRs); the node addresses are those the
 * nodes declare (`zerotouchNode.host`), so this is a stack policy. Unknown rules are violations.
 */
export const firewallManagementPorts: StackValidationPolicy = {
    name: FIREWALL_PORTS,
    description: "No firewall rule opens 6443, 2379-2380 or 10250 to a source outside the VPN, pod and node CIDRs, or to everyone.",
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            allowedSourceCidrs: stringListProperty("CIDRs management ports may be open to besides the nodes' own addresses: the VPN and the pod range. Defaults to 10.8.0.0/24 and 10.42.0.0/16.", { pattern: "^[0-9a-fA-F:.]+/[0-9]{1,3}$" }),
            protectedPorts: stringListProperty("Ports and ranges that are management ports. Defaults to 6443, 2379-2380, 10250.", { pattern: "^[0-9]{1,5}(-[0-9]{1,5})?$" }, 1),
        },
    },
    validateStack: (args, reportViolation) => {
        const config = args.getConfig<Record<string, unknown>>();
        const allowedText = configList(config, "allowedSourceCidrs", DEFAULT_SOURCE_CIDRS);
        const protectedPorts = configList(config, "protectedPorts", PROTECTED_PORTS).map((p) => ({ text: p, range: parsePorts(p) }));
        const commands = args.resources.filter((r) => r.type === REMOTE_COMMAND);

        const nodeCidrs = commands.flatMap((r) => {
            const fact = triggerFact(plain(r.props), "zerotouchNode");
            const host = get(fact, ["host"]);
            const cidr = typeof host === "string" ? toCidr(host) : undefined;
            return cidr !== undefined && cidr.prefix === (cidr.family === 4 ? 32 : 128) ? [cidr] : [];
        });
        const allowed = [...allowedText.map(toCidr).filter((c) => c !== undefined), ...nodeCidrs];
        const allowedShown = `${allowedText.join(", ")} and the nodes' addresses`;

        for (const r of commands) {
            const fact = triggerFact(plain(r.props), "zerotouchFirewall");
            if (fact === undefined) {
                continue;
            }
            const where = `firewall command ${r.name}`;
            const rules = get(fact, ["rules"]);
            if (fact === UNKNOWN || rules === UNKNOWN || !Array.isArray(rules)) {
                reportViolation(`${where}: its rules (triggers zerotouchFirewall.rules) are ${show(rules)}; allowed: rules known from config`, r.urn);
                continue;
            }
            const node = isObject(fact) && typeof fact.node === "string" ? fact.node : "(unnamed)";
            rules.forEach((rule, i) => {
                const name = get(rule, ["name"]);
                const label = `node ${node} rule ${typeof name === "string" ? name : `#${i}`}`;
                const portsValue = get(rule, ["ports"]);
                const ports = parsePorts(portsValue);
                if (ports === undefined) {
                    reportViolation(`${where}: ${label} ports are ${show(portsValue)}; allowed: a known port or range`, r.urn);
                    return;
                }
                const hits = protectedPorts.filter((p) => p.range === undefined || (p.range.first <= ports.last && ports.first <= p.range.last));
                if (hits.length === 0) {
                    return;
                }
                const hitText = hits.map((h) => h.text).join(", ");
                const sources = get(rule, ["sources"]);
                if (!Array.isArray(sources)) {
                    reportViolation(`${where}: ${label} opens ${show(portsValue)} (management port ${hitText}) to sources ${show(sources)}; allowed: ${allowedShown}`, r.urn);
                    return;
                }
                for (const s of sources) {
                    if (typeof s !== "string" || isUnknown(s)) {
                        reportViolation(`${where}: ${label} opens ${show(portsValue)} (management port ${hitText}) to a source ${isUnknown(s) ? "unknown during preview" : show(s)}; allowed: ${allowedShown}`, r.urn);
                        continue;
                    }
                    const cidr = s === "any" ? undefined : toCidr(s);
                    if (s === "any" || cidr === undefined || cidr.prefix === 0) {
                        reportViolation(`${where}: ${label} opens ${show(portsValue)} (management port ${hitText}) to ${JSON.stringify(s)}, everyone or unparsable; allowed: ${allowedShown}`, r.urn);
                        continue;
                    }
                    if (!allowed.some((a) => cidrWithin(cidr, a))) {
                        reportViolation(`${where}: ${label} opens ${show(portsValue)} (management port ${hitText}) to ${cidr.text}, outside the VPN, pod and node CIDRs; allowed: ${allowedShown}`, r.urn);
                    }
                }
            });
        }
    },
};
