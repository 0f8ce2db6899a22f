import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { expect } from "vitest"
import { freshDatabase, sqlLayer } from "../../src/Env.js"

/**
 * The ledger's client sends a query text it has sent before as a named statement, which Postgres keeps
 * parsed on that connection (ADR 0033). Each case runs in one transaction, so every statement of it uses
 * one connection, whose prepared statements `pg_prepared_statements` lists.
 */

const Database = Layer.unwrapEffect(Effect.promise(freshDatabase).pipe(Effect.map(sqlLayer)))

const prepared = (sql: SqlClient.SqlClient) =>
  sql<{ statement: string }>`SELECT statement FROM pg_prepared_statements`.pipe(
    Effect.map((rows) => rows.map((row) => row.statement))
  )

layer(Database, { excludeTestServices: true, timeout: 60_000 })("prepared statements", (it) => {
  it.effect("a query text sent a second time is prepared on its connection, and each call answers for its values", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* Effect.gen(function* () {
        const text = "SELECT $1::int * 2 AS doubled"
        const first = yield* sql.unsafe<{ doubled: number }>(text, [1])
        expect(yield* prepared(sql)).not.toContain(text)
        const answers = [first[0]?.doubled]
        for (const value of [2, 3, 4]) answers.push((yield* sql.unsafe<{ doubled: number }>(text, [value]))[0]?.doubled)
        expect(answers).toEqual([2, 4, 6, 8])
        expect((yield* prepared(sql)).filter((s) => s === text)).toHaveLength(1)
        // without parameters a query is sent as it is (several statements in one text stay possible)
        yield* sql.unsafe("SELECT 1; SELECT 2")
        yield* sql.unsafe("SELECT 1; SELECT 2")
        expect(yield* prepared(sql)).not.toContain("SELECT 1; SELECT 2")
        // nor is a text longer than 16 KiB (an insert of many rows): it is sent unnamed every time
        const long = `SELECT $1::int AS n /* ${"x".repeat(16_400)} */`
        for (let i = 0; i < 3; i++) expect(yield* sql.unsafe<{ n: number }>(long, [i])).toEqual([{ n: i }])
        expect(yield* prepared(sql)).not.toContain(long)
      }).pipe(sql.withTransaction)
    })
  )

  it.effect("a prepared statement that fails for its values leaves it usable with others", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const text = "SELECT $1::text::int AS parsed"
      yield* sql.unsafe(text, ["1"])
      yield* sql.unsafe(text, ["2"])
      const failed = yield* sql.unsafe(text, ["not a number"]).pipe(Effect.flip)
      expect(String((failed.cause as Error).message)).toContain("invalid input syntax for type integer")
      expect(yield* sql.unsafe<{ parsed: number }>(text, ["42"])).toEqual([{ parsed: 42 }])
    })
  )

  it.effect("at most 400 query texts are prepared, however many the process sends", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* Effect.gen(function* () {
        for (let i = 0; i < 450; i++) {
          const text = `SELECT $1::int + ${i} AS n`
          yield* sql.unsafe(text, [i])
          expect(yield* sql.unsafe<{ n: number }>(text, [i])).toEqual([{ n: 2 * i }])
        }
        const statements = yield* prepared(sql)
        expect(statements.length).toBeGreaterThan(300)
        expect(statements.length).toBeLessThanOrEqual(400)
      }).pipe(sql.withTransaction)
    })
  )
})
