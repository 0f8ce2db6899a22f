export * from "./FakeGitHub.js"
export * from "./GatewayHarness.js"
export * from "./TestStack.js"
