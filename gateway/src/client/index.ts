export * as Client from "./Client.js"
