import { join } from "node:path"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { waitUntil } from "../../src/Env.js"
import { awaitingFollowUp, GatewayEnv, GatewayUrl, http, makeUser, tempDir } from "../../src/index.js"
import { makeRepo } from "../../src/Repo.js"
import { isOpen, type RawClient, rawClient } from "./FeedTestKit.js"

const open = (client: Awaited<Effect.Effect.Success<ReturnType<typeof rawClient>>>): RawClient => {
  if (!isOpen(client)) throw new Error(`refused with HTTP ${client.refused}: ${client.body}`)
  return client
}
const until = <A>(what: string, check: () => A | undefined) =>
  waitUntil(what, Effect.sync(check), { timeout: "60 seconds", every: "20 millis" })

/** Issue 12: one message followed from the HTTP request to the feed frames it causes. */
layer(GatewayEnv, { excludeTestServices: true, timeout: 120_000 })("one request followed end to end", (it) => {
  it.effect(
    "a task's request id reaches every hop and the feed frames of its session; a follow-up has its own; sam task trace shows both",
    () =>
      Effect.gen(function* () {
        const url = yield* GatewayUrl
        const alice = yield* makeUser("Alice")
        const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
        const project = yield* http("POST", "/api/v1/projects", {
          token: alice.token,
          body: { name: "t", repoUrl: repo }
        })
        const client = open(yield* rawClient(url, alice.token))
        client.send({ type: "subscribe", id: "p", projects: [project.body.id] })
        yield* until("subscribed", () => client.of("subscribed")[0])

        // A request id the client makes up is not taken: correlation ids are the gateway's.
        const created = yield* http("POST", `/api/v1/projects/${project.body.id}/tasks`, {
          token: alice.token,
          body: { prompt: "say hello from one request", mode: "conversation" },
          headers: { "x-request-id": "req_forged" }
        })
        expect(created.status).toBe(201)
        const first = created.headers.get("x-request-id") ?? ""
        expect(first).toMatch(/^req_[0-9A-Za-z]+$/)
        const taskId = created.body.id as string
        const sessionId = yield* awaitingFollowUp(taskId)
        // The task's own events (its status changes) on the project feed carry the request's id.
        const taskEvents = client.of("event").filter((f) => f.kind === "task" && f.id === taskId)
        expect(taskEvents.length).toBeGreaterThan(0)
        expect(new Set(taskEvents.map((f) => f.correlationId))).toEqual(new Set([first]))

        client.send({ type: "subscribe", id: "s", sessions: [{ sessionId, afterSeq: 0 }] })
        yield* until("caught up", () => client.of("caught-up")[0])
        const prompted = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
          token: alice.token,
          body: { prompt: "say second answer" }
        })
        expect(prompted.status).toBe(202)
        const second = prompted.headers.get("x-request-id") ?? ""
        expect(second).toMatch(/^req_/)
        expect(second).not.toBe(first)
        yield* until("the follow-up's answer, live", () =>
          client
            .of("session.event")
            .find((f) => f.promptEpoch === 2 && JSON.stringify(f.event).includes("second answer"))
        )
        yield* until("the follow-up's turn ended", () =>
          client.of("session.event").find((f) => f.promptEpoch === 2 && f.event.type === "turn-ended")
        )
        // Caught up (the first turn) and live (the follow-up): every agent event names its request.
        const frames = client.of("session.event").filter((f) => f.event.type !== "permission-answered")
        const byEpoch = (epoch: number) =>
          new Set(frames.filter((f) => f.promptEpoch === epoch).map((f) => f.correlationId))
        expect(byEpoch(1)).toEqual(new Set([first]))
        expect(byEpoch(2)).toEqual(new Set([second]))
        // and a client that comes later reads the same from the transcript
        const late = open(yield* rawClient(url, alice.token))
        late.send({ type: "subscribe", id: "l", sessions: [{ sessionId, afterSeq: 0 }] })
        yield* until("the late client caught up", () => late.of("caught-up")[0])
        const replayed = late.of("session.event")
        expect(replayed.length).toBe(frames.length)
        for (const f of replayed) expect(f.correlationId).toBe(f.promptEpoch === 1 ? first : second)

        // sam task trace: each request's hops, in order, from the submit to the agent's reports.
        const trace = yield* http("GET", `/api/v1/tasks/${taskId}/trace`, { token: alice.token })
        expect(trace.status).toBe(200)
        const requests = trace.body.requests as Array<{
          correlationId: string
          hops: Array<{ kind: string; entityId: string; type: string; count: number; firstMs: number }>
        }>
        expect(new Set(requests.map((r) => r.correlationId))).toEqual(new Set([first, second]))
        const submit = requests.find((r) => r.correlationId === first)!
        const kinds = submit.hops.map((h) => h.kind)
        for (const kind of ["task", "node", "workspace", "session"]) expect(kinds).toContain(kind)
        expect(
          submit.hops.some((h) => h.kind === "session" && h.entityId === sessionId && h.type === "session.report")
        ).toBe(true)
        const times = submit.hops.map((h) => h.firstMs)
        expect(times).toEqual([...times].sort((a, b) => a - b))
        const followUp = requests.find((r) => r.correlationId === second)!
        expect(followUp.hops[0]).toMatchObject({ kind: "session", entityId: sessionId })

        // Another user sees nothing of it.
        const bob = yield* makeUser("Bob")
        const refused = yield* http("GET", `/api/v1/tasks/${taskId}/trace`, { token: bob.token })
        expect(refused.status).toBe(403)
        client.socket.close()
        late.socket.close()
      })
  )
})
