export * as Migrations from "./Migrations.js"
export * as Sql from "./Sql.js"
