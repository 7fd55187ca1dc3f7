/**
 * What the host gives the tests. Debian tools are always there (jest's global setup installs
 * them or stops the run, test/support/host-tools.sh); the only reason a test may be skipped is
 * that it needs root (namespaces, users, systemd units), and then its title says so.
 */

/** Whether the tests run as root. */
export const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;

const REASON = "skipped: needs root";

/** `describe` for tests that need root; elsewhere a skipped block whose title names why. */
export function describeAsRoot(name: string, fn: () => void): void {
    if (IS_ROOT) {
        describe(name, fn);
    } else {
        describe.skip(`${name} [${REASON}]`, fn);
    }
}

/** `it` for a test that needs root; elsewhere a skipped test whose title names why. */
export function itAsRoot(name: string, fn: () => unknown, timeout?: number): void {
    if (IS_ROOT) {
        it(name, fn as () => Promise<unknown>, timeout);
    } else {
        it.skip(`${name} [${REASON}]`, fn as () => Promise<unknown>, timeout);
    }
}
