import { spawnSync } from "child_process";
import { existsSync } from "fs";
import * as path from "path";

/**
 * Public reference data the tests check against (Argo CD CRDs, the argo-cd chart, GitLab's CI
 * schema, the GitLab provider schema subset): read where it is kept, `shared/reference` next to
 * the project's checkout, never copied into the repository. Looked up, in order:
 * `ZEROTOUCH_REFERENCE_DIR`; `shared/reference` in a folder above this checkout; the same above
 * the checkout this one was cloned from (a CI clone elsewhere); this machine's
 * `/work/shared/reference`. Missing, the tests fail saying where they looked.
 */
const ROOT = path.resolve(__dirname, "..", "..");
const MARKER = "README.md";

function ancestors(dir: string): string[] {
    const out: string[] = [];
    for (let d = path.resolve(dir); ; d = path.dirname(d)) {
        out.push(d);
        if (path.dirname(d) === d) {
            return out;
        }
    }
}

/** The local path this checkout was cloned from, if it was cloned from a local path. */
function originPath(): string | undefined {
    const r = spawnSync("git", ["-C", ROOT, "config", "--get", "remote.origin.url"], { encoding: "utf8", timeout: 10_000 });
    const url = (r.stdout ?? "").trim().replace(/^file:\/\//, "");
    return url.startsWith("/") ? url : undefined;
}

function candidates(): string[] {
    const env = process.env.ZEROTOUCH_REFERENCE_DIR;
    const origin = originPath();
    return [
        ...(env !== undefined && env !== "" ? [env] : []),
        ...ancestors(path.dirname(ROOT)).map((d) => path.join(d, "shared", "reference")),
        ...(origin !== undefined ? ancestors(path.dirname(origin)).map((d) => path.join(d, "shared", "reference")) : []),
        "/work/shared/reference",
    ];
}

let found: string | undefined;

/** The reference data folder; throws naming every place looked at when there is none. */
export function referenceDir(): string {
    if (found === undefined) {
        const tried = [...new Set(candidates())];
        found = tried.find((d) => existsSync(path.join(d, MARKER)));
        if (found === undefined) {
            throw new Error(`the public reference data (shared/reference) was not found; looked in: ${tried.join(", ")}. Set ZEROTOUCH_REFERENCE_DIR to its folder.`);
        }
    }
    return found;
}

/** A file of the reference data. */
export function referenceFile(...parts: string[]): string {
    return path.join(referenceDir(), ...parts);
}
