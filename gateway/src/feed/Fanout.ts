import { Api, Nats } from "@sam/bus"
import { Effect, Queue } from "effect"
import { type EventSubject, type Forwarded, forwarded, parseSubject, SYSTEM } from "./FeedEvents.js"
import * as NodeAudience from "./NodeAudience.js"
import { frame, type Outbound, type OutFrame } from "./Outbound.js"
import type { SessionStream } from "./SessionStream.js"

/** What the fanout knows of a connection. */
export interface Subscriber {
  readonly id: string
  readonly userId: string
  /** the session or API token the connection was opened with */
  readonly credentialId: string
  readonly out: Outbound
  /** membership of this user changed: check every subscription again now */
  readonly recheck: () => void
}

const RECENT_IDS = 8192
/** What the feed hands to whoever may see the node (its owner, members of projects with workspaces on it). */
const NODE_EVENTS = new Set(["node.status", "node.bootlog"])

/** Set-valued index: key → members. */
class Index<K, V> {
  readonly map = new Map<K, Set<V>>()
  add(key: K, value: V) {
    const set = this.map.get(key)
    if (set === undefined) this.map.set(key, new Set([value]))
    else set.add(value)
  }
  remove(key: K, value: V) {
    const set = this.map.get(key)
    if (set === undefined) return
    set.delete(value)
    if (set.size === 0) this.map.delete(key)
  }
}

/**
 * One core NATS subscription to `sam.evt.>` for the whole gateway process, routing each event to
 * the connections that asked for it: by project, by session, by user (notifications, nodes). An
 * event is decoded and serialized once, and the same string goes to every connection. The outbox
 * relay may publish an event twice (JetStream drops the repeat, a core subscriber sees both), so
 * recent envelope ids are remembered and a repeat is dropped here; session events are also
 * de-duplicated per subscriber by seq, which holds however late a repeat comes.
 */
