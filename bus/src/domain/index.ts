export * as ControlProtocol from "./ControlProtocol.js"
export * as NodeProtocol from "./NodeProtocol.js"
export * from "./SessionState.js"
export * from "./States.js"
