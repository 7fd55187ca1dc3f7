import { PolicyPack } from "@pulumi/policy";

import { POLICIES } from "./policies";

/**
 * zerotouch's policy pack: EEA data residency and platform security. Run it with
 *
 *     pulumi preview --policy-pack policy --policy-pack-config policy/config.eea.json
 *
 * Every policy is mandatory by default; see README.md for the configs.
 */
new PolicyPack("zerotouch", {
    description: "EEA data residency and platform security for zerotouch platforms.",
    enforcementLevel: "mandatory",
    policies: [...POLICIES],
});
