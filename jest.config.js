/** Unit and component tests (mocks). Lab, API-server and engine tests have their own configs (test/lab, test/k8s, test/engine). */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "<rootDir>/test/lab/", "<rootDir>/test/k8s/", "<rootDir>/test/engine/", "<rootDir>/test/gitops/"],
  transform: { "^.+\\.ts$": "ts-jest" },
  testTimeout: 30000,
  // The Debian tools the tests run for real: installed here (as root on Debian) or the run stops.
  globalSetup: "<rootDir>/test/support/globalSetup.js",
  // Lists every skipped test with its reason; ZT_FAIL_ON_SKIP=1 (CI) fails the run on any.
  reporters: ["default", "<rootDir>/test/support/skipReporter.js"],
};
