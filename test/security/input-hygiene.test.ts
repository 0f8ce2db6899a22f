import { join } from "node:path"
import { layer } from "@effect/vitest"
import { Gateway } from "@sam/gateway"
import { Effect } from "effect"
import { expect } from "vitest"
import { isOpen, rawClient } from "../integration/gateway/FeedTestKit.js"
import { api, conversation, createProject } from "../integration/gateway/RestKit.js"
import { waitUntil } from "../src/Env.js"
import { GatewayEnv, GatewayUrl, http, makeUser, tempDir } from "../src/index.js"
import { makeRepo } from "../src/Repo.js"
import { makePasswordUser } from "./SecurityKit.js"

const NUL = "\u0000"

/** Every string anywhere in a JSON value. */
const stringsOf = (value: unknown): Array<string> =>
  typeof value === "string"
    ? [value]
    : Array.isArray(value)
      ? value.flatMap(stringsOf)
      : value !== null && typeof value === "object"
        ? Object.values(value).flatMap(stringsOf)
        : []

const fieldsOf = (body: { details?: Array<{ path: string }> }) => (body.details ?? []).map((d) => d.path)

layer(GatewayEnv, { excludeTestServices: true, timeout: 180_000 })("security: input hygiene", (it) => {
  it.effect("a NUL where a person types a name, login or reason is a 400 naming the field", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const projectId = yield* createProject(alice)
      const cases: Array<{ method: string; path: string; body: unknown; field: string; token?: boolean }> = [
        {
          method: "POST",
          path: "/projects",
          body: { name: `a${NUL}b`, repoUrl: "https://example.com/r.git" },
          field: "name"
        },
        {
          method: "POST",
          path: "/projects",
          body: { name: "ok", repoUrl: `https://example.com/r${NUL}.git` },
          field: "repoUrl"
        },
        { method: "POST", path: "/tokens", body: { name: `ci${NUL}` }, field: "name" },
        { method: "POST", path: `/projects/${projectId}/members`, body: { login: `bob${NUL}` }, field: "login" },
        {
          method: "POST",
          path: "/tasks/task_nonexistent0000000000/cancel",
          body: { reason: `no${NUL}` },
          field: "reason"
        },
        { method: "POST", path: "/auth/login", body: { login: `owner${NUL}`, password: "x" }, field: "login" }
      ]
      for (const c of cases) {
        const answer = yield* api(alice, c.method, c.path, { body: c.body })
        expect(answer.status, `${c.method} ${c.path}: ${JSON.stringify(answer.body)}`).toBe(400)
        expect(answer.body.code).toBe("invalid_body")
        expect(JSON.stringify(answer.body.details)).toContain("NUL")
        expect(
          fieldsOf(answer.body).some((p) => p.endsWith(c.field)),
          JSON.stringify(answer.body)
        ).toBe(true)
      }
      const projects = yield* api(alice, "GET", "/projects")
      expect(projects.body.projects).toHaveLength(1)
    })
  )

  it.effect(
    "task and session prompts and agent output with NUL characters come back exactly, over REST and the feed",
    () =>
      Effect.gen(function* () {
        const url = yield* GatewayUrl
        const alice = yield* makeUser("Alice")
        const projectId = yield* createProject(alice)
        // A task's prompt is data: kept exactly, NUL and the escape character itself (ADR 0017).
        const first = `say hel${NUL}lo \uE000${"\uE000"}0 end`
        const { sessionId, taskId } = yield* conversation(alice, projectId, first)
        const task = yield* api(alice, "GET", `/tasks/${taskId}`)
        expect(task.body.prompt).toBe(first)
        // The prompt itself holds a NUL, the agent says one back, and a command prints one.
        const prompt = `say nul${NUL}said\nrun printf 'printed\\0nul'`
        const prompted = yield* api(alice, "POST", `/sessions/${sessionId}/prompt`, { body: { prompt } })
        expect(prompted.status).toBe(202)

        const transcript = yield* waitUntil(
          "the command's output in the transcript",
          api(alice, "GET", `/sessions/${sessionId}/events`, { query: { afterSeq: 0, limit: 500 } }).pipe(
            Effect.map((r) => {
              const texts = stringsOf(r.body.events)
              return texts.includes(`printed${NUL}nul`) && texts.some((t) => t.includes(`nul${NUL}said`))
                ? r.body
                : undefined
            })
          ),
          { timeout: "60 seconds", every: "200 millis" }
        )
        // Nothing was dropped: the seqs run 1..lastSeq without a gap.
        const seqs = (transcript.events as Array<{ seq: number }>).map((e) => e.seq)
        expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1))

        // The feed's catch-up gives the same events, the same strings.
        const client = yield* rawClient(url, alice.token)
        if (!isOpen(client)) throw new Error("feed refused")
        client.send({ type: "subscribe", sessions: [{ sessionId, afterSeq: 0 }] })
        yield* waitUntil(
          "caught-up",
          Effect.sync(() => client.of("caught-up")[0])
        )
        const fed = client.of("session.event").filter((f) => f.seq <= seqs.length)
        expect(fed.map((f) => f.seq)).toEqual(seqs)
        expect(fed.map((f) => f.event)).toEqual((transcript.events as Array<{ event: unknown }>).map((e) => e.event))
        expect(stringsOf(fed.map((f) => f.event))).toContain(`printed${NUL}nul`)
        client.socket.close()
      })
  )

  it.scoped("only the local owner may create a project on a local path (SAM_ALLOW_LOCAL_REPOS=owner)", () =>
    Effect.gen(function* () {
      const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0, localRepos: "owner" })
      const at = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.provideService(GatewayUrl, url))
      const victim = makeRepo(join(yield* Effect.promise(() => tempDir("sam-victim-")), "repo"))
      const mallory = yield* makeUser("Mallory")
      for (const repoUrl of [victim, `file://${victim}`]) {
        const refused = yield* at(
          http("POST", "/api/v1/projects", { token: mallory.token, body: { name: "steal", repoUrl } })
        )
        expect(refused.status, JSON.stringify(refused.body)).toBe(403)
        expect(refused.body.message).toContain("SAM_ALLOW_LOCAL_REPOS")
      }
      // The owner account (login `owner`, as `sam up` creates it) may.
      yield* makePasswordUser("owner", "owner-password-1")
      const session = yield* at(
        http("POST", "/api/v1/auth/login", { body: { login: "owner", password: "owner-password-1" } })
      )
      const mine = yield* at(
        http("POST", "/api/v1/projects", {
          token: session.body.sessionToken,
          body: { name: "mine", repoUrl: victim }
        })
      )
      expect(mine.status, JSON.stringify(mine.body)).toBe(201)
      // Remote URLs stay open to everyone.
      const remote = yield* at(
        http("POST", "/api/v1/projects", {
          token: mallory.token,
          body: { name: "remote", repoUrl: "git@github.com:acme/widgets.git" }
        })
      )
      expect(remote.status).toBe(201)
    })
  )

  it.scoped("with SAM_ALLOW_LOCAL_REPOS=none nobody may, not even the owner", () =>
    Effect.gen(function* () {
      const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0, localRepos: "none" })
      const alice = yield* makeUser("Alice")
      const refused = yield* http("POST", "/api/v1/projects", {
        token: alice.token,
        body: { name: "x", repoUrl: "/etc" }
      }).pipe(Effect.provideService(GatewayUrl, url))
      expect(refused.status).toBe(403)
      expect(refused.body.message).toContain("none")
    })
  )

  it.effect("repository URLs that would run commands, read options or leak credentials are refused", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const refused = [
        "ext::sh -c touch% /tmp/pwned",
        "fd::17",
        "-uhelp",
        "--upload-pack=touch /tmp/pwned",
        "https://alice:ghp_secret123@github.com/acme/widgets.git",
        "https://ghp_secret123@github.com/acme/widgets.git",
        "ssh://git:hunter2@example.com/acme/widgets.git",
        "ftp://example.com/r.git",
        "http://example.com/r.git",
        "git@-oProxyCommand=touch:x",
        "relative/path"
      ]
      for (const repoUrl of refused) {
        const answer = yield* api(alice, "POST", "/projects", { body: { name: "x", repoUrl } })
        expect(answer.status, `${repoUrl}: ${JSON.stringify(answer.body)}`).toBe(400)
        expect(JSON.stringify(answer.body)).not.toContain("ghp_secret123")
        expect(JSON.stringify(answer.body)).not.toContain("hunter2")
      }
      const accepted = [
        "https://github.com/acme/widgets.git",
        "ssh://git@example.com:2222/acme/widgets.git",
        "git@github.com:acme/widgets.git",
        "http://127.0.0.1:9418/widgets.git"
      ]
      for (const repoUrl of accepted) {
        const answer = yield* api(alice, "POST", "/projects", { body: { name: "ok", repoUrl } })
        expect(answer.status, `${repoUrl}: ${JSON.stringify(answer.body)}`).toBe(201)
      }
    })
  )
})
