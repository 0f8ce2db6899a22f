export * from "./GatewayHarness.js"
export * from "./TestStack.js"
export * from "./FakeGitHub.js"
