export * from "./ApiError.js"
export * from "./Auth.js"
export * from "./Endpoint.js"
export * from "./Projects.js"
