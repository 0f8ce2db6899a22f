export * from "./SessionState.js"
export * from "./States.js"
