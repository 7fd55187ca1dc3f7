import { createHash } from "crypto";
import { readFileSync } from "fs";
import * as path from "path";

/**
 * How the node scripts are shipped and run.
 *
 * A script is a file under `components/<module>/scripts/`. It takes its parameters from
 * `ZT_*` environment variables. The payload sent to a node over SSH (as the command's stdin)
 * is a small preamble that exports those variables, shell-quoted, followed by the script text.
 * The remote command is a fixed runner that stores the payload in a private temporary file and
 * runs it with stdin closed, so nothing in the script can swallow the rest of the payload and
 * no parameter is ever interpolated into a command line.
 *
 * `ZT_ACTION` tells a script whether it runs for `create` (also used on update) or `delete`.
 */

/** A value a script parameter may take. Lists are passed one item per line. */
export type ScriptParam = string | number | boolean | readonly string[];
export type ScriptParams = Readonly<Record<string, ScriptParam>>;

export type ScriptAction = "create" | "delete";

export interface ScriptPayload {
    /** The exact text sent as stdin: parameter preamble followed by the script. */
    readonly stdin: string;
    /** sha256 of script text and parameters; goes into `triggers`. */
    readonly hash: string;
}

const PARAM_NAME = /^ZT_[A-Z0-9_]+$/;
const scriptCache = new Map<string, string>();

/** Reads a script file once per process. */
export function loadScript(file: string): string {
    const resolved = path.resolve(file);
    let text = scriptCache.get(resolved);
    if (text === undefined) {
        text = readFileSync(resolved, "utf8");
        scriptCache.set(resolved, text);
    }
    return text;
}

/** Quotes a string for POSIX shells: the result is one word with exactly the given bytes. */
export function shellQuote(value: string): string {
    return `'${value.replace(/'/g, `'\\''`)}'`;
}

function paramValue(value: ScriptParam): string {
    if (typeof value === "string") {
        return value;
    }
    if (typeof value === "number") {
        if (!Number.isFinite(value)) {
            throw new Error(`script parameter must be a finite number, got ${value}`);
        }
        return String(value);
    }
    if (typeof value === "boolean") {
        return value ? "true" : "false";
    }
    return value.join("\n");
}

/** Renders the `export ZT_X='...'` preamble, keys sorted so the payload is stable. */
export function renderParams(params: ScriptParams): string {
    return Object.keys(params)
        .sort()
        .map((key) => {
            if (!PARAM_NAME.test(key)) {
                throw new Error(`script parameter name ${JSON.stringify(key)} must match ${PARAM_NAME.source}`);
            }
            return `export ${key}=${shellQuote(paramValue(params[key]))}`;
        })
        .join("\n");
}

/** Builds the stdin payload and its hash for one script run. */
export function scriptPayload(scriptText: string, params: ScriptParams): ScriptPayload {
    const preamble = renderParams(params);
    const stdin = `# zerotouch script parameters\n${preamble}\n# end of parameters\n${scriptText}`;
    const hash = createHash("sha256").update(scriptText).update("\0").update(preamble).digest("hex");
    return { stdin, hash };
}

/**
 * The fixed command line that runs a payload read from stdin, as root.
 * Uses `sudo -n` (never prompts) when the SSH user is not root.
 */
export function remoteRunner(user: string, action: ScriptAction): string {
    const body =
        'umask 077; f=$(mktemp) || exit 1; cat >"$f"; ' +
        `ZT_ACTION=${action} bash "$f" </dev/null; rc=$?; rm -f "$f"; exit "$rc"`;
    const shell = `bash -c ${shellQuote(body)}`;
    return user === "root" ? shell : `sudo -n ${shell}`;
}

/**
 * Scripts print human-readable progress on stderr and exactly one JSON object as the last
 * line of stdout. Returns that object, or throws naming the script and what was printed.
 */
export function lastJsonLine(stdout: string, what: string): unknown {
    const lines = stdout.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
    const last = lines[lines.length - 1];
    if (last === undefined) {
        throw new Error(`${what}: the script printed no result line`);
    }
    try {
        return JSON.parse(last) as unknown;
    } catch {
        throw new Error(`${what}: the last line of the script's output is not JSON: ${last.slice(0, 200)}`);
    }
}
