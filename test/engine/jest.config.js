/**
 * Engine tests: the real Pulumi engine on the lab (test/engine/run.sh, `npm run test:engine`),
 * which builds the toolchain and brings the lab up first and down at the end.
 */
module.exports = require("../support/jestProject")({ folder: "engine", match: "**/*.engine.test.ts", testTimeoutMin: 30 });
