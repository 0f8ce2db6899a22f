import { layer } from "@effect/vitest"
import { PermissionViolationError } from "@nats-io/nats-core"
import { Consume, defineMessage, makeId, Publish, registry, Subjects } from "@sam/bus"
import { Effect, Stream } from "effect"
import { expect } from "vitest"
import { z } from "zod"
import { Nats, natsAdmin, natsAsNode, nextPermissionError } from "../../src/Env.js"

const Hello = defineMessage("test.hello", z.object({ text: z.string() }), { durable: true })
const messages = registry(Hello)

const nodeA = makeId("node")
const nodeB = makeId("node")

/** Node A's connection (a user of its own account), next to an admin connection that sets up its durable consumer. */
const NodeA = natsAsNode(nodeA)

layer(natsAdmin("admin"), { excludeTestServices: true, timeout: 30_000 })("a node's credentials", (it) => {
  it.effect("consume its own commands and publish its own reports", () =>
    Effect.gen(function* () {
      yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeA))
      const sent = Hello.make({ text: "for A" })
      yield* Publish.publish(Subjects.nodeCommand(nodeA, "workspace.create"), sent)
      yield* Publish.publish(Subjects.nodeCommand(nodeB, "workspace.create"), Hello.make({ text: "for B" }))

      const received = yield* Effect.gen(function* () {
        const [delivery] = yield* Consume.consume("SAM_NODE", Subjects.nodeConsumerName(nodeA), messages).pipe(
          Stream.take(1),
          Stream.runCollect,
          Effect.map((chunk) => [...chunk])
        )
        yield* Consume.settle(delivery!, Consume.Outcome.Ack())
        const report = yield* Publish.publish(Subjects.agentReport(nodeA, "ready"), Hello.make({ text: "ready" }))
        return { delivery: delivery!, report }
      }).pipe(Effect.provide(NodeA))

      expect(received.delivery.envelope.id).toBe(sent.id)
      expect(received.delivery.envelope.body).toEqual({ text: "for A" })
      expect(received.report.stream).toBe("SAM_AGENT")
    })
  )

  it.scoped("the server refuses a publish as another node, and the client sees a permissions error", () =>
    Effect.gen(function* () {
      const { nc } = yield* Nats
      const status = nc.status()
      nc.publish(Subjects.agentReport(nodeB, "x"), "forged")
      const error = yield* nextPermissionError(status)
      expect(error.operation).toBe("publish")
      expect(error.subject).toBe(Subjects.agentReport(nodeB, "x"))
      // A JetStream publish to the forged subject fails rather than being stored.
      const forged = yield* Publish.publish(Subjects.agentReport(nodeB, "x"), Hello.make({ text: "forged" })).pipe(
        Effect.flip
      )
      expect(forged.reason).toBe("Publish")
      expect(nc.isClosed()).toBe(false)
    }).pipe(Effect.provide(NodeA))
  )

  it.scoped("the server refuses a subscription to another node's commands", () =>
    Effect.gen(function* () {
      const { nc } = yield* Nats
      const status = nc.status()
      const sub = nc.subscribe(Subjects.nodeAll(nodeB))
      const error = yield* nextPermissionError(status)
      expect(error.operation).toBe("subscription")
      expect(error.subject).toBe(Subjects.nodeAll(nodeB))
      const closed = yield* Effect.promise(() => sub.closed)
      expect(closed).toBeInstanceOf(PermissionViolationError)
    }).pipe(Effect.provide(NodeA))
  )

  it.scoped("a node cannot read another node's durable consumer", () =>
    Effect.gen(function* () {
      yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeB))
      const attempt = yield* Consume.consume("SAM_NODE", Subjects.nodeConsumerName(nodeB), messages).pipe(
        Stream.take(1),
        Stream.runDrain,
        Effect.timeout("3 seconds"),
        Effect.provide(NodeA),
        Effect.either
      )
      expect(attempt._tag).toBe("Left")
    })
  )
})
