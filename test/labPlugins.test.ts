/**
 * The lab's own plugins for the real engine, each a Go module with its own tests, run here with
 * `go test` from the module's go.sum:
 * - test/lab/command-standin, which stands in for the official `command` provider: schema, Check,
 *   Diff rules, the create/update/delete cycle over gRPC, SSH execution against an in-process SSH
 *   server on loopback, host key pinning, bounded dial retries, the built binary's handshake;
 * - test/lab/language-host, the nodejs language host adapter: every call forwarded to the
 *   v3.68.0 host unchanged (status codes included), RunPlugin for policy packs streamed back.
 */
import { spawnSync } from "child_process";
import * as path from "path";

test.each([
    ["command-standin", 30],
    ["language-host", 15],
])("the Go tests of test/lab/%s pass", (module, atLeast) => {
    const r = spawnSync("go", ["test", "-mod=readonly", "-count=1", "-json", "./..."], {
        cwd: path.join(__dirname, "lab", module),
        encoding: "utf8",
        timeout: 15 * 60 * 1000,
        maxBuffer: 256 * 1024 * 1024,
    });
    const events = (r.stdout ?? "")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { Action: string; Test?: string; Package: string; Output?: string });
    const passed = events.filter((e) => e.Action === "pass" && e.Test !== undefined);
    const failed = events.filter((e) => e.Action === "fail" && e.Test !== undefined).map((e) => `${e.Package} ${e.Test}`);
    const skipped = events.filter((e) => e.Action === "skip" && e.Test !== undefined).map((e) => `${e.Package} ${e.Test}`);
    if (r.status !== 0) {
        const output = events.filter((e) => e.Action === "output").map((e) => e.Output ?? "").join("");
        throw new Error(`go test exited ${r.status ?? r.signal}: failed ${failed.join(", ") || "(none reported)"}\n${output.slice(-6000)}\n${(r.stderr ?? "").slice(-3000)}`);
    }
    expect({ failed, skipped }).toEqual({ failed: [], skipped: [] });
    expect(passed.length).toBeGreaterThanOrEqual(atLeast);
    console.log(`${module}: ${passed.length} Go tests and subtests passed`);
}, 16 * 60 * 1000);
