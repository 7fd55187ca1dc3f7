/**
 * Evaluates the whole program under mocks for a fleet of N nodes and prints one JSON line:
 * wall time, peak memory and resource count. Run by bench.ts, one process per size.
 */
import { readFileSync } from "fs";
import * as path from "path";

import { installMocks, resolve } from "../support/mocks";
import { providerState } from "../support/providerState";
import { nodeStdout } from "../support/nodeStdout";

async function main(): Promise<void> {
    const size = Number(process.argv[2]);
    if (!Number.isInteger(size) || size < 1) {
        throw new Error(`usage: evaluate.ts <nodes>, got ${process.argv[2]}`);
    }
    const controlPlanes = size >= 5 ? (size >= 50 ? 5 : 3) : 1;
    const nodes: Record<string, unknown> = {};
    for (let i = 0; i < size; i++) {
        const role = i < controlPlanes ? "control-plane" : "worker";
        const name = role === "control-plane" ? `cp-${i + 1}` : `worker-${i + 1 - controlPlanes}`;
        // 10.x.y.z: enough distinct addresses for any fleet size.
        nodes[name] = {
            host: `10.${Math.floor(i / 65536) + 1}.${Math.floor(i / 256) % 256}.${(i % 256) + 1}`,
            role,
            location: { country: "NO", region: "oslo", datacenter: `osl${(i % 2) + 1}`, provider: "example-vps" },
        };
    }
    const key = readFileSync(path.join(__dirname, "..", "fixtures", "test-ssh-key"), "utf8");
    const config: Record<string, string> = {
        "zerotouch:nodes": JSON.stringify(nodes),
        "zerotouch:sshPrivateKey": key,
        "zerotouch:vpnCidr": "10.200.0.0/24",
        "zerotouch:managementCidrs": JSON.stringify(["198.51.100.0/28"]),
    };
    const recorder = await installMocks({
        config,
        secretKeys: ["zerotouch:sshPrivateKey"],
        stdoutFor: (type, name, inputs) => nodeStdout(type, name, inputs),
        stateFor: (type, name, inputs) => providerState(type, name, inputs),
    });
    const start = process.hrtime.bigint();
    const program = (await import("../../infra/index")) as { platform: Parameters<typeof resolve>[0]; kubeconfig: Parameters<typeof resolve>[0] };
    await resolve(program.platform);
    await resolve(program.kubeconfig);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const peakMiB = process.resourceUsage().maxRSS / 1024;
    process.stdout.write(
        `${JSON.stringify({ nodes: size, seconds, peakMiB, resources: recorder.resources.length })}\n`,
    );
}

main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
});
