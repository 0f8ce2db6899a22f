export * from "./TestStack.js"
