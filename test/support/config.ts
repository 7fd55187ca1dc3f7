import { readFileSync } from "fs";
import * as path from "path";

import { ConfigError, validateConfig } from "../../infra/config";

/** A throwaway private key, authorised nowhere (test/fixtures/README.md). */
export const TEST_KEY = readFileSync(path.join(__dirname, "..", "fixtures", "test-ssh-key"), "utf8");

export function location(datacenter = "osl1") {
    return { country: "NO", region: "oslo", datacenter, provider: "example-vps" };
}

/**
 * A valid raw config (the `zerotouch:` keys without namespace): 3 control-plane nodes in Oslo,
 * the given workers (default one), the test key. Tests change one thing at a time.
 */
export function validRawConfig(workers = 1): Record<string, any> {
    const nodes: Record<string, unknown> = {
        "cp-1": { host: "203.0.113.11", role: "control-plane", location: location() },
        "cp-2": { host: "203.0.113.12", role: "control-plane", location: location() },
        "cp-3": { host: "203.0.113.13", role: "control-plane", location: location("osl2") },
    };
    for (let i = 1; i <= workers; i++) {
        nodes[`worker-${i}`] = { host: `203.0.113.${20 + i}`, role: "worker", location: location(i % 2 === 1 ? "osl1" : "osl2") };
    }
    return { nodes, sshPrivateKey: TEST_KEY, vpnCidr: "10.8.0.0/24", managementCidrs: ["198.51.100.0/28"] };
}

/** The secret keys of validRawConfig's stack. */
export const TEST_SECRET_KEYS: ReadonlySet<string> = new Set(["sshPrivateKey", "gitlabToken"]);

/** The problems validateConfig lists for `raw` (it must refuse it with a ConfigError). */
export function problemsOf(raw: Record<string, unknown>, secretKeys: ReadonlySet<string> = TEST_SECRET_KEYS): string[] {
    try {
        validateConfig(raw, secretKeys);
    } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return [...(err as ConfigError).problems];
    }
    throw new Error("config was accepted");
}
