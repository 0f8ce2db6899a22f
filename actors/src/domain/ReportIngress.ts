import type { SqlClient } from "@effect/sql"
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { nanos } from "@nats-io/nats-core"
import {
  Consume,
  Domain,
  type Envelope,
  type EnvelopeOf,
  Kv,
  Nats,
  NatsError,
  NodeId,
  Publish,
  registry,
  type StreamPublisher,
  Subjects,
  Topology,
  Trace
} from "@sam/bus"
import { Cause, Context, Duration, Effect, Layer, Option, Runtime, Schedule, Stream, Tracer } from "effect"
import type { z } from "zod"
import type { AnyActorKind } from "../ActorKind.js"
import { subjectOf } from "../ActorKind.js"
import * as IngressLease from "./IngressLease.js"
import * as Ownership from "./ReportOwnership.js"
import { type DroppedReport, insertDropped } from "./SessionLedger.js"

const { NodeProtocol, ControlProtocol, NodeHealthRecord } = Domain

/**
 * The report ingress: every vm-agent report (`sam.agent.<nodeId>.rpt.<type>[.<id>]`, stream
 * SAM_AGENT) is decoded, attributed to the node named by its SUBJECT (the broker lets a node publish
 * only under its own id), checked for forgery, and routed by type to the actor that owns what it
 * names. The routed command keeps the report's envelope id as its message id, so a report delivered
 * twice becomes one command (the SAM_CMD stream and the actor inbox both drop the repeat).
 * Heartbeats (core `sam.agent.<nodeId>.hb`) are written to KV `sam_node_health`.
 */

export type AgentReport = EnvelopeOf<(typeof NodeProtocol.agentReports.defs)[number]>
export type ReportType = AgentReport["type"]

/** Where a report came from, as the broker guarantees it. */
export interface ReportSource {
  readonly nodeId: NodeId
  readonly subject: string
  readonly streamSequence: number
  /** the `<id>` token after the type, when the subject has one */
  readonly subjectEntityId: string | undefined
}

export type ReportRequirements = Nats | SqlClient.SqlClient

export type ReportHandler<T extends ReportType> = (
  report: Extract<AgentReport, { readonly type: T }>,
  source: ReportSource
) => Effect.Effect<Consume.Outcome, unknown, ReportRequirements>

/** One handler per report type; a type without a handler is acknowledged and logged. */
export type ReportRoutes = { readonly [T in ReportType]?: ReportHandler<T> }

/** Send a command to an actor with the report's envelope id as the command's message id. */
/**
 * Send a command to an actor; make it with `commandMeta(report)` so that it carries the report's id.
 * A failed publish is retried in place for a while (a nak would let later reports of the same
 * session overtake this one, and the session actor numbers events in arrival order), then naked.
 */
export const forward = (kind: Pick<AnyActorKind, "name" | "shards">, id: string, command: Envelope) =>
  Publish.publish(subjectOf(kind, id), command).pipe(Effect.retry(forwardRetry), Effect.as(ACK))
/** made once, not per report */
const FORWARD_RETRY_FIRST_MS = 50
const FORWARD_RETRY_FOR_MS = 15_000
const forwardRetry = Schedule.exponential(FORWARD_RETRY_FIRST_MS, 2).pipe(Schedule.upTo(FORWARD_RETRY_FOR_MS))
const ACK = Consume.Outcome.Ack()

/** The meta of a command made from a report: the report's id (one report, one command) and its lineage. */
export const commandMeta = (report: Envelope) => ({
  id: report.id,
  causationId: report.id,
  ...(report.correlationId === undefined ? {} : { correlationId: report.correlationId })
})

/** The reports of an agent's session the ingress forwards to the session actor, as their own type. */
const sessionReportKind = {
  "session.event-reported": true,
  "session.events-reported": true,
  "session.activity-reported": true
} as const

type SessionAgentReport = Extract<AgentReport, { readonly type: keyof typeof sessionReportKind }>

/**
 * A node's session report as the session actor's command carries it: its type and body. A case per type, so that each
 * result is typed as its own member of the command's union.
 */
