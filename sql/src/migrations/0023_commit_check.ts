import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The check that ends a group commit made of one statement (ADR 0056): the statement claims its commands' inbox
 * rows, writes their saves, outbox rows and timers, and reads its shard's fence in its WITH, then calls this with
 * what it found. Raising fails the whole statement, so nothing of it commits:
 * - `SAM01` when the fence is no longer at the committer's epoch (a newer owner took the shard); the fence's
 *   epoch, if any, is the error's detail;
 * - `SAM02` when fewer inbox rows were claimed than the statement's ids: one of its messages was a repeat, and the
 *   group must run again in a transaction that claims first.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE FUNCTION sam_commit_check(claimed bigint, expected bigint, epoch bigint, ours bigint) RETURNS boolean
    LANGUAGE plpgsql AS $$
    BEGIN
      IF epoch IS DISTINCT FROM ours THEN
        RAISE EXCEPTION 'the shard''s fence is at epoch %, not %', epoch, ours
          USING ERRCODE = 'SAM01', DETAIL = coalesce(epoch::text, '');
      END IF;
      IF claimed <> expected THEN
        RAISE EXCEPTION '% of % message ids were in the inbox already', expected - claimed, expected
          USING ERRCODE = 'SAM02';
      END IF;
      RETURN true;
    END $$`
})
