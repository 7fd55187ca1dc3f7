import { z } from "zod";

import { lastJsonLine } from "./script";

/** One line per schema violation: `path: message`, joined with "; ". */
export function zodIssues(error: z.ZodError): string {
    return error.issues.map((i) => `${i.path.length > 0 ? i.path.join(".") : "(root)"}: ${i.message}`).join("; ");
}

/**
 * Parses a script's result (the JSON object on the last line of its stdout) against a schema.
 * Throws `<what>: unexpected result line: …` naming every field that does not match.
 */
export function parseResultLine<T>(schema: z.ZodType<T>, stdout: string, what: string): T {
    const parsed = schema.safeParse(lastJsonLine(stdout, what));
    if (!parsed.success) {
        throw new Error(`${what}: unexpected result line: ${zodIssues(parsed.error)}`);
    }
    return parsed.data;
}
