/**
 * The exposure check after a deploy: probes every node's public address from where it runs and
 * fails, naming node and port, when a port answers that the firewall should drop from there.
 *
 *   ts-node --transpile-only components/firewall/verify-exposure.ts \
 *       --outputs <file> --from internet|management|vpn|<address> [--xml-out <file>]
 *
 * `--outputs`: the stack's `platform` output as JSON (`pulumi stack output platform --json`), or
 * every output (`pulumi stack output --json`). `--from`: where this prober stands (see
 * `ProberPosition` in exposure.ts). `--xml-out`: also keep nmap's raw XML there.
 *
 * Runs nmap (Debian's package) as root: the SYN and UDP scans need raw sockets. Prints the table
 * (node, address, port, expected, observed, verdict) on stdout; exit 0 when every node was
 * reached and nothing answered that should not, 1 with one line per failing node on stderr, 2 on
 * a usage or tool error.
 */
import { spawnSync } from "child_process";
import { readFileSync, writeFileSync } from "fs";
import { z } from "zod";

import { ipToBigInt } from "../lib/cidr";
import { firewallOutputSchema, nodeOutputSchema, OUTPUT_NAME, platformOutputsSchema } from "../../stacks/outputs";
import { expectedExposure, ExposureReport, failureLines, formatTable, judge, NmapScan, nmapArgs, parseNmapXml, parsePosition, PortState, ProberPosition } from "./exposure";

/** Seconds nmap may spend on one host, and the bound on the whole nmap run. */
const HOST_TIMEOUT_SECONDS = 120;
const RUN_TIMEOUT_SECONDS = 600;

/** The part of the outputs contract the check reads. */
const targetsSchema = platformOutputsSchema.pick({ vpnCidr: true, managementCidrs: true }).extend({
    nodes: z.record(z.string(), nodeOutputSchema.pick({ host: true, role: true })),
    firewall: firewallOutputSchema,
});

interface Options {
    readonly outputs: string;
    readonly from: ProberPosition;
    readonly xmlOut?: string;
}

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): Options {
    const values = new Map<string, string>();
    for (let i = 0; i < argv.length; i += 2) {
        const [key, value] = [argv[i], argv[i + 1]];
        if (!["--outputs", "--from", "--xml-out"].includes(key) || value === undefined) {
            throw new UsageError(`unexpected argument ${JSON.stringify(key)}`);
        }
        values.set(key, value);
    }
    const outputs = values.get("--outputs");
    const from = values.get("--from");
    if (outputs === undefined || from === undefined) {
        throw new UsageError("--outputs and --from are required");
    }
    const xmlOut = values.get("--xml-out");
    return { outputs, from: parsePosition(from), ...(xmlOut !== undefined ? { xmlOut } : {}) };
}

/** The targets from an outputs file: the `platform` object itself, or all outputs holding it. */
export function readTargets(text: string, source: string): z.infer<typeof targetsSchema> {
    let value = JSON.parse(text) as unknown;
    if (typeof value === "object" && value !== null && OUTPUT_NAME in value && !("outputsVersion" in value)) {
        value = (value as Record<string, unknown>)[OUTPUT_NAME];
    }
    const parsed = targetsSchema.safeParse(value);
    if (!parsed.success) {
        const fields = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
        throw new UsageError(`${source}: not the "${OUTPUT_NAME}" output of a zerotouch stack (${fields})`);
    }
    return parsed.data;
}

/** Runs nmap once per address family and merges the scans; the raw XML is returned too. */
function scan(addresses: readonly string[]): { scan: NmapScan; xml: string[] } {
    const merged = new Map<string, ReadonlyMap<string, PortState>>();
    const xml: string[] = [];
    for (const family of [4, 6]) {
        const own = addresses.filter((a) => ipToBigInt(a)?.family === family);
        if (own.length === 0) {
            continue;
        }
        const r = spawnSync("nmap", nmapArgs(own, HOST_TIMEOUT_SECONDS), { encoding: "utf8", timeout: RUN_TIMEOUT_SECONDS * 1000, maxBuffer: 16 << 20 });
        if (r.error !== undefined || r.status !== 0) {
            const why = r.error !== undefined ? r.error.message : `exit ${String(r.status ?? r.signal)}: ${r.stderr.trim()}`;
            throw new Error(`nmap failed (${why}); it is Debian's package nmap, run as root`);
        }
        xml.push(r.stdout);
        for (const [address, ports] of parseNmapXml(r.stdout)) {
            merged.set(address, ports);
        }
    }
    return { scan: merged, xml };
}

export function verifyExposure(options: Options): ExposureReport {
    const targets = readTargets(readFileSync(options.outputs, "utf8"), options.outputs);
    const expectations = expectedExposure(targets, options.from);
    const result = scan([...new Set(expectations.map((e) => e.address))]);
    if (options.xmlOut !== undefined) {
        writeFileSync(options.xmlOut, result.xml.join("\n"));
    }
    return judge(expectations, result.scan, options.from);
}

function main(): number {
    let options: Options;
    try {
        options = parseArgs(process.argv.slice(2));
        if (process.getuid?.() !== 0) {
            throw new UsageError("nmap's SYN and UDP scans need raw sockets: run as root");
        }
        const report = verifyExposure(options);
        console.log(formatTable(report));
        for (const line of failureLines(report)) {
            console.error(line);
        }
        return report.ok ? 0 : 1;
    } catch (e) {
        const usage = e instanceof UsageError ? "\nusage: verify-exposure.ts --outputs <file> --from internet|management|vpn|<address> [--xml-out <file>]" : "";
        console.error(`verify-exposure: ${e instanceof Error ? e.message : String(e)}${usage}`);
        return 2;
    }
}

if (require.main === module) {
    process.exitCode = main();
}
