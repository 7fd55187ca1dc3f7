/**
 * Tests against real Kubernetes artifacts: the argo-cd chart rendered by a real helm, and (with
 * the lab's API server) server-side apply. Run with `npm run test:k8s`, which builds helm from
 * its Go module first and sets ZT_HELM.
 */
const path = require("path");

module.exports = {
  rootDir: path.resolve(__dirname, "..", ".."),
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test/k8s"],
  testMatch: ["**/*.k8s.test.ts"],
  transform: { "^.+\\.ts$": "ts-jest" },
  testTimeout: 10 * 60 * 1000,
  verbose: true,
  globalSetup: "<rootDir>/test/support/globalSetup.js",
  reporters: ["default", "<rootDir>/test/support/skipReporter.js"],
};
