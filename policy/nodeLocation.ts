import type { ResourceValidationPolicy } from "@pulumi/policy";

import { EEA_AND_EFTA } from "./countries";
import { get, isObject, plain, REMOTE_COMMAND, show, stringListProperty, triggerFact, UNKNOWN } from "./lib";

export const NODE_LOCATION = "node-location-allowed";

/** The fields of a node's location; each must be known and non-empty. */
const LOCATION_FIELDS = ["country", "region", "datacenter", "provider"] as const;

/**
 * Every node the program bootstraps declares where it is, on its connect command
 * (`<node>-connect`, `triggers[1].zerotouchNode`), and its country is in the allowed list. A
 * connect command without the declaration, a node without a location, an unknown value or a
 * declared host other than the one the command connects to are violations.
 */
export const nodeLocationAllowed: ResourceValidationPolicy = {
    name: NODE_LOCATION,
    description: "Every node's declared location (zerotouchNode on its connect command) is in an allowed country; a node without a location is a violation.",
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            allowedCountries: stringListProperty("ISO 3166-1 alpha-2 codes of the countries nodes may be in. Defaults to the EEA and Switzerland.", { pattern: "^[A-Z]{2}$" }, 1),
        },
    },
    validateResource: (args, reportViolation) => {
        if (args.type !== REMOTE_COMMAND) {
            return;
        }
        const props = plain(args.props);
        const fact = triggerFact(props, "zerotouchNode");
        const isConnect = args.name.endsWith("-connect") && args.urn.includes("zerotouch:node:VpsNode$");
        if (fact === undefined && !isConnect) {
            return;
        }
        const config = args.getConfig<{ allowedCountries?: string[] }>();
        const allowed = config.allowedCountries ?? EEA_AND_EFTA;
        const where = `node connect command ${args.name}`;
        if (fact === UNKNOWN) {
            reportViolation(`${where}: its node declaration (triggers zerotouchNode) is unknown during preview; allowed: a location known from config`);
            return;
        }
        if (!isObject(fact)) {
            reportViolation(`${where}: declares no node (triggers carry no zerotouchNode), so its location is unknown; allowed: a node with a location in ${allowed.join(", ")}`);
            return;
        }
        const node = typeof fact.node === "string" ? fact.node : "(unnamed)";
        const location = get(fact, ["location"]);
        if (location === UNKNOWN || location === undefined || location === null) {
            reportViolation(`${where}: node ${node} has no location (${show(location)}); allowed: a location with a country in ${allowed.join(", ")}`);
            return;
        }
        for (const field of LOCATION_FIELDS) {
            const v = get(location, [field]);
            if (typeof v !== "string" || v === "") {
                reportViolation(`${where}: node ${node} location.${field} is ${show(v)}; allowed: a known, non-empty value`);
            }
        }
        const country = get(location, ["country"]);
        if (typeof country === "string" && country !== "" && !allowed.includes(country)) {
            reportViolation(`${where}: node ${node} is in country ${JSON.stringify(country)}; allowed: ${allowed.join(", ")}`);
        }
        const declaredHost = get(fact, ["host"]);
        const host = get(props, ["connection", "host"]);
        if (declaredHost === UNKNOWN || host === UNKNOWN || typeof declaredHost !== "string" || declaredHost !== host) {
            reportViolation(`${where}: node ${node} declares host ${show(declaredHost)} but connects to ${show(host)}; allowed: the declared host, known from config`);
        }
    },
};
