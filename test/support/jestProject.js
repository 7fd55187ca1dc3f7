/**
 * The jest config of a suite that its own run script starts (test:engine, test:gitops): the
 * suite's folder and file pattern, one file at a time, the skip reporter, and a per-test bound.
 */
const path = require("path");

module.exports = function jestProject({ folder, match, testTimeoutMin }) {
  const rootDir = path.resolve(__dirname, "..", "..");
  return {
    rootDir,
    preset: "ts-jest",
    testEnvironment: "node",
    roots: [`<rootDir>/test/${folder}`],
    testMatch: [match],
    transform: { "^.+\\.ts$": "ts-jest" },
    maxWorkers: 1,
    testTimeout: testTimeoutMin * 60 * 1000,
    verbose: true,
    reporters: ["default", "<rootDir>/test/support/skipReporter.js"],
  };
};
