import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Domain, Kv, makeId, Topology } from "@sam/bus"
import { Sql } from "@sam/sql"
import { Effect, Fiber } from "effect"
import { expect } from "vitest"
import { GatewayEnv, http, makeUser } from "../../src/index.js"
import { api, conversation, createProject, expectNoSecrets, until, untilTask } from "./RestKit.js"

const TERMINAL = ["completed", "failed", "cancelled"]

layer(GatewayEnv, { excludeTestServices: true, timeout: 240_000 })("gateway: the REST API", (it) => {
  it.effect("owners add and remove members by id or login; a project always keeps an owner", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const carol = yield* makeUser("Carol")
      const bobLogin = `bob-${bob.userId.slice(5, 12)}`
      yield* sql`UPDATE users SET login = ${bobLogin} WHERE id = ${bob.userId}`
      const projectId = yield* createProject(alice)
      const members = `/projects/${projectId}/members`

      const initial = yield* api(alice, "GET", members)
      expect(initial.status).toBe(200)
      expect(initial.body.members).toMatchObject([{ userId: alice.userId, role: "owner", displayName: "Alice" }])

      const added = yield* api(alice, "POST", members, { body: { login: bobLogin.toUpperCase(), role: "member" } })
      expect(added.status).toBe(201)
      expect(added.body).toMatchObject({ userId: bob.userId, login: bobLogin, role: "member" })
      expect((yield* api(bob, "GET", `/projects/${projectId}`)).body.role).toBe("member")

      const byMember = yield* api(bob, "POST", members, { body: { userId: carol.userId } })
      expect(byMember.status).toBe(403)
      const unknown = yield* api(alice, "POST", members, { body: { login: "nobody-at-all" } })
      expect(unknown.status).toBe(404)
      expect(unknown.body.code).toBe("not_found")
      const bad = yield* api(alice, "POST", members, { body: { role: "member" } })
      expect(bad.body.code).toBe("invalid_body")
      expect((yield* api(alice, "POST", members, { body: { userId: carol.userId } })).body.role).toBe("member")

      const lastOwner = yield* api(alice, "DELETE", `${members}/${alice.userId}`)
      expect(lastOwner.status).toBe(409)
      expect(lastOwner.body).toMatchObject({ code: "invalid_state", details: { reason: "last_owner" } })
      const demote = yield* api(alice, "POST", members, { body: { userId: alice.userId, role: "member" } })
      expect(demote.status).toBe(409)

      expect((yield* api(alice, "POST", members, { body: { userId: bob.userId, role: "owner" } })).body.role).toBe(
        "owner"
      )
      expect((yield* api(alice, "DELETE", `${members}/${alice.userId}`)).body).toMatchObject({ removed: true })
      expect((yield* api(alice, "GET", `/projects/${projectId}`)).status).toBe(403)
      expect((yield* api(alice, "GET", members)).status).toBe(403)

      const now = yield* api(bob, "GET", members)
      expect(now.body.members.map((m: { userId: string; role: string }) => [m.userId, m.role])).toEqual([
        [bob.userId, "owner"],
        [carol.userId, "member"]
      ])
      expect((yield* api(bob, "DELETE", `${members}/${carol.userId}`)).status).toBe(200)
      expect((yield* api(bob, "DELETE", `${members}/${carol.userId}`)).status).toBe(404)
      expect((yield* api(bob, "DELETE", `${members}/${bob.userId}`)).status).toBe(409)
      expect((yield* api(bob, "GET", `/projects/proj_unknown0000/members`)).status).toBe(404)
      yield* expectNoSecrets([alice, bob, carol])
    })
  )

  it.effect("tasks, sessions, transcripts, workspaces and nodes: list, read, retry, stop and delete", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const projectId = yield* createProject(alice)
      const first = yield* conversation(alice, projectId, "say hello from the first task")
      const second = yield* api(alice, "POST", `/projects/${projectId}/tasks`, { body: { prompt: "say second task" } })
      const secondId = second.body.id as string
      const secondRow = yield* untilTask(secondId, "ends", (r) => TERMINAL.includes(r.status))

      // Tasks: newest first, paged by position, filtered by status; one with its status history.
      const page1 = yield* api(alice, "GET", `/projects/${projectId}/tasks`, { query: { limit: 1 } })
      expect(page1.body.tasks.map((t: { id: string }) => t.id)).toEqual([secondId])
      expect(page1.body.nextBefore).toBe(secondId)
      const page2 = yield* api(alice, "GET", `/projects/${projectId}/tasks`, { query: { limit: 1, before: secondId } })
      expect(page2.body).toMatchObject({ tasks: [{ id: first.taskId }], nextBefore: null })
      const filtered = yield* api(alice, "GET", `/projects/${projectId}/tasks`, {
        query: { status: `${secondRow.status},draft` }
      })
      expect(filtered.body.tasks.map((t: { id: string }) => t.id)).toEqual([secondId])
      expect((yield* api(alice, "GET", `/projects/${projectId}/tasks`, { query: { status: "nope" } })).status).toBe(400)
      const detail = yield* api(alice, "GET", `/tasks/${first.taskId}`)
      expect(detail.status).toBe(200)
      expect(detail.body.statusEvents[0]).toMatchObject({ from: null, to: "queued", reason: "submitted" })
      expect(detail.body.statusEvents.map((e: { to: string }) => e.to)).toContain("in_progress")
      expect((yield* api(alice, "GET", `/tasks/${makeId("task")}`)).status).toBe(404)

      // Sessions with their snapshots; the transcript in pages.
      const sessions = yield* api(alice, "GET", `/projects/${projectId}/sessions`)
      expect(sessions.body.sessions).toHaveLength(2)
      const live = yield* until(alice, `/sessions/${first.sessionId}`, "the answer ended", (b) =>
        b.snapshot?.activity === "idle" ? b : undefined
      )
      expect(live).toMatchObject({ id: first.sessionId, taskId: first.taskId, status: "active" })
      const head = yield* api(alice, "GET", `/sessions/${first.sessionId}/events`, { query: { limit: 2 } })
      expect(head.body.events.map((e: { seq: number }) => e.seq)).toEqual([1, 2])
      expect(head.body.nextAfterSeq).toBe(2)
      const rest = yield* api(alice, "GET", `/sessions/${first.sessionId}/events`, { query: { afterSeq: 2 } })
      expect(rest.body.nextAfterSeq).toBeNull()
      expect(rest.body.events[0].seq).toBe(3)
      expect(rest.body.events.at(-1).seq).toBe(rest.body.lastSeq)
      expect(JSON.stringify([head.body, rest.body])).toContain("hello from the first task")
      const tooMany = yield* api(alice, "GET", `/sessions/${first.sessionId}/events`, { query: { limit: 1001 } })
      expect(tooMany.body.code).toBe("invalid_query")

      // A missed transition: the ledger and KV still say working, the task has ended. Readers never show it.
      const ended = (yield* sql<{ id: string }>`SELECT session_id AS id FROM tasks WHERE id = ${secondId}`)[0]?.id
      yield* sql`UPDATE sessions SET status = 'active' WHERE id = ${ended as string}`
      const kv = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
      yield* kv.put(ended as string, {
        activity: "prompting",
        promptStartedAt: new Date().toISOString(),
        promptEpoch: 9,
        plan: null,
        source: "vm_report",
        reason: null,
        lastSeq: 1,
        updatedAt: new Date().toISOString()
      })
      const shown = yield* api(alice, "GET", `/sessions/${ended}`)
      expect(shown.body.storedStatus).toBe("active")
      expect(shown.body.status).toBe(secondRow.status === "failed" ? "failed" : "stopped")
      expect(shown.body.snapshot.activity).not.toBe("prompting")
      expect(shown.body.snapshot.promptStartedAt).toBeNull()
      const listed = (yield* api(alice, "GET", `/projects/${projectId}/sessions`)).body.sessions.find(
        (s: { id: string }) => s.id === ended
      )
      expect(listed.status).toBe(shown.body.status)
      expect(listed.snapshot.activity).toBe(shown.body.snapshot.activity)

      // Workspaces and their boot logs.
      const workspaces = yield* api(alice, "GET", `/projects/${projectId}/workspaces`)
      expect(workspaces.body.workspaces).toHaveLength(2)
      const ws = yield* api(alice, "GET", `/workspaces/${first.workspaceId}`)
      expect(ws.body).toMatchObject({ id: first.workspaceId, taskId: first.taskId, status: "running" })
      const log = yield* api(alice, "GET", `/workspaces/${first.workspaceId}/bootlog`)
      expect(log.body.lines.length).toBeGreaterThan(0)
      expect(log.body.lines[0]).toMatchObject({ step: expect.any(String), status: expect.any(String) })
      const logPage = yield* api(alice, "GET", `/workspaces/${first.workspaceId}/bootlog`, { query: { limit: 1 } })
      expect(logPage.body.lines).toEqual([log.body.lines[0]])
      expect(logPage.body.nextAfterSeq).toBe(log.body.lines[0].seq)

      // Stop a session: it takes no more prompts.
      const stopped = yield* api(alice, "POST", `/sessions/${first.sessionId}/stop`)
      expect(stopped.status).toBe(200)
      expect(stopped.body).toMatchObject({ status: "stopped", snapshot: { activity: "stopped" } })
      expect(
        (yield* api(alice, "POST", `/sessions/${first.sessionId}/prompt`, { body: { prompt: "say x" } })).status
      ).toBe(409)

      // Stopping a conversation's session ends the conversation: its task is completed (ADR 0019).
      yield* untilTask(first.taskId, "completed by the stop", (r) => r.status === "completed")
      expect((yield* api(alice, "POST", `/tasks/${first.taskId}/cancel`, { body: {} })).status).toBe(409)

      // Cancel and retry: a new run in a new workspace; a second retry is refused while it runs.
      const third = yield* conversation(alice, projectId, "say hello from the third task")
      expect((yield* api(alice, "POST", `/tasks/${third.taskId}/cancel`, { body: {} })).body.status).toBe("cancelled")
      const retried = yield* api(alice, "POST", `/tasks/${third.taskId}/retry`)
      expect(retried.status).toBe(200)
      expect(TERMINAL).not.toContain(retried.body.status)
      const again = yield* api(alice, "POST", `/tasks/${third.taskId}/retry`)
      expect(again.status).toBe(409)
      expect(again.body.code).toBe("invalid_state")
      const rerun = yield* untilTask(third.taskId, "runs again", (r) => r.executionStep === "awaiting_followup")
      expect(rerun.workspaceId).not.toBe(third.workspaceId)

      // Stop its workspace: the node stops it, its session stops, its task is cancelled. Then delete it.
      const stopWs = yield* api(alice, "POST", `/workspaces/${rerun.workspaceId}/stop`)
      expect(stopWs.status).toBe(202)
      expect(["stopping", "stopped"]).toContain(stopWs.body.workspace.status)
      yield* until(alice, `/workspaces/${rerun.workspaceId}`, "the workspace stopped", (b) =>
        b.status === "stopped" ? true : undefined
      )
      yield* until(alice, `/tasks/${third.taskId}`, "the task is cancelled", (b) =>
        b.status === "cancelled" ? true : undefined
      )
      expect((yield* api(alice, "GET", `/sessions/${rerun.sessionId}`)).body.status).toBe("stopped")
      expect((yield* api(alice, "DELETE", `/workspaces/${rerun.workspaceId}`)).status).toBe(202)
      yield* until(alice, `/workspaces/${rerun.workspaceId}`, "the workspace is deleted", (b) =>
        b.status === "deleted" ? true : undefined
      )
      expect((yield* api(alice, "DELETE", `/workspaces/${rerun.workspaceId}`)).status).toBe(202)
      expect((yield* api(alice, "POST", `/workspaces/${rerun.workspaceId}/stop`)).status).toBe(409)

      // Nodes: the one that ran all this, without secrets; stop its work, then retire it.
      const nodes = yield* api(alice, "GET", "/nodes")
      expect(nodes.body.nodes.map((n: { id: string }) => n.id)).toEqual([first.nodeId])
      const node = yield* api(alice, "GET", `/nodes/${first.nodeId}`)
      expect(node.body).toMatchObject({ id: first.nodeId, provider: "local", status: "running", ready: true })
      expect(Object.keys(node.body)).not.toContain("providerRequestId")
      const stopNode = yield* api(alice, "POST", `/nodes/${first.nodeId}/stop`)
      expect(stopNode.status).toBe(202)
      expect(stopNode.body.machine).toBe("running")
      expect(stopNode.body.workspaces).toContain(first.workspaceId)
      yield* until(alice, `/projects/${projectId}/workspaces`, "every workspace stopped", (b) =>
        b.workspaces.every((w: { status: string }) => w.status === "stopped" || w.status === "deleted")
          ? true
          : undefined
      )
      const deleted = yield* api(alice, "DELETE", `/nodes/${first.nodeId}`)
      expect(deleted.status).toBe(202)
      expect(deleted.body).toMatchObject({ machine: "kept", node: { status: "destroying", ready: false } })
      expect(deleted.body.note).toContain("No provider destroys machines yet")
      yield* until(alice, `/projects/${projectId}/workspaces`, "every workspace deleted", (b) =>
        b.workspaces.every((w: { status: string }) => w.status === "deleted") ? true : undefined
      )
      expect((yield* api(alice, "DELETE", `/nodes/${first.nodeId}`)).body.workspaces).toEqual([])
      yield* expectNoSecrets([alice])
    })
  )

  it.effect("notifications: mine only, newest first, unread counted, marked read one by one or all at once", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const mine = yield* createProject(alice)
      const bobs = yield* createProject(bob)
      const ids = [makeId("ntf"), makeId("ntf"), makeId("ntf"), makeId("ntf"), makeId("ntf")]
      const insert = (id: string, userId: string, projectId: string, minutesAgo: number, read: boolean) =>
        sql`
          INSERT INTO notifications (id, user_id, project_id, type, priority, title, source_event_id, created_at, read_at)
          VALUES (${id}, ${userId}, ${projectId}, 'task_complete', true, ${`n ${id}`}, ${id},
            now() - make_interval(mins => ${minutesAgo}), ${read ? new Date() : null})`
      yield* insert(ids[0] as string, alice.userId, mine, 30, true)
      yield* insert(ids[1] as string, alice.userId, mine, 20, false)
      yield* insert(ids[2] as string, alice.userId, mine, 10, false)
      yield* insert(ids[3] as string, bob.userId, bobs, 5, false)
      // About a project Alice is not a member of (any more): not hers to see.
      yield* insert(ids[4] as string, alice.userId, bobs, 1, false)

      const all = yield* api(alice, "GET", "/notifications")
      expect(all.status).toBe(200)
      expect(all.body.notifications.map((n: { id: string }) => n.id)).toEqual([ids[2], ids[1], ids[0]])
      expect(all.body.unreadCount).toBe(2)
      const unread = yield* api(alice, "GET", "/notifications", { query: { unread: "true" } })
      expect(unread.body.notifications.map((n: { id: string }) => n.id)).toEqual([ids[2], ids[1]])
      const paged = yield* api(alice, "GET", "/notifications", { query: { limit: 1, before: ids[2] as string } })
      expect(paged.body).toMatchObject({ notifications: [{ id: ids[1] }], nextBefore: ids[1] })

      const read = yield* api(alice, "POST", `/notifications/${ids[1]}/read`)
      expect(read.status).toBe(200)
      expect(read.body.readAt).not.toBeNull()
      expect((yield* api(alice, "GET", "/notifications")).body.unreadCount).toBe(1)
      expect((yield* api(alice, "POST", `/notifications/${ids[3]}/read`)).status).toBe(404)
      expect((yield* api(alice, "POST", `/notifications/${ids[4]}/read`)).status).toBe(404)
      expect((yield* api(alice, "POST", `/notifications/${makeId("ntf")}/read`)).status).toBe(404)
      const allRead = yield* api(alice, "POST", "/notifications/read-all")
      expect(allRead.body).toEqual({ marked: 1, unreadCount: 0 })
      const untouched = yield* sql<{ readAt: Date | null }>`
        SELECT read_at FROM notifications WHERE id IN (${ids[3] as string}, ${ids[4] as string})`
      expect(untouched.map((r) => r.readAt)).toEqual([null, null])
      yield* expectNoSecrets([alice, bob])
    })
  )

  it.effect("notifications: the unread count by tab counts all my unread ones, not a page of them", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const mine = yield* createProject(alice)
      const bobs = yield* createProject(bob)
      const insert = (userId: string, projectId: string, type: string, priority: boolean, read: boolean) => {
        const id = makeId("ntf")
        return sql`
          INSERT INTO notifications (id, user_id, project_id, type, priority, title, source_event_id, read_at)
          VALUES (${id}, ${userId}, ${projectId}, ${type}, ${priority}, ${`n ${id}`}, ${id}, ${read ? new Date() : null})`
      }
      expect((yield* api(alice, "GET", "/notifications/unread-count")).body).toEqual({
        unread: 0,
        priority: 0,
        updates: 0
      })
      // More than the largest page (200) and the bell's 99+.
      yield* sql`
        INSERT INTO notifications (id, user_id, project_id, type, priority, title, source_event_id)
        SELECT id, ${alice.userId}, ${mine}, 'task_complete', true, 'many', id
        FROM (SELECT 'ntf_' || md5(random()::text || i) AS id FROM generate_series(1, 230) AS i) AS many`
      for (let i = 0; i < 3; i++) yield* insert(alice.userId, mine, "progress", false, false)
      yield* insert(alice.userId, mine, "task_complete", true, true)
      yield* insert(bob.userId, bobs, "task_complete", true, false)
      // About a project Alice is not a member of: not counted, as it is not listed.
      yield* insert(alice.userId, bobs, "needs_input", true, false)
      const counts = yield* api(alice, "GET", "/notifications/unread-count")
      expect(counts.status).toBe(200)
      expect(counts.body).toEqual({ unread: 233, priority: 230, updates: 3 })
      const first = (yield* api(alice, "GET", "/notifications", { query: { limit: 1, unread: "true" } })).body
        .notifications[0]
      yield* api(alice, "POST", `/notifications/${first.id}/read`)
      expect((yield* api(alice, "GET", "/notifications/unread-count")).body.unread).toBe(232)
      expect((yield* api(bob, "GET", "/notifications/unread-count")).body).toEqual({
        unread: 1,
        priority: 1,
        updates: 0
      })
      expect((yield* http("GET", "/api/v1/notifications/unread-count")).status).toBe(401)
    })
  )

  it.effect("a database busy for 3.5 s is not one that is down: requests wait for a connection and are answered", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      // Every pooled connection held, as a burst of slow queries would: the gateway's probe waits with the rest.
      const busy = yield* Effect.forEach(Array.from({ length: Sql.poolSize() }), () => sql`SELECT pg_sleep(3.5)`, {
        concurrency: "unbounded",
        discard: true
      }).pipe(Effect.fork)
      const answers: Array<{ status: number; ms: number }> = []
      const started = Date.now()
      while (Date.now() - started < 5_000) {
        const asked = Date.now()
        const me = yield* api(alice, "GET", "/me")
        answers.push({ status: me.status, ms: Date.now() - asked })
      }
      yield* Fiber.join(busy)
      const slowest = Math.max(...answers.map((a) => a.ms))
      const refused = answers.filter((a) => a.status !== 200)
      console.log(
        `GET /me in 5 s from a busy pool: ${answers.length} answers, slowest ${slowest} ms, ${refused.length} not 200`
      )
      // It did wait (the pool was busy past the probe's 2 s timeout), and was never told the database is down
      // (before, every answer for 2 s after the wait was 503 'the database is unavailable').
      expect(slowest).toBeGreaterThan(2_000)
      expect(refused).toEqual([])
    })
  )
})
