import type { JetStreamManager, StreamConfig, StreamInfo } from "@nats-io/jetstream"
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { Effect } from "effect"
import { NatsError, TopologyDrift } from "./Errors.js"
import { Nats } from "./Nats.js"
import type { BucketSpec, StreamSpec } from "./Topology.js"
import { Buckets, bucketStreamFields, bucketStreamName, Streams } from "./Topology.js"

export type ProvisionAction = "created" | "updated" | "unchanged"
export interface ProvisionResult {
  readonly name: string
  readonly kind: "stream" | "bucket"
  readonly action: ProvisionAction
  readonly changes: ReadonlyArray<string>
}

/** Fields the server cannot change on an existing stream: a difference here is drift we report. */
const IMMUTABLE = new Set(["retention", "storage"])

const same = (a: unknown, b: unknown) =>
  Array.isArray(a) && Array.isArray(b) ? [...a].sort().join("\n") === [...b].sort().join("\n") : a === b

/** The declared fields whose server value differs, as `field: server → declared`. */
export const diff = (declared: Record<string, unknown>, actual: Partial<StreamConfig>) =>
  Object.entries(declared)
    .filter(([field, value]) => !same((actual as Record<string, unknown>)[field] ?? defaults[field], value))
    .map(([field, value]) => ({
      field,
      text: `${field}: ${JSON.stringify((actual as Record<string, unknown>)[field])} → ${JSON.stringify(value)}`
    }))

const defaults: Record<string, unknown> = { description: "", max_age: 0 }

const jsError = (what: string) => (cause: unknown) =>
  new NatsError({ reason: "JetStream", message: `${what}: ${cause instanceof Error ? cause.message : cause}`, cause })

const info = (jsm: JetStreamManager, name: string) =>
  Effect.tryPromise({
    try: () =>
      jsm.streams.info(name).catch((error: unknown) => {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return undefined
        throw error
      }),
    catch: jsError(`stream info ${name}`)
  })

const reconcile = (
  jsm: JetStreamManager,
  kind: "stream" | "bucket",
  name: string,
  streamName: string,
  declared: Record<string, unknown>,
  existing: StreamInfo
) =>
  Effect.gen(function* () {
    const changes = diff(declared, existing.config)
    if (changes.length === 0) return { name, kind, action: "unchanged", changes: [] } satisfies ProvisionResult
    const immutable = changes.filter((change) => IMMUTABLE.has(change.field))
    if (immutable.length > 0) {
      return yield* new TopologyDrift({
        name,
        differences: changes.map((change) => change.text),
        message: `${kind} ${name} differs from the declared topology in fields the server cannot change (${immutable
          .map((change) => change.text)
          .join(
            "; "
          )}); back up and delete it (nats stream rm ${streamName}) or change the declaration, then provision again`
      })
    }
    yield* Effect.tryPromise({
      try: () => jsm.streams.update(streamName, { ...existing.config, ...declared } as StreamConfig),
      catch: jsError(`update ${kind} ${name}`)
    })
    return { name, kind, action: "updated", changes: changes.map((change) => change.text) } satisfies ProvisionResult
  })

export const provisionStream = Effect.fn("Bus.provisionStream")(function* (spec: StreamSpec) {
  const { jsm } = yield* Nats
  const declared = { ...spec, subjects: [...spec.subjects] }
  const existing = yield* info(jsm, spec.name)
  if (existing === undefined) {
    yield* Effect.tryPromise({
      try: () => jsm.streams.add({ ...declared, num_replicas: 1 }),
      catch: jsError(`create stream ${spec.name}`)
    })
    return { name: spec.name, kind: "stream", action: "created", changes: [] } satisfies ProvisionResult
  }
  return yield* reconcile(jsm, "stream", spec.name, spec.name, declared, existing)
})

export const provisionBucket = Effect.fn("Bus.provisionBucket")(function* (spec: BucketSpec) {
  const { jsm, kvm } = yield* Nats
  const streamName = bucketStreamName(spec.name)
  const existing = yield* info(jsm, streamName)
  if (existing === undefined) {
    yield* Effect.tryPromise({
      try: () =>
        kvm.create(spec.name, {
          history: spec.history,
          ttl: spec.ttlMs,
          storage: spec.storage,
          description: spec.description
        }),
      catch: jsError(`create bucket ${spec.name}`)
    })
    return { name: spec.name, kind: "bucket", action: "created", changes: [] } satisfies ProvisionResult
  }
  return yield* reconcile(jsm, "bucket", spec.name, streamName, bucketStreamFields(spec), existing)
})

/**
 * Make the server's streams and buckets match the declared topology. Idempotent: a second run
 * reports every entry `unchanged`. A mutable difference is updated and listed in `changes`; an
 * immutable one (retention, storage) fails with `TopologyDrift` naming the fields and what to do.
 */
export const provision = Effect.fn("Bus.provision")(function* () {
  const streams = yield* Effect.forEach(Object.values(Streams), provisionStream)
  const buckets = yield* Effect.forEach(Object.values(Buckets), provisionBucket)
  return [...streams, ...buckets]
})