const sessionReportOf = (report: SessionAgentReport): z.output<typeof ControlProtocol.SessionReportBody> => {
  switch (report.type) {
    case "session.event-reported":
      return { type: report.type, body: report.body }
    case "session.events-reported":
      return { type: report.type, body: report.body }
    case "session.activity-reported":
      return { type: report.type, body: report.body }
  }
}

/** The `session.report` command of one node's session report, with the report's id. */
const sessionReportCommand = (report: SessionAgentReport, nodeId: NodeId) =>
  // the report was parsed when it was decoded: passed on as it is (the session's shard parses it again)
  ControlProtocol.SessionReport.wrap({ nodeId, report: sessionReportOf(report) }, commandMeta(report))

/** The `session.report-run` command of consecutive session reports of one session by one node. */
const sessionReportRunCommand = (reports: ReadonlyArray<SessionAgentReport>, nodeId: NodeId) => {
  const first = reports[0]!
  return ControlProtocol.SessionReportRun.wrap(
    {
      nodeId,
      sessionId: first.body.sessionId,
      reports: reports.map((report) => ({ id: report.id, report: sessionReportOf(report) }))
    },
    // An id of its own: each report's id is claimed by the actor as the report's.
    {
      causationId: first.id,
      ...(first.correlationId === undefined ? {} : { correlationId: first.correlationId })
    }
  )
}

/**
 * `session.event-reported`, `session.events-reported` and `session.activity-reported` → `session.report` to the
 * session actor.
 */
export const sessionRoutes = (session: Pick<AnyActorKind, "name" | "shards">): ReportRoutes => {
  const toSession = (
    report: Extract<AgentReport, { readonly type: keyof typeof sessionReportKind }>,
    source: ReportSource
  ) => forward(session, report.body.sessionId, sessionReportCommand(report, source.nodeId))
  return {
    "session.event-reported": toSession,
    "session.events-reported": toSession,
    "session.activity-reported": toSession
  }
}

/** Record a refused report in `dropped_reports` (and the log), and terminate its delivery. */
export const drop = (
  source: { readonly nodeId: string; readonly subject: string },
  report: { readonly type: string; readonly id?: string | undefined; readonly body?: unknown },
  entityId: string | null,
  reason: string
) => {
  const row: DroppedReport = {
    nodeId: source.nodeId,
    subject: source.subject,
    type: report.type,
    entityId,
    messageId: report.id ?? null,
    reason,
    payload: report.body === undefined ? "" : JSON.stringify(report.body)
  }
  return Effect.logWarning(`dropped ${report.type} report from ${source.nodeId} on ${source.subject}: ${reason}`).pipe(
    Effect.zipRight(insertDropped([row])),
    Effect.as(Consume.Outcome.Term({ reason }))
  )
}

/** The id a report's body names (workspace, session or task), for the subject check and the audit. */
const entityOf = (report: AgentReport): string | undefined => {
  const body = report.body as Record<string, unknown>
  for (const key of ["sessionId", "workspaceId", "taskId"]) {
    if (typeof body[key] === "string") return body[key] as string
  }
  return undefined
}

/** Parse `sam.agent.<nodeId>.rpt.<type>[.<id>]`; undefined when the subject is not a report's. */
export const parseSubject = (subject: string, type: string) => {
  const prefix = subject.split(".")
  if (prefix[0] !== "sam" || prefix[1] !== "agent" || prefix[3] !== "rpt") return undefined
  const nodeId = NodeId.safeParse(prefix[2])
  if (!nodeId.success) return undefined
  const rest = prefix.slice(4).join(".")
  if (rest !== type && !rest.startsWith(`${type}.`)) return undefined
  const id = rest === type ? undefined : rest.slice(type.length + 1)
  return { nodeId: nodeId.data, subjectEntityId: id }
}

/** A report that passed the checks that need no ledger: where it comes from and what it names. */
interface Checked {
  readonly report: AgentReport
  readonly source: ReportSource
  readonly entity: string | null
}

