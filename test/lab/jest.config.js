/**
 * Lab tests: real nodes over SSH (test/lab/lab.sh). Run with `npm run test:lab`, which brings
 * the lab up first and down at the end. One test file at a time, the lab's own tests first.
 */
const path = require("path");

module.exports = {
  rootDir: path.resolve(__dirname, "..", ".."),
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test/lab"],
  testMatch: ["**/*.lab.test.ts"],
  // Transpile only (type checking is `tsc --noEmit`), as ts-jest asks for it.
  transform: { "^.+\\.ts$": "ts-jest" },
  testSequencer: path.join(__dirname, "sequencer.js"),
  maxWorkers: 1,
  testTimeout: 20 * 60 * 1000,
  slowTestThreshold: 60,
  verbose: true,
  // Lists every skipped test with its reason; ZT_FAIL_ON_SKIP=1 (CI) fails the run on any.
  reporters: ["default", "<rootDir>/test/support/skipReporter.js"],
};
