export * from "./hostFirewall";
export * from "./rules";