/**
 * The checks of one delivery that need no ledger: a subject that is a report's, a body that does not
 * name another node, and the subject's id (when present) the entity the body names. A refusal is
 * audited and the delivery terminated.
 */
const precheck = (
  delivery: Consume.Delivery<AgentReport>
): { readonly checked: Checked } | { readonly refused: ReturnType<typeof drop> } => {
  const report = delivery.envelope
  const parsed = parseSubject(delivery.subject, report.type)
  const nodeToken = delivery.subject.split(".")[2] ?? "unknown"
  if (parsed === undefined) {
    return {
      refused: drop({ nodeId: nodeToken, subject: delivery.subject }, report, null, "subject_does_not_match_type")
    }
  }
  const source: ReportSource = { ...parsed, subject: delivery.subject, streamSequence: delivery.streamSequence }
  const entity = entityOf(report) ?? null
  const bodyNode = (report.body as { readonly nodeId?: unknown }).nodeId
  if (bodyNode !== undefined && bodyNode !== source.nodeId) {
    return { refused: drop(source, report, entity, `body names node ${String(bodyNode)}: forged`) }
  }
  if (source.subjectEntityId !== undefined && entity !== null && source.subjectEntityId !== entity) {
    return { refused: drop(source, report, entity, `subject names ${source.subjectEntityId}: forged`) }
  }
  return { checked: { report, source, entity } }
}

/**
 * The router over `routes`: checks that the body does not name another node and that the subject's
 * id (when present) is the entity the body names, and that what it names is the node's owner's and,
 * for a session, still live (ReportOwnership.ts); then hands the report to its handler.
 *
 * `run` does the same for consecutive reports of one session by one node that waited together (issue
 * 12): one ownership check for them all, and one `session.report-run` to the session actor.
 */
export const router = (routes: ReportRoutes, session?: Pick<AnyActorKind, "name" | "shards">) => {
  const resultsSeen = Ownership.makeResultsSeen()
  const owned = Ownership.makeOwnedSessions()
  const one = (delivery: Consume.Delivery<AgentReport>): Effect.Effect<Consume.Outcome, unknown, ReportRequirements> =>
    Effect.gen(function* () {
      const pre = precheck(delivery)
      if ("refused" in pre) return yield* pre.refused
      const { report, source, entity } = pre.checked
      const handler = routes[report.type] as ReportHandler<ReportType> | undefined
      if (handler === undefined) {
        yield* Effect.logDebug(`no route for ${report.type} report from ${source.nodeId}; acknowledged`)
        return Consume.Outcome.Ack()
      }
      const refused = yield* Ownership.refusal(report, source.nodeId, resultsSeen, owned)
      if (refused !== undefined) return yield* drop(source, report, entity, refused)
      return yield* handler(report, source)
    })
  /** The outcome of each delivery of a run, in order; a failure fails them all (they are naked). */
  const run = (
    deliveries: ReadonlyArray<Consume.Delivery<AgentReport>>
  ): Effect.Effect<ReadonlyArray<Consume.Outcome>, unknown, ReportRequirements> =>
    Effect.gen(function* () {
      const outcomes: Array<Consume.Outcome | undefined> = []
      const passed: Array<{ readonly index: number; readonly checked: Checked }> = []
      for (const [index, delivery] of deliveries.entries()) {
        const pre = precheck(delivery)
        if ("refused" in pre) outcomes[index] = yield* pre.refused
        else passed.push({ index, checked: pre.checked })
      }
      const first = passed[0]?.checked
      if (first === undefined || session === undefined) return outcomes as ReadonlyArray<Consume.Outcome>
      // The same session, node and kind of report: the ledger answers the same for each.
      const refused = yield* Ownership.refusal(first.report, first.source.nodeId, resultsSeen, owned)
      if (refused !== undefined) {
        for (const { index, checked } of passed) {
          outcomes[index] = yield* drop(checked.source, checked.report, checked.entity, refused)
        }
        return outcomes as ReadonlyArray<Consume.Outcome>
      }
      const outcome =
        passed.length === 1
          ? yield* (routes[first.report.type] as ReportHandler<ReportType>)(first.report, first.source)
          : yield* forward(
              session,
              (first.report as SessionAgentReport).body.sessionId,
              sessionReportRunCommand(
                passed.map(({ checked }) => checked.report as SessionAgentReport),
                first.source.nodeId
              )
            )
      for (const { index } of passed) outcomes[index] = outcome
      return outcomes as ReadonlyArray<Consume.Outcome>
    })
  /**
   * The command that `run` (or `one`) would forward for consecutive session reports of one session by one node, when
   * nothing about them needs the ledger or a refusal: each passes `precheck`, and the node's reports about the
   * session passed the ledger's check already (`owned`, and no task result since). Undefined otherwise: then `run` or
   * `one` handles them, with their checks, refusals and audits (issue 12: this is every event's path).
   */
  const ready = (
    deliveries: ReadonlyArray<Consume.Delivery<AgentReport>>
  ): { readonly subject: string; readonly command: Envelope } | undefined => {
    if (session === undefined) return undefined
    const checked: Array<Checked> = []
    for (const delivery of deliveries) {
      const pre = precheck(delivery)
      if ("refused" in pre) return undefined
      checked.push(pre.checked)
    }
    const first = checked[0]
    if (first === undefined || !(first.report.type in sessionReportKind)) return undefined
    const sessionId = (first.report as SessionAgentReport).body.sessionId
    const nodeId = first.source.nodeId
    if (!owned.has(nodeId, sessionId) || resultsSeen.has(nodeId, sessionId)) return undefined
    const reports = checked.map(({ report }) => report as SessionAgentReport)
    const command =
      reports.length === 1 ? sessionReportCommand(reports[0]!, nodeId) : sessionReportRunCommand(reports, nodeId)
    return { subject: subjectOf(session, sessionId), command }
  }
  return { one, run, ready }
}

