export * as Client from "./Client.js"
export * from "./FeedClient.js"
