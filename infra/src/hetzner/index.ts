export * as CreateServer from "./CreateServer.js"
export * as Client from "./HetznerClient.js"
export * as Errors from "./HetznerError.js"
export * as Schemas from "./HetznerSchemas.js"
