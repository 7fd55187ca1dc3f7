/**
 * `npm run bench`: evaluates the whole program under mocks for 5, 50 and 200 nodes, each in a
 * fresh process, and prints wall time, peak memory and resource count per size. Not a test:
 * it shows what growing a fleet costs the program itself (not the nodes' own phases).
 */
import { spawnSync } from "child_process";
import * as path from "path";

const SIZES = (process.env.BENCH_SIZES ?? "5,50,200").split(",").map(Number);

interface Row {
    nodes: number;
    seconds: number;
    peakMiB: number;
    resources: number;
}

const rows: Row[] = [];
for (const size of SIZES) {
    const result = spawnSync(
        process.execPath,
        ["-r", "ts-node/register/transpile-only", path.join(__dirname, "evaluate.ts"), String(size)],
        { encoding: "utf8", timeout: 600_000, cwd: path.join(__dirname, "..", "..") },
    );
    if (result.status !== 0) {
        process.stderr.write(result.stderr);
        throw new Error(`bench: evaluating ${size} nodes failed (exit ${result.status ?? result.signal})`);
    }
    const lines = result.stdout.trim().split("\n");
    rows.push(JSON.parse(lines[lines.length - 1]) as Row);
}

const header = "| nodes | resources | wall time (s) | peak RSS (MiB) | ms per node |";
const rule = "|------:|----------:|--------------:|---------------:|------------:|";
process.stdout.write(`${header}\n${rule}\n`);
for (const r of rows) {
    process.stdout.write(
        `| ${r.nodes} | ${r.resources} | ${r.seconds.toFixed(2)} | ${r.peakMiB.toFixed(0)} | ${((r.seconds * 1000) / r.nodes).toFixed(1)} |\n`,
    );
}
