/** Unit and component tests (mocks). The lab tests have their own config: test/lab/jest.config.js. */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "<rootDir>/test/lab/"],
  transform: { "^.+\\.ts$": "ts-jest" },
  testTimeout: 30000,
};
