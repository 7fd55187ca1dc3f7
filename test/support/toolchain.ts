import * as path from "path";

/**
 * The folder of the toolchain's binaries (ZT_TOOLCHAIN_BIN), which the run scripts set after
 * building what they need (`npm run test:k8s`, `test:lab`, `test:engine`). Throws naming the
 * command to run when it is not set.
 */
export function toolchainDir(command: string): string {
    const dir = process.env.ZT_TOOLCHAIN_BIN;
    if (dir === undefined || dir === "") {
        throw new Error(`ZT_TOOLCHAIN_BIN is not set: run these tests with \`${command}\`, which builds the toolchain binaries they use`);
    }
    return dir;
}

/** One binary of the toolchain (see toolchainDir). */
export function toolchainBin(name: string, command: string): string {
    return path.join(toolchainDir(command), name);
}