/**
 * Whether consecutive deliveries may go on as one run: session reports of one session, from one node
 * subject, for one request. Undefined for any other report.
 */
const runKey = (delivery: Consume.Delivery<AgentReport>) => {
  const report = delivery.envelope
  if (!(report.type in sessionReportKind)) return undefined
  const sessionId = (report.body as { readonly sessionId?: unknown }).sessionId
  return `${delivery.subject.split(".")[2]}|${String(sessionId)}|${report.correlationId ?? ""}`
}

export interface IngressOptions {
  readonly routes: ReportRoutes
  /** durable consumer on SAM_AGENT (default `control-report-ingress`) */
  readonly durable?: string
  /** `all` (default) for production; `new` for a consumer created by a test on a shared stream */
  readonly deliver?: "all" | "new"
  readonly ackWait?: Duration.DurationInput
  /** called after each heartbeat was stored, e.g. to tell the node actor */
  /** names this instance in the ingress lease (default random) */
  readonly instanceId?: string
  /** how long the ingress lease outlives a holder that stopped renewing it (default 10 s) */
  readonly leaseTtl?: Duration.DurationInput
  /** reports handled side by side; those about one entity always share a lane (default 16) */
  readonly lanes?: number
  /** the session actor: consecutive reports of a session that wait together go to it as one run */
  readonly sessionRuns?: Pick<AnyActorKind, "name" | "shards">
  readonly onHeartbeat?: (record: Domain.NodeHealthRecord) => Effect.Effect<void, unknown, ReportRequirements>
}

export const DEFAULT_DURABLE = "control-report-ingress"
/** What the lanes of one holding of the ingress share. */
interface Lane {
  /** the holding's: its services and log settings, for the effects a lane runs */
  readonly runtime: Runtime.Runtime<never>
  /** set when no span is exported: a ready run is then forwarded as plain code */
  readonly streams: StreamPublisher | undefined
  readonly holding: () => boolean
}

/** Most deliveries a lane takes at once. */
const LANE_BUFFER = 256
/** Most payload bytes in one run: a command stays well under NATS's 1 MB message limit. */
const RUN_BYTES = 900_000
const STREAM = Topology.Streams.SAM_AGENT.name
const FILTER = "sam.agent.*.rpt.>"
const HEARTBEATS = "sam.agent.*.hb"

