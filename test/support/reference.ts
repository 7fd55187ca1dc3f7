import * as path from "path";

/** Public reference data the tests check against (see test/fixtures/reference/README.md). */
export const REFERENCE_DIR = path.join(__dirname, "..", "fixtures", "reference");

/** A file of the reference data. */
export function referenceFile(...parts: string[]): string {
    return path.join(REFERENCE_DIR, ...parts);
}
