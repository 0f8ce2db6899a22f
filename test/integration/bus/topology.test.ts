import { layer } from "@effect/vitest"
import { DiscardPolicy, StorageType } from "@nats-io/jetstream"
import { Credentials, Nats, natsLayer, Provision, Topology } from "@sam/bus"
import { NatsServer } from "@sam/infra"
import { Effect, Layer } from "effect"
import { expect } from "vitest"
import { freePort, tempDir } from "../../src/TestStack.js"

/** A private server: these tests change the topology, which the shared stack must keep. */
const PrivateNats = Layer.unwrapScoped(
  Effect.gen(function* () {
    const dir = yield* Effect.promise(() => tempDir("sam-topology-"))
    const server = yield* NatsServer.start({
      dir: `${dir}/nats`,
      host: "127.0.0.1",
      port: yield* Effect.promise(freePort)
    })
    const admin = yield* Credentials.mintUser(server.auth.signing, "admin", Credentials.adminPermissions)
    return natsLayer({ servers: server.url, creds: admin.creds, name: "topology-test" })
  })
)

layer(PrivateNats, { excludeTestServices: true, timeout: 30_000 })("provisioning the topology", (it) => {
  it.effect("creates everything once, then changes nothing; mutable drift is updated and reported", () =>
    Effect.gen(function* () {
      const first = yield* Provision.provision()
      expect(first.map((r) => r.action)).toEqual(first.map(() => "created"))
      expect(first.map((r) => r.name)).toEqual([
        ...Object.values(Topology.Streams).map((s) => s.name),
        ...Object.values(Topology.Buckets).map((b) => b.name)
      ])
      const second = yield* Provision.provision()
      expect(second.every((r) => r.action === "unchanged")).toBe(true)

      const { jsm } = yield* Nats
      const evt = yield* Effect.promise(() => jsm.streams.info("SAM_EVT"))
      yield* Effect.promise(() => jsm.streams.update("SAM_EVT", { ...evt.config, max_age: 3_600_000_000_000 }))
      const health = yield* Effect.promise(() => jsm.streams.info("KV_sam_node_health"))
      yield* Effect.promise(() =>
        jsm.streams.update("KV_sam_node_health", { ...health.config, max_msgs_per_subject: 9 })
      )

      const third = yield* Provision.provision()
      const changed = third.filter((r) => r.action !== "unchanged")
      expect(changed.map((r) => [r.name, r.action])).toEqual([
        ["SAM_EVT", "updated"],
        ["sam_node_health", "updated"]
      ])
      expect(changed[0]?.changes[0]).toContain("max_age: 3600000000000 →")
      expect((yield* Effect.promise(() => jsm.streams.info("SAM_EVT"))).config.max_age).toBe(
        Topology.Streams.SAM_EVT.max_age
      )
      expect((yield* Provision.provision()).every((r) => r.action === "unchanged")).toBe(true)
    })
  )

  it.effect(
    "every stream holds a bounded size, dropping its oldest messages; an installation from before gets the limit",
    () =>
      Effect.gen(function* () {
        const { jsm } = yield* Nats
        const streams = Object.values(Topology.Streams)
        // the streams as provisioned before they had a size limit
        for (const spec of streams) {
          const { config } = yield* Effect.promise(() => jsm.streams.info(spec.name))
          yield* Effect.promise(() => jsm.streams.update(spec.name, { ...config, max_bytes: -1 }))
        }
        const updated = (yield* Provision.provision()).filter((r) => r.action === "updated")
        expect(updated.map((r) => r.name)).toEqual(streams.map((s) => s.name))
        for (const result of updated) expect(result.changes.join("; ")).toContain("max_bytes: -1 →")
        const limits = yield* Effect.forEach(streams, (spec) =>
          Effect.promise(() => jsm.streams.info(spec.name)).pipe(Effect.map((info) => info.config))
        )
        for (const config of limits) {
          expect(config.max_bytes).toBeGreaterThan(0)
          // a full stream drops its oldest (consumed) messages; refusing new ones would stop the control plane
          expect(config.discard).toBe(DiscardPolicy.Old)
        }
        // together well under nats-server's max_file_store (20 GB, NatsAuth.ts): the KV buckets need room too
        expect(limits.reduce((sum, config) => sum + config.max_bytes, 0)).toBeLessThanOrEqual(10 * 1024 ** 3)
        expect((yield* Provision.provision()).every((r) => r.action === "unchanged")).toBe(true)
      })
  )

  it.effect("a difference the server cannot change is reported as drift, never ignored", () =>
    Effect.gen(function* () {
      const { jsm } = yield* Nats
      yield* Effect.promise(() => jsm.streams.delete("SAM_NODE"))
      yield* Effect.promise(() =>
        jsm.streams.add({
          ...Topology.Streams.SAM_NODE,
          subjects: ["sam.node.*.cmd.>"],
          storage: StorageType.Memory,
          // within the server's memory store (256 MB)
          max_bytes: 1024 * 1024
        })
      )
      const drift = yield* Provision.provision().pipe(Effect.flip)
      expect(drift._tag).toBe("TopologyDrift")
      if (drift._tag !== "TopologyDrift") return
      expect(drift.name).toBe("SAM_NODE")
      expect(drift.message).toContain("storage")
      expect(drift.message).toContain("nats stream rm SAM_NODE")
    })
  )
})