const jsError = (what: string) => (cause: unknown) =>
  new NatsError({ reason: "JetStream", message: `${what}: ${cause instanceof Error ? cause.message : cause}`, cause })

/** Whether a consumer of SAM_AGENT is one of this ingress's (any holding, or the unversioned name of old). */
const isIngressConsumer = (name: string, durable: string) =>
  name === durable || (name.startsWith(`${durable}-r`) && /^[0-9]+$/.test(name.slice(durable.length + 2)))

/**
 * The consumer of one holding of the ingress lease, named by the lease's KV revision, which grows with
 * every holding. A holder frozen past its lease (SIGSTOP, a paused VM) keeps its pull loop, and the NATS
 * client re-pulls a consumer *by name* after missed heartbeats: with one name for all holders it took
 * reports from its successor's consumer, forwarded some before noticing the loss, and the rest reached
 * the successor only after the ack wait, behind newer reports of the same session. With its own name,
 * its pulls end with its consumer. The new consumer starts right after the highest ack floor of the
 * previous ones (a report is acknowledged once handled), so reports an earlier holder never acknowledged
 * (it gave the lease up mid-batch, or died) come again at once and before anything newer; without that
 * they came back only after the ack wait (30 s), and a conversation's last events (its turn's end)
 * arrived half a minute late (test/faults/matrix.test.ts). Reports are handled idempotently, so those
 * already handled change nothing.
 */
const ingressConsumers = (durable: string) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    return yield* Effect.tryPromise({
      try: async () => {
        const out: Array<{ name: string; floor: number; pending: number }> = []
        for await (const info of Consume.consumersOf(jsm, STREAM)) {
          if (isIngressConsumer(info.name, durable)) {
            out.push({ name: info.name, floor: info.ack_floor.stream_seq, pending: info.num_ack_pending })
          }
        }
        return out
      },
      catch: jsError(`list consumers ${durable}`)
    })
  })

/**
 * For `deliver: "new"` (a test on a shared stream): the ingress's first consumer is created when it
 * starts, not when it first holds its lease, so reports published in between are not skipped.
 */
const ensureFirstConsumer = (durable: string, ackWait: Duration.DurationInput) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    if ((yield* ingressConsumers(durable)).length > 0) return
    yield* Effect.tryPromise({
      try: () =>
        jsm.consumers.add(STREAM, {
          durable_name: durable,
          filter_subject: FILTER,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.New,
          ack_wait: nanos(Duration.toMillis(Duration.decode(ackWait))),
          max_deliver: -1
        }),
      catch: jsError(`create consumer ${durable}`)
    })
  })

const takeConsumer = (durable: string, revision: number, startAt: "all" | "new", ackWait: Duration.DurationInput) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    const name = `${durable}-r${revision}`
    const previous = yield* ingressConsumers(durable)
    const floor = Math.max(0, ...previous.map((consumer) => consumer.floor))
    yield* Effect.forEach(
      previous,
      (consumer) =>
        Effect.tryPromise({
          try: () =>
            jsm.consumers.delete(STREAM, consumer.name).catch((error: unknown) => {
              if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return true
              throw error
            }),
          catch: jsError(`delete ${consumer.name}`)
        }),
      { discard: true }
    )
    yield* Effect.tryPromise({
      try: () =>
        jsm.consumers.add(STREAM, {
          durable_name: name,
          filter_subject: FILTER,
          ack_policy: AckPolicy.Explicit,
          ...(previous.length > 0
            ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 }
            : { deliver_policy: startAt === "new" ? DeliverPolicy.New : DeliverPolicy.All }),
          ack_wait: nanos(Duration.toMillis(Duration.decode(ackWait))),
          max_deliver: -1,
          max_ack_pending: 1000
        }),
      catch: jsError(`create consumer ${name}`)
    })
    const unacknowledged = previous.reduce((sum, consumer) => sum + consumer.pending, 0)
    if (unacknowledged > 0) {
      yield* Effect.logInfo(
        `report ingress: ${unacknowledged} reports were given to an earlier holder and not acknowledged; consuming again from stream sequence ${floor + 1}`
      )
    }
    return name
  })

