/**
 * Jest global setup for `npm test`: the tests run etcd, nft, fio, shellcheck and other Debian
 * tools for real, so every one of them must be there. As root on Debian, what is missing is
 * installed; otherwise the run stops at once with the exact apt-get line
 * (test/support/host-tools.sh holds the list).
 */
const { spawnSync } = require("child_process");
const path = require("path");

module.exports = async function globalSetup() {
    const script = path.join(__dirname, "host-tools.sh");
    const r = spawnSync("bash", [script, "ensure"], { stdio: ["ignore", "inherit", "inherit"], timeout: 1800 * 1000 });
    if (r.status !== 0) {
        throw new Error(`the tests' Debian tools are not all installed (see the apt-get line above; ${script})`);
    }
};
