import type { SqlClient } from "@effect/sql"
import type { Api } from "@sam/bus"
import { Effect, Either, Fiber, type Scope } from "effect"
import * as Access from "../Access.js"
import type { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import type { Subscriber } from "./Fanout.js"
import type { Feed } from "./Feed.js"
import { frame } from "./Outbound.js"
import * as SessionStream from "./SessionStream.js"

type SubscribeFrame = Api.ClientFrame & { readonly type: "subscribe" }
type UnsubscribeFrame = Api.ClientFrame & { readonly type: "unsubscribe" }

interface Active {
  readonly stream: SessionStream.SessionStream
  fiber?: Fiber.RuntimeFiber<void>
}

/**
 * What one connection is subscribed to. Every project and session is checked against the caller's
 * membership before anything of it is sent (design §9), and again every `recheckMs`: a refusal is
 * an `error` frame naming it, and nothing else. A session's stream is registered with the fanout
 * before it reads anything, so no live event can fall between its reads and going live.
 */
export const make = Effect.fnUntraced(function* (
  principal: Principal,
  self: Subscriber,
  feed: Feed["Type"],
  scope: Scope.Scope
) {
  const { fanout, catchUp, options } = feed
  const projects = new Set<string>()
  const sessions = new Map<string, Active>()

  const reply = (value: Api.ServerFrame) => self.out.send(frame(value))
  const refuse = (
    request: string | undefined,
    code: Api.FeedErrorCode,
    message: string,
    details: Record<string, string>
  ) => reply({ type: "error", code, message, details, ...(request === undefined ? {} : { id: request }) })
  const refuseAccess = (request: string | undefined, error: ApiError, details: Record<string, string>) =>
    refuse(request, error.code === "not_found" ? "not_found" : "forbidden", error.message, details)
  const subscribed = (request: string | undefined) =>
    reply({
      type: "subscribed",
      projects: [...projects] as Array<Api.ServerFrameOf<"subscribed">["projects"][number]>,
      sessions: [...sessions.keys()] as Array<Api.ServerFrameOf<"subscribed">["sessions"][number]>,
      ...(request === undefined ? {} : { id: request })
    })

  const dropSession = (sessionId: string) =>
    Effect.gen(function* () {
      const active = sessions.get(sessionId)
      if (active === undefined) return
      sessions.delete(sessionId)
      fanout.removeSession(self, active.stream)
      if (active.fiber !== undefined) yield* Fiber.interrupt(active.fiber)
    })
  const dropProject = (projectId: string) => {
    if (projects.delete(projectId)) fanout.removeProject(self, projectId)
  }

  const subscribe = Effect.fn("Feed.subscribe")(function* (request: SubscribeFrame) {
    for (const projectId of request.projects ?? []) {
      if (projects.has(projectId)) continue
      if (projects.size >= options.maxProjectsPerConnection) {
        const message = `at most ${options.maxProjectsPerConnection} projects per connection`
        refuse(request.id, "too_many_subscriptions", message, { projectId })
        continue
      }
      const access = yield* Effect.either(Access.requireMember(principal, projectId))
      if (Either.isLeft(access)) {
        refuseAccess(request.id, access.left, { projectId })
        continue
      }
      projects.add(projectId)
      fanout.addProject(self, projectId)
    }
    const starting: Array<Active> = []
    for (const cursor of request.sessions ?? []) {
      if (!sessions.has(cursor.sessionId) && sessions.size >= options.maxSessionsPerConnection) {
        const message = `at most ${options.maxSessionsPerConnection} sessions per connection`
        refuse(request.id, "too_many_subscriptions", message, { sessionId: cursor.sessionId })
        continue
      }
      const access = yield* Effect.either(Access.sessionProject(principal, cursor.sessionId))
      if (Either.isLeft(access)) {
        refuseAccess(request.id, access.left, { sessionId: cursor.sessionId })
        continue
      }
      yield* dropSession(cursor.sessionId)
      const stream = yield* SessionStream.make(cursor.sessionId, cursor.afterSeq, self.out, catchUp, options)
      fanout.addSession(self, stream)
      const active: Active = { stream }
      sessions.set(cursor.sessionId, active)
      starting.push(active)
    }
    subscribed(request.id)
    for (const active of starting) active.fiber = yield* Effect.forkIn(active.stream.run, scope)
  })

  const unsubscribe = Effect.fn("Feed.unsubscribe")(function* (request: UnsubscribeFrame) {
    for (const projectId of request.projects ?? []) dropProject(projectId)
    for (const sessionId of request.sessions ?? []) yield* dropSession(sessionId)
    subscribed(request.id)
  })

  /** Drop whatever the caller may no longer see (removed from a project, session deleted). */
  const recheck = Effect.fn("Feed.recheck")(function* () {
    let changed = false
    for (const projectId of [...projects]) {
      const access = yield* Effect.either(Access.requireMember(principal, projectId))
      if (Either.isRight(access)) continue
      dropProject(projectId)
      refuseAccess(undefined, access.left, { projectId })
      changed = true
    }
    for (const sessionId of [...sessions.keys()]) {
      const access = yield* Effect.either(Access.sessionProject(principal, sessionId))
      if (Either.isRight(access)) continue
      yield* dropSession(sessionId)
      refuseAccess(undefined, access.left, { sessionId })
      changed = true
    }
    if (changed) subscribed(undefined)
  })

  /** Leave the fanout; the streams' fibers end with the connection's scope. */
  const release = () => {
    for (const projectId of projects) fanout.removeProject(self, projectId)
    for (const active of sessions.values()) fanout.removeSession(self, active.stream)
  }

  return { subscribe, unsubscribe, recheck, release } satisfies Record<
    string,
    (...args: never) => Effect.Effect<void, never, SqlClient.SqlClient> | void
  >
})