const heartbeats = registry(NodeProtocol.Heartbeat)

/** Store each heartbeat whose body names the node of its subject; anything else is logged and ignored. */
const heartbeatLoop = (options: IngressOptions) =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const store = yield* Kv.open(Topology.Buckets.nodeHealth.name, NodeHealthRecord)
    const messages = Stream.asyncScoped<{ subject: string; data: Uint8Array }>((emit) =>
      Effect.acquireRelease(
        Effect.sync(() =>
          nc.subscribe(HEARTBEATS, { callback: (_, msg) => void emit.single({ subject: msg.subject, data: msg.data }) })
        ),
        (sub) => Effect.sync(() => sub.unsubscribe())
      )
    )
    yield* Stream.runForEach(messages, ({ subject, data }) =>
      Effect.gen(function* () {
        const decoded = heartbeats.decode(data)
        const nodeToken = subject.split(".")[2] ?? ""
        if (decoded._tag === "Malformed") {
          return yield* Effect.logWarning(`ignored heartbeat on ${subject}: ${decoded.malformed.message}`)
        }
        const body = decoded.envelope.body
        if (body.nodeId !== nodeToken) {
          return yield* Effect.logWarning(`ignored heartbeat on ${subject}: body names ${body.nodeId}`)
        }
        const record: Domain.NodeHealthRecord = {
          ...body,
          sentAt: decoded.envelope.at,
          receivedAt: new Date().toISOString()
        }
        yield* store.put(body.nodeId, record)
        if (options.onHeartbeat) yield* options.onHeartbeat(record)
      }).pipe(Effect.catchAllCause((cause) => Effect.logWarning(`heartbeat on ${subject} failed`, Cause.pretty(cause))))
    )
  })

/**
 * Run the ingress in the current scope: the durable consumer of reports and the heartbeat
 * subscription. A handler that fails naks its delivery (redelivered after a second); a payload that
 * does not decode is terminated and audited.
 */
