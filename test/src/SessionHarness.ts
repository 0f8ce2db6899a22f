import { SqlClient } from "@effect/sql"
import { Actor, ActorRuntime, Actors, ReportIngress, SessionActor } from "@sam/actors"
import {
  Consume,
  Domain,
  type Envelope,
  encode,
  Kv,
  makeId,
  Nats,
  type NodeId,
  Publish,
  Subjects,
  Topology
} from "@sam/bus"
import { Migrations } from "@sam/sql"
import { Context, type Duration, Effect, Exit, Layer, type Redacted, Scope } from "effect"
import { startRuntime } from "./ActorsInProcess.js"
import { freshDatabase, natsAsNode, sqlLayer, unique } from "./Env.js"

const { NodeProtocol, SessionSnapshot } = Domain

/** A migrated database with a user and a project to hang sessions on. */
export const sessionDatabase = async () => {
  const url = await freshDatabase()
  await Effect.runPromise(Migrations.migrate().pipe(Effect.provide(sqlLayer(url))))
  return url
}

/**
 * A project with a node and a workspace placed on it, as the task path would have left them: each
 * node belongs to the project's owner.
 */
export const placement = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const userId = makeId("user")
  const projectId = makeId("proj")
  yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'tester')`
  yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'p', 'file:///tmp/r')`
  const place = () =>
    Effect.gen(function* () {
      const nodeId = makeId("node")
      const workspaceId = makeId("ws")
      yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'local', 'running', ${userId})`
      yield* sql`INSERT INTO workspaces (id, project_id, node_id, status) VALUES (${workspaceId}, ${projectId}, ${nodeId}, 'running')`
      return { nodeId, workspaceId }
    })
  const task = () =>
    Effect.gen(function* () {
      const taskId = makeId("task")
      yield* sql`INSERT INTO tasks (id, project_id, created_by, prompt) VALUES (${taskId}, ${projectId}, ${userId}, 'p')`
      return taskId
    })
  return { userId, projectId, place, task }
})

export interface ControlOptions {
  readonly healEvery?: string
  readonly staleAfter?: string
  readonly runtime?: ActorRuntime.RuntimeOptions
}

/**
 * The session actor (under a kind name of its own) in an in-process runtime, and the report ingress
 * routing to it through a consumer of its own that starts at the end of the SAM_AGENT stream (files that
 * use it take a nats-server of their own: `useOwnNats`).
 * Alive for the current scope.
 */
export const startControl = (url: Redacted.Redacted<string>, options: ControlOptions = {}) =>
  Effect.gen(function* () {
    const task = { name: unique("task"), shards: 2 }
    const session = yield* SessionActor.make({
      name: unique("sess"),
      shards: 2,
      task,
      ...(options.healEvery === undefined ? {} : { healEvery: options.healEvery as never }),
      ...(options.staleAfter === undefined ? {} : { staleAfter: options.staleAfter as never })
    })
    const runtime = yield* startRuntime(url, [session], {
      instanceId: unique("inst"),
      leaseTtl: "3 seconds",
      retryBase: "20 millis",
      pollEvery: "50 millis",
      ...options.runtime
    })
    yield* waitFor(
      "session shards leased",
      Effect.sync(() => runtime.shards().length === 2 || undefined)
    )
    const shared = unique("ingress")
    /**
     * One more ingress instance, alive until `stop`: on the same durable consumer as the first, or on
     * one of its own (`durable`), with the production ack wait when a test needs redelivery to show.
     */
    const ingress = (
      instanceId: string,
      consumer: { readonly durable?: string; readonly ackWait?: Duration.DurationInput } = {}
    ) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        yield* ReportIngress.run({
          routes: ReportIngress.sessionRoutes(session),
          sessionRuns: session,
          durable: consumer.durable ?? shared,
          deliver: "new",
          instanceId,
          leaseTtl: "1500 millis",
          ackWait: consumer.ackWait ?? "2 seconds"
        }).pipe(Scope.extend(scope))
        return { stop: Scope.close(scope, Exit.void) }
      })
    const first = yield* ingress(unique("ingress-a"))
    yield* Effect.addFinalizer(() => first.stop)
    return { session, task, runtime, ingress, stopFirstIngress: first.stop }
  })

const waitFor = <A, E, R>(what: string, check: Effect.Effect<A | undefined, E, R>, timeoutMs = 15_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("50 millis")
    }
  })

/** Every message on `filter` from now on, as a core subscriber sees it (the streams' subjects are plain subjects too). */
export const collect = (filter: string) =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const seen: Array<{ subject: string; envelope: Envelope }> = []
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nc.subscribe(filter, {
          callback: (_, msg) => void seen.push({ subject: msg.subject, envelope: msg.json<Envelope>() })
        })
      ),
      (sub) => Effect.sync(() => sub.unsubscribe())
    )
    yield* Effect.promise(() => nc.flush())
    return seen
  })

/**
 * A fake node: its own minted credentials (it can publish only as itself), the durable consumer of
 * its commands, and helpers to report as the vm-agent does.
 */
export const fakeNode = (nodeId: NodeId) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(natsAsNode(nodeId, `fake-${nodeId}`))
    const nats = Context.get(context, Nats)
    yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeId))
    const commands: Array<Domain.NodeProtocol.NodeCommand> = []
    yield* Consume.run(
      Consume.consume<typeof NodeProtocol.nodeCommands.defs, Domain.NodeProtocol.NodeCommand>(
        Topology.Streams.SAM_NODE.name,
        Subjects.nodeConsumerName(nodeId),
        NodeProtocol.nodeCommands
      ),
      (delivery) => Effect.sync(() => commands.push(delivery.envelope)).pipe(Effect.as(Consume.Outcome.Ack()))
    ).pipe(Effect.provideService(Nats, nats), Effect.forkScoped)
    const asNode = <A, E>(effect: Effect.Effect<A, E, Nats>) => effect.pipe(Effect.provideService(Nats, nats))
    /** publish a report on this node's subject (the broker allows no other) */
    const publish = (envelope: Envelope, entityId?: string, options: { readonly asNode?: NodeId } = {}) =>
      asNode(Publish.publish(Subjects.agentReport(options.asNode ?? nodeId, envelope.type, entityId), envelope))
    /** publish the same bytes again without a message id: the stream stores it twice */
    const publishRaw = (envelope: Envelope, entityId?: string) =>
      asNode(
        Effect.promise(() =>
          nats.js.publish(Subjects.agentReport(nodeId, envelope.type, entityId), encode(envelope))
        ).pipe(Effect.asVoid)
      )
    /** publish arbitrary bytes on one of this node's report subjects */
    const publishBytes = (type: string, data: string | Uint8Array) =>
      Effect.promise(() => nats.js.publish(Subjects.agentReport(nodeId, type), data)).pipe(Effect.asVoid)
    let nodeSeq = 0
    const event = (sessionId: string, promptEpoch: number, event: Domain.SessionEventBody) =>
      NodeProtocol.SessionEvent.make({ sessionId: sessionId as never, nodeSeq: ++nodeSeq, promptEpoch, event })
    const activity = (
      sessionId: string,
      body: Omit<Parameters<typeof NodeProtocol.SessionActivity.make>[0], "sessionId" | "observedAt"> & {
        readonly observedAt?: string
      }
    ) =>
      NodeProtocol.SessionActivity.make({
        observedAt: new Date().toISOString(),
        ...body,
        sessionId: sessionId as never
      })
    const heartbeat = (promptingSessions: ReadonlyArray<string>) =>
      asNode(
        Publish.emit(
          Subjects.heartbeat(nodeId),
          NodeProtocol.Heartbeat.make({
            nodeId,
            load1: 0.1,
            memoryPercent: 10,
            diskPercent: 10,
            activeWorkspaces: 1,
            promptingSessions: promptingSessions as never
          })
        )
      )
    return { nodeId, commands, publish, publishRaw, publishBytes, event, activity, heartbeat }
  })

/** The session's snapshot in KV, or undefined. */
export const snapshotOf = (sessionId: string) =>
  Effect.gen(function* () {
    const store = yield* Kv.open(Topology.Buckets.sessionState.name, SessionSnapshot)
    const entry = yield* store.get(sessionId)
    return entry._tag === "Some" ? entry.value.value : undefined
  })

export const transcriptOf = (sessionId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{
      seq: string
      type: string
      payload: { type: string; text?: string }
      nodeSeq: string
      reportId: string | null
    }>`
      SELECT seq, type, payload, node_seq, report_id FROM session_events WHERE session_id = ${sessionId} ORDER BY seq`
    return rows.map((row) => ({ ...row, seq: Number(row.seq), nodeSeq: Number(row.nodeSeq) }))
  })

export const sessionRow = (sessionId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ status: string; promptEpoch: number; lastSeq: string; errorReason: string | null }>`
      SELECT status, prompt_epoch, last_seq, error_reason FROM sessions WHERE id = ${sessionId}`
    return rows[0]
  })

export { Actor, ActorRuntime }

export interface OpenInput {
  readonly projectId: string
  readonly nodeId: string
  readonly workspaceId: string
  readonly taskId?: string
  readonly mode?: "task" | "conversation"
  /** an id of the caller's; a fresh one when absent */
  readonly sessionId?: string
}

/** Open a demo-agent session on a placed workspace; returns its id and the actor's answer. */
export const openSession = (session: Pick<Actor.AnyActorKind, "name" | "shards">, input: OpenInput) =>
  Effect.gen(function* () {
    const sessionId = input.sessionId ?? makeId("sess")
    const reply = yield* Actors.ask(
      session,
      sessionId,
      Domain.ControlProtocol.SessionOpen.make({
        sessionId: sessionId as never,
        projectId: input.projectId as never,
        workspaceId: input.workspaceId as never,
        nodeId: input.nodeId as never,
        ...(input.taskId === undefined ? {} : { taskId: input.taskId as never }),
        agent: "demo",
        mode: input.mode ?? "conversation",
        prompt: "hello"
      })
    )
    return { sessionId, reply }
  })
