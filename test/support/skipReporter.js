/**
 * Jest reporter: lists every skipped test with its title (a skip names its reason in the title,
 * see test/support/host.ts), and fails the run when ZT_FAIL_ON_SKIP=1 (CI) and anything was
 * skipped.
 */
class SkipReporter {
    constructor() {
        this.error = undefined;
    }

    onRunComplete(_contexts, results) {
        const skipped = [];
        for (const file of results.testResults) {
            for (const t of file.testResults) {
                if (t.status === "pending" || t.status === "todo" || t.status === "skipped" || t.status === "disabled") {
                    skipped.push(`${file.testFilePath.replace(process.cwd() + "/", "")}: ${t.fullName}`);
                }
            }
        }
        if (skipped.length === 0) {
            process.stderr.write("skips: none\n");
            return;
        }
        process.stderr.write(`skips: ${skipped.length} test(s) skipped:\n${skipped.map((s) => `  - ${s}`).join("\n")}\n`);
        if (process.env.ZT_FAIL_ON_SKIP === "1") {
            this.error = new Error(`${skipped.length} test(s) skipped, and ZT_FAIL_ON_SKIP=1 allows none`);
            process.stderr.write(`skips: ${this.error.message}\n`);
        }
    }

    getLastError() {
        return this.error;
    }
}

module.exports = SkipReporter;
