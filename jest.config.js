/** Unit and component tests (mocks). The lab tests have their own config: test/lab/jest.config.js. */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "<rootDir>/test/lab/", "<rootDir>/test/k8s/"],
  transform: { "^.+\\.ts$": "ts-jest" },
  testTimeout: 30000,
  // The Debian tools the tests run for real: installed here (as root on Debian) or the run stops.
  globalSetup: "<rootDir>/test/support/globalSetup.js",
  // Lists every skipped test with its reason; ZT_FAIL_ON_SKIP=1 (CI) fails the run on any.
  reporters: ["default", "<rootDir>/test/support/skipReporter.js"],
};
