export * from "./ApiError.js"
export * from "./Auth.js"
export * from "./Projects.js"
