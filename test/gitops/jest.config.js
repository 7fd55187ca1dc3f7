/**
 * The GitOps loop tests (test/gitops/run.sh, `npm run test:gitops`): Argo CD built from its Go
 * module, a real Kubernetes API server, the lab's Git server. One file at a time.
 */
const path = require("path");

module.exports = {
  rootDir: path.resolve(__dirname, "..", ".."),
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test/gitops"],
  testMatch: ["**/*.gitops.test.ts"],
  transform: { "^.+\\.ts$": "ts-jest" },
  maxWorkers: 1,
  testTimeout: 10 * 60 * 1000,
  verbose: true,
  reporters: ["default", "<rootDir>/test/support/skipReporter.js"],
};
