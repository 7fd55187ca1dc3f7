/**
 * Engine tests: the real Pulumi engine on the lab (test/engine/run.sh, `npm run test:engine`),
 * which builds the toolchain and brings the lab up first and down at the end. One file at a time.
 */
const path = require("path");

module.exports = {
  rootDir: path.resolve(__dirname, "..", ".."),
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test/engine"],
  testMatch: ["**/*.engine.test.ts"],
  transform: { "^.+\\.ts$": "ts-jest" },
  maxWorkers: 1,
  testTimeout: 30 * 60 * 1000,
  verbose: true,
  reporters: ["default", "<rootDir>/test/support/skipReporter.js"],
};
