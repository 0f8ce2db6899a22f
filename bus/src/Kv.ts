import type { KV } from "@nats-io/kv"
import { Effect, Option } from "effect"
import type { z } from "zod"
import { KvConflict, KvCorrupt, NatsError } from "./Errors.js"
import { Nats } from "./Nats.js"

export interface KvEntry<A> {
  readonly value: A
  /** the stream sequence of this value; pass it to `update` to compare-and-set */
  readonly revision: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** JetStream's "wrong last sequence" (10071): the compare-and-set lost. */
const isWrongLastSequence = (error: unknown) =>
  error instanceof Error &&
  ("code" in error && (error as { code: unknown }).code === 10071
    ? true
    : /wrong last sequence|key exists/i.test(error.message))

export interface KvStore<A> {
  readonly bucket: string
  /** the current value, or none when missing or deleted; `KvCorrupt` when it no longer parses */
  readonly get: (key: string) => Effect.Effect<Option.Option<KvEntry<A>>, NatsError | KvCorrupt>
  /** unconditional write; returns the new revision */
  readonly put: (key: string, value: A) => Effect.Effect<number, NatsError>
  /** write only if the key does not exist (or was deleted); `KvConflict` otherwise */
  readonly create: (key: string, value: A) => Effect.Effect<number, NatsError | KvConflict>
  /** write only if the key is still at `revision`; `KvConflict` when someone wrote since */
  readonly update: (key: string, value: A, revision: number) => Effect.Effect<number, NatsError | KvConflict>
  readonly delete: (key: string) => Effect.Effect<void, NatsError>
  /**
   * The keys under `filter` (a subject filter, such as `lease.>`), each once: the listing is a consumer of the
   * bucket's latest entries that also delivers what is put while it runs, so a key renewed meanwhile comes again.
   */
  readonly keys: (filter: string) => Effect.Effect<ReadonlyArray<string>, NatsError>
}

/**
 * A typed view over a KV bucket: values are JSON checked against `schema` on every read and write.
 * The bucket must already be provisioned (see Provision.ts).
 */
export const open = Effect.fn("Bus.kvOpen")(function* <S extends z.ZodType>(bucket: string, schema: S) {
  const { kvm } = yield* Nats
  const kv: KV = yield* Effect.tryPromise({
    try: () => kvm.open(bucket),
    catch: (cause) => new NatsError({ reason: "Kv", message: `open bucket ${bucket}: ${cause}`, cause })
  })
  type A = z.output<S>
  const fail = (op: string, key: string) => (cause: unknown) =>
    new NatsError({ reason: "Kv", message: `${op} ${bucket}/${key}: ${cause}`, cause })
  const serialize = (value: A) => encoder.encode(JSON.stringify(schema.parse(value)))
  const conflictOr = (op: string, key: string, revision: number) => (cause: unknown) =>
    isWrongLastSequence(cause) ? new KvConflict({ bucket, key, expectedRevision: revision }) : fail(op, key)(cause)

  const store: KvStore<A> = {
    bucket,
    get: (key) =>
      Effect.tryPromise({ try: () => kv.get(key), catch: fail("get", key) }).pipe(
        Effect.flatMap((entry) => {
          if (entry === null || entry.operation !== "PUT") return Effect.succeed(Option.none())
          let json: unknown
          try {
            json = JSON.parse(decoder.decode(entry.value))
          } catch {
            return Effect.fail(new KvCorrupt({ bucket, key, message: "value is not JSON" }))
          }
          const parsed = schema.safeParse(json)
          return parsed.success
            ? Effect.succeed(Option.some({ value: parsed.data, revision: entry.revision }))
            : Effect.fail(new KvCorrupt({ bucket, key, message: parsed.error.message }))
        })
      ),
    put: (key, value) => Effect.tryPromise({ try: () => kv.put(key, serialize(value)), catch: fail("put", key) }),
    create: (key, value) =>
      Effect.tryPromise({ try: () => kv.create(key, serialize(value)), catch: conflictOr("create", key, 0) }),
    update: (key, value, revision) =>
      Effect.tryPromise({
        try: () => kv.update(key, serialize(value), revision),
        catch: conflictOr("update", key, revision)
      }),
    delete: (key) => Effect.tryPromise({ try: () => kv.delete(key), catch: fail("delete", key) }),
    keys: (filter) =>
      Effect.tryPromise({
        try: async () => {
          const out = new Set<string>()
          for await (const key of await kv.keys(filter)) out.add(key)
          return [...out]
        },
        catch: fail("list", filter)
      })
  }
  return store
})
