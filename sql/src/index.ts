export * as Migrations from "./Migrations.js"
export * as Sql from "./Sql.js"
export * as StoredJson from "./StoredJson.js"
export * as StoredText from "./StoredText.js"
