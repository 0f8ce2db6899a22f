export * from "./GatewayHarness.js"
export * from "./TestStack.js"
