/**
 * The GitOps loop tests (test/gitops/run.sh, `npm run test:gitops`): Argo CD built from its Go
 * module, a real Kubernetes API server, the lab's Git server.
 */
module.exports = require("../support/jestProject")({ folder: "gitops", match: "**/*.gitops.test.ts", testTimeoutMin: 10 });
