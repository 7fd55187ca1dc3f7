/**
 * The lab's command plugin (test/lab/command-standin), which stands in for the official
 * `command` provider under the real engine: its own Go tests (schema, Check, Diff rules, the
 * create/update/delete cycle over gRPC, SSH execution against an in-process SSH server on
 * loopback, host key pinning, bounded dial retries, and the built binary answering the engine's
 * handshake) run here with `go test`, from the module's go.sum.
 */
import { spawnSync } from "child_process";
import * as path from "path";

const MODULE = path.join(__dirname, "lab", "command-standin");

test("the command stand-in's Go tests pass", () => {
    const r = spawnSync("go", ["test", "-mod=readonly", "-count=1", "-json", "./..."], {
        cwd: MODULE,
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
    expect(passed.length).toBeGreaterThanOrEqual(30);
    console.log(`command stand-in: ${passed.length} Go tests and subtests passed`);
}, 16 * 60 * 1000);