export const make = Effect.gen(function* () {
  const { nc } = yield* Nats
  const audience = yield* NodeAudience.make
  const byUser = new Index<string, Subscriber>()
  const byProject = new Index<string, Subscriber>()
  const bySession = new Map<string, Map<Subscriber, SessionStream>>()
  const recent = new Set<string>()
  const recentOrder: Array<string> = []
  const nodeEvents = yield* Queue.unbounded<{ readonly nodeId: string; readonly frame: OutFrame }>()

  const seen = (id: string) => {
    if (recent.has(id)) return true
    recent.add(id)
    recentOrder.push(id)
    if (recentOrder.length > RECENT_IDS) recent.delete(recentOrder.shift() as string)
    return false
  }

  const eventFrame = (subject: EventSubject, envelope: Forwarded) =>
    frame({
      type: "event",
      projectId: subject.project === SYSTEM ? null : (subject.project as Api.ServerFrameOf<"event">["projectId"]),
      kind: subject.kind,
      id: subject.id,
      eventType: envelope.type,
      body: envelope.body,
      at: envelope.at,
      ...(envelope.correlationId === undefined ? {} : { correlationId: envelope.correlationId })
    })

  /** Cheap checks on the subject alone, so nobody pays to decode an event nobody watches. */
  const wanted = (subject: EventSubject) => {
    if (byUser.map.size === 0) return false
    if (subject.type === "notification.created") return true
    if (subject.project === SYSTEM) return subject.kind === "node" && NODE_EVENTS.has(subject.type)
    // a removal concerns the member's sessions as much as the project: they may watch only a session of it
    if (subject.type === "project.member-removed") return true
    return byProject.map.has(subject.project) || (subject.kind === "session" && bySession.has(subject.id))
  }

  const route = (subject: EventSubject, envelope: Forwarded) => {
    if (envelope.type === "session.event" || envelope.type === "session.event-batch") {
      const streams = bySession.get(subject.id)
      if (streams === undefined) return
      // a batch is its entries, each a frame of its own (ADR 0032)
      const { sessionId } = envelope.body
      const entries = envelope.type === "session.event" ? [envelope.body] : envelope.body.entries
      const correlation = envelope.correlationId === undefined ? {} : { correlationId: envelope.correlationId }
      for (const entry of entries) {
        const live = frame({
          type: "session.event",
          sessionId,
          seq: entry.seq,
          promptEpoch: entry.promptEpoch,
          event: entry.event,
          at: envelope.at,
          ...correlation
        })
        for (const stream of streams.values()) stream.onLive(entry.seq, live)
      }
      return
    }
    if (envelope.type === "notification.created") {
      const targets = byUser.map.get(envelope.body.notification.userId)
      if (targets === undefined) return
      const out = eventFrame(subject, envelope)
      for (const target of targets) target.out.send(out)
      return
    }
    if (subject.project === SYSTEM) {
      if (envelope.type === "node.status" || envelope.type === "node.bootlog")
        nodeEvents.unsafeOffer({ nodeId: subject.id, frame: eventFrame(subject, envelope) })
      return
    }
    // A removed member stops receiving the project's and its sessions' events now, not at the next periodic check.
    if (envelope.type === "project.member-removed") {
      for (const target of byUser.map.get(envelope.body.userId) ?? []) target.recheck()
    }
    const targets = new Set(byProject.map.get(subject.project))
    if (subject.kind === "session") for (const target of bySession.get(subject.id)?.keys() ?? []) targets.add(target)
    if (targets.size === 0) return
    const out = eventFrame(subject, envelope)
    for (const target of targets) target.out.send(out)
  }

  const onMessage = (msg: { readonly subject: string; readonly data: Uint8Array }) => {
    const subject = parseSubject(msg.subject)
    if (subject === undefined || !wanted(subject)) return
    const decoded = forwarded.decode(msg.data)
    if (decoded._tag !== "Ok") return
    const type = decoded.envelope.type
    if (type !== "session.event" && type !== "session.event-batch" && seen(decoded.envelope.id)) return
    route(subject, decoded.envelope)
  }

  const subscription = yield* Effect.acquireRelease(
    Effect.sync(() =>
      nc.subscribe("sam.evt.>", {
        callback: (error, msg) => {
          if (error === null) onMessage(msg)
        }
      })
    ),
    (sub) => Effect.sync(() => sub.unsubscribe())
  )
  yield* Effect.promise(() => nc.flush())

  // Node events need a lookup of who may see the node: one at a time, so they stay in order.
  yield* Effect.forkScoped(
    Effect.forever(
      Effect.gen(function* () {
        const event = yield* Queue.take(nodeEvents)
        for (const userId of yield* audience.usersOf(event.nodeId)) {
          for (const target of byUser.map.get(userId) ?? []) target.out.send(event.frame)
        }
      })
    )
  )

  // A core subscription misses what is published while the connection is down: after a reconnect
  // every session subscriber reads its transcript for anything it missed.
  yield* Effect.forkScoped(
    Effect.promise(async () => {
      for await (const status of nc.status()) {
        if (status.type !== "reconnect") continue
        for (const streams of bySession.values()) for (const stream of streams.values()) stream.poke()
      }
    })
  )

  return {
    subscription,
    register: (subscriber: Subscriber) => byUser.add(subscriber.userId, subscriber),
    unregister: (subscriber: Subscriber) => byUser.remove(subscriber.userId, subscriber),
    addProject: (subscriber: Subscriber, projectId: string) => byProject.add(projectId, subscriber),
    removeProject: (subscriber: Subscriber, projectId: string) => byProject.remove(projectId, subscriber),
    /** from now on, live events of the session are handed to `stream` (before it reads anything) */
    addSession: (subscriber: Subscriber, stream: SessionStream) => {
      const streams = bySession.get(stream.sessionId)
      if (streams === undefined) bySession.set(stream.sessionId, new Map([[subscriber, stream]]))
      else streams.set(subscriber, stream)
    },
    removeSession: (subscriber: Subscriber, stream: SessionStream) => {
      const streams = bySession.get(stream.sessionId)
      if (streams?.get(subscriber) === stream) streams.delete(subscriber)
      if (streams?.size === 0) bySession.delete(stream.sessionId)
    },
    /**
     * Close the user's connections opened with `credentialId` (all of the user's when absent) with
     * 4001; returns how many were open.
     */
    closeCredential: (
      target: { readonly userId: string; readonly credentialId?: string | undefined },
      reason: string
    ) => {
      let n = 0
      for (const subscriber of [...(byUser.map.get(target.userId) ?? [])]) {
        if (target.credentialId !== undefined && subscriber.credentialId !== target.credentialId) continue
        subscriber.out.close(Api.FeedClose.unauthenticated, reason)
        n++
      }
      return n
    },
    connections: () => {
      let n = 0
      for (const set of byUser.map.values()) n += set.size
      return n
    }
  }
})

export type Fanout = Effect.Effect.Success<typeof make>