export const run = Effect.fn("ReportIngress.run")(function* (options: IngressOptions) {
  const durable = options.durable ?? DEFAULT_DURABLE
  // the services the handlers need, without this start's span: each report's handling is a span of its own trace
  const context = Context.omit(Tracer.ParentSpan)(yield* Effect.context<ReportRequirements>())
  if (options.deliver === "new") yield* ensureFirstConsumer(durable, options.ackWait ?? "30 seconds")
  const route = router(options.routes, options.sessionRuns)
  // each delivery goes from the client's callback straight into its lane (issue 12: no stream between them)
  const deliveries = (name: string, onDelivery: (delivery: Consume.Delivery<AgentReport>) => void) =>
    Consume.each<AgentReport>(STREAM, name, NodeProtocol.agentReports, onDelivery, {
      onMalformed: (bad) =>
        drop(
          { nodeId: bad.subject.split(".")[2] ?? "unknown", subject: bad.subject },
          { type: bad.malformed.reason },
          null,
          `malformed: ${bad.malformed.message}`
        ).pipe(
          Effect.asVoid,
          Effect.provide(context),
          Effect.catchAllCause((cause) => Effect.logWarning("auditing a malformed report failed", Cause.pretty(cause)))
        )
    })
  // Reports about one entity stay in order (one lane handles them one at a time); lanes run side by
  // side, so one slow publish does not hold up every node. A lane takes all that waits in it, and
  // consecutive reports of one session go on as one run (issue 12): a busy control plane then pays
  // one ownership check, one command and one transaction per run rather than per report.
  const lanes = options.lanes ?? 16
  const laneOf = (delivery: Consume.Delivery<AgentReport>) =>
    Subjects.shardOf(entityOf(delivery.envelope) ?? delivery.subject, lanes)
  const handleOne = Consume.handleOne((delivery: Consume.Delivery<AgentReport>) =>
    route.one(delivery).pipe(Effect.provide(context))
  )
  const handleRun = (run: ReadonlyArray<Consume.Delivery<AgentReport>>) =>
    route.run(run).pipe(
      Effect.provide(context),
      Effect.matchCauseEffect({
        onFailure: (cause) =>
          Effect.logWarning(`a run of ${run.length} reports failed; will redeliver`, Cause.pretty(cause)).pipe(
            Effect.zipRight(
              Effect.forEach(run, (delivery) => Consume.settle(delivery, Consume.Outcome.Nak({ delay: "1 second" })), {
                discard: true
              })
            )
          ),
        onSuccess: (outcomes) =>
          Effect.forEach(
            run,
            (delivery, i) => {
              const outcome = outcomes[i] ?? Consume.Outcome.Nak({ delay: "1 second" })
              return (
                outcome._tag === "Term"
                  ? Effect.logWarning(`terminated ${delivery.envelope.type} on ${delivery.subject}: ${outcome.reason}`)
                  : Effect.void
              ).pipe(Effect.zipRight(Consume.settle(delivery, outcome)))
            },
            { discard: true }
          )
      }),
      Trace.withCorrelation(run[0]?.envelope.correlationId),
      // the node's turn (or command) the reports belong to is this span's parent: one trace from the request on
      Trace.handling("ReportIngress.run", run[0]?.msg.headers?.get("traceparent"), () => ({
        reports: run.length,
        type: run[0]?.envelope.type
      }))
    )
  /** The traceparent a handling under the message's `traceparent` passes on (`Trace.handling` without a span). */
  const passedOn = (delivery: Consume.Delivery<AgentReport> | undefined) => {
    const parent = Trace.parentOf(delivery?.msg.headers?.get("traceparent"))
    return Option.isSome(parent) ? Trace.traceparentOf(parent.value) : undefined
  }
  /**
   * `forward` and the settling of its reports as plain code (issue 12): published with the first report's trace
   * context, retried as `forward` is (`forwardRetry`'s delays, for as long), then acknowledged; once the retries are
   * spent, naked to come again after a second, as a failed `handleOne` or `handleRun` does.
   */
  const forwardNow = (
    streams: StreamPublisher,
    lane: Lane,
    reports: ReadonlyArray<Consume.Delivery<AgentReport>>,
    { subject, command }: { readonly subject: string; readonly command: Envelope }
  ) =>
    Publish.publishNowRetrying(streams, subject, command, passedOn(reports[0]), {
      firstMs: FORWARD_RETRY_FIRST_MS,
      forMs: FORWARD_RETRY_FOR_MS,
      // the holding ended: what is not acknowledged comes again to the next holder
      open: lane.holding
    }).then((outcome) => {
      if (outcome === "closed") return
      if (outcome === "published") {
        for (const delivery of reports) delivery.msg.ack()
        return
      }
      Runtime.runFork(lane.runtime)(
        Effect.logWarning(`${reports.length} report(s) could not be forwarded; will redeliver: ${outcome.message}`)
      )
      for (const delivery of reports) delivery.msg.nak(1_000)
    })
  /**
   * One entity's reports, in order: consecutive ones that may go together as runs, the rest alone. A run whose
   * command is `ready` is forwarded as plain code when no span would be exported; the others go through `handleOne` or
   * `handleRun` (their checks, refusals, audits and spans) on `runtime`.
   */
  const handleEntity = (reports: ReadonlyArray<Consume.Delivery<AgentReport>>, lane: Lane) =>
    (async () => {
      let i = 0
      while (i < reports.length && lane.holding()) {
        const key = options.sessionRuns === undefined ? undefined : runKey(reports[i]!)
        let j = i + 1
        let bytes = reports[i]!.msg.data.length
        while (
          key !== undefined &&
          j < reports.length &&
          j - i < ControlProtocol.MAX_REPORTS_PER_RUN &&
          runKey(reports[j]!) === key &&
          bytes + reports[j]!.msg.data.length <= RUN_BYTES
        ) {
          bytes += reports[j]!.msg.data.length
          j++
        }
        const run = reports.slice(i, j)
        const streams = lane.streams
        const ready = streams !== undefined && key !== undefined ? route.ready(run) : undefined
        if (streams !== undefined && ready !== undefined) await forwardNow(streams, lane, run, ready)
        else await Runtime.runPromise(lane.runtime)(run.length === 1 ? handleOne(run[0]!) : handleRun(run))
        i = j
      }
    })()
  /**
   * What a lane took, by entity: each entity's reports in their order, the entities side by side
   * (a lane serves several sessions; their reports interleave, and only one entity's order matters).
   */
  const handleTaken = (taken: ReadonlyArray<Consume.Delivery<AgentReport>>, lane: Lane) => {
    const byEntity = new Map<string, Array<Consume.Delivery<AgentReport>>>()
    for (const delivery of taken) {
      const key = entityOf(delivery.envelope) ?? delivery.subject
      const reports = byEntity.get(key)
      if (reports === undefined) byEntity.set(key, [delivery])
      else reports.push(delivery)
    }
    return Promise.all([...byEntity.values()].map((reports) => handleEntity(reports, lane)))
  }
  const work = (revision: number) =>
    Effect.gen(function* () {
      // Should it fail (NATS still settling), retry: the lease is given up should it keep failing.
      const name = yield* takeConsumer(
        durable,
        revision,
        options.deliver ?? "all",
        options.ackWait ?? "30 seconds"
      ).pipe(Effect.retry(Schedule.spaced("500 millis").pipe(Schedule.upTo("5 seconds"))))
      // With spans exported every report goes through the effects that make them; without, a ready run is plain code.
      const lane: Lane = {
        runtime: yield* Effect.runtime<never>(),
        streams: (yield* Trace.exported) ? undefined : (yield* Nats).streams,
        holding: () => holding
      }
      // A lane is an array and a loop of plain code (issue 12: a fiber's queue take per report cost more than the
      // report's forward). What the lanes hold is bounded by the consumer's max_ack_pending (the server holds back the
      // rest). A lane stops with this holding: what it holds then is left unacknowledged for the next holder.
      let holding = true
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          holding = false
        })
      )
      const laneQueues = Array.from({ length: lanes }, () => ({
        waiting: [] as Array<Consume.Delivery<AgentReport>>,
        pumping: false
      }))
      const pump = async (queue: (typeof laneQueues)[number]) => {
        while (holding && queue.waiting.length > 0) {
          try {
            await handleTaken(queue.waiting.splice(0, LANE_BUFFER), lane)
          } catch (error) {
            // a bug: what it took is left unacknowledged, and comes again after the ack wait
            Runtime.runFork(lane.runtime)(Effect.logError("report ingress: a lane failed", error))
          }
        }
        queue.pumping = false
      }
      const offer = (delivery: Consume.Delivery<AgentReport>) => {
        const queue = laneQueues[laneOf(delivery)]!
        queue.waiting.push(delivery)
        if (queue.pumping || !holding) return
        queue.pumping = true
        queueMicrotask(() => void pump(queue))
      }
      yield* Effect.forkScoped(
        deliveries(name, offer).pipe(
          Effect.tapErrorCause((cause) => Effect.logError("report ingress stopped", Cause.pretty(cause)))
        )
      )
      yield* Effect.forkScoped(heartbeatLoop(options))
      return yield* Effect.never
    })
  // One instance at a time consumes: two consumers of one durable would interleave a session's reports.
  yield* IngressLease.whileHeld(
    {
      key: `ingress.${durable}`,
      owner: options.instanceId ?? `ingress-${Math.random().toString(36).slice(2, 10)}`,
      ...(options.leaseTtl === undefined ? {} : { ttl: options.leaseTtl })
    },
    work
  ).pipe(Effect.forkScoped)
})

/** The ingress as a layer: runs while the layer is alive. */
export const layer = (options: IngressOptions) => Layer.scopedDiscard(run(options))
