import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { LocalNodes } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { GatewayEnv, makeUser } from "../../src/index.js"
import { api, createProject, expectNoSecrets, recorded, untilTask } from "../gateway/RestKit.js"

process.env.SAM_MASTER_KEY ??= Buffer.alloc(32, 7).toString("base64")

const SECRET = "s3cr3t-profile-value-9f2c"
const FILE_SECRET = "file-secret-content-77ab"
const KEY = "sk-ant-api03-CREDENTIAL-TEST-dmFsdWU"

layer(GatewayEnv, { excludeTestServices: true, timeout: 180_000 })(
  "agent profiles, runtime assets, credentials",
  (it) => {
    it.effect(
      "project and profile runtime assets merge with the profile winning; secrets are ciphertext and masked",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const alice = yield* makeUser("Alice")
          const projectId = yield* createProject(alice, "assets")
          const profile = yield* api(alice, "POST", `/projects/${projectId}/agent-profiles`, {
            body: { name: "demo-profile", agent: "demo", taskMode: "conversation", systemPromptAppend: "say appended" }
          })
          expect(profile.status).toBe(201)
          const profileId = profile.body.id as string
          const project = `/projects/${projectId}/runtime`
          const own = `/projects/${projectId}/agent-profiles/${profileId}/runtime`
          for (const [path, key, value, isSecret] of [
            [project, "FOO", "1", false],
            [project, "ONLY_PROJECT", "p", false],
            [own, "FOO", "2", false],
            [own, "ONLY_PROFILE", SECRET, true]
          ] as const) {
            const set = yield* api(alice, "PUT", `${path}/env`, { body: { key, value, isSecret } })
            expect(set.status).toBe(200)
          }
          for (const [path, file, content, isSecret] of [
            [project, "conf/app.txt", "from project", false],
            [project, "~/.config/only-project", "project file", false],
            [own, "conf/app.txt", "from profile", false],
            [own, "~/.config/only-profile", FILE_SECRET, true]
          ] as const) {
            const set = yield* api(alice, "PUT", `${path}/files`, { body: { path: file, content, isSecret } })
            expect(set.status).toBe(200)
          }
          const shown = yield* api(alice, "GET", own)
          expect(shown.body.envVars).toEqual([
            { key: "FOO", value: "2", isSecret: false, hasValue: true },
            { key: "ONLY_PROFILE", value: null, isSecret: true, hasValue: true }
          ])
          expect(shown.body.files).toContainEqual({
            path: "~/.config/only-profile",
            content: null,
            isSecret: true,
            hasValue: true
          })

          const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: {
              prompt:
                'run echo "FOO=$FOO P=$ONLY_PROJECT S=$ONLY_PROFILE"; cat conf/app.txt; echo; cat ~/.config/only-project; echo; cat ~/.config/only-profile',
              profileId
            }
          })
          expect(created.status).toBe(201)
          expect(created.body).toMatchObject({ agent: "demo", mode: "conversation" })
          const row = yield* untilTask(
            created.body.id,
            "awaits a follow-up",
            (r) => r.executionStep === "awaiting_followup"
          )
          const events = yield* sql<{ payload: unknown }>`
        SELECT payload FROM session_events WHERE session_id = ${row.sessionId} ORDER BY seq`
          const text = JSON.stringify(events)
          expect(text).toContain(`FOO=2 P=p S=${SECRET}`)
          expect(text).toContain("from profile")
          expect(text).toContain("project file")
          expect(text).toContain(FILE_SECRET)
          // the profile's system-prompt addition reached the agent with the first prompt
          expect(text).toContain("appended")

          // The agent cannot read the node's curve key nor the session records holding the sealed launch.
          const { dir } = yield* LocalNodes
          const nodeData = join(dir, row.nodeId!, "data")
          const seed = yield* Effect.promise(() => readFile(join(nodeData, "node.xkey"), "utf8"))
          const attack = yield* api(alice, "POST", `/sessions/${row.sessionId}/prompt`, {
            body: {
              prompt: `run cat ${join(nodeData, "node.xkey")} ${join(nodeData, "sessions", `${row.sessionId}.json`)}`
            }
          })
          expect(attack.status).toBe(202)
          const attempt = yield* waitUntil(
            "the attack's turn ends",
            sql<{ payload: unknown }>`
          SELECT payload FROM session_events WHERE session_id = ${row.sessionId} ORDER BY seq`.pipe(
              Effect.map((rows) => {
                const all = JSON.stringify(rows)
                return all.split("turn-ended").length > 2 ? all : undefined
              })
            ),
            { timeout: "30 seconds" }
          )
          // the command's output as the agent streamed it (a line may come in several chunks)
          const output = (JSON.parse(attempt) as Array<{ payload: { type: string; content?: unknown } }>)
            .filter((row) => row.payload.type === "tool-call-update")
            .flatMap((row) => (row.payload.content ?? []) as Array<{ content?: { text?: string } }>)
            .map((part) => part.content?.text ?? "")
            .join("")
          expect(output).toMatch(/node\.xkey: Permission denied/)
          expect(output).toMatch(/\.json: Permission denied/)
          expect(attempt).not.toContain(seed.trim())

          // At rest the secrets are ciphertext; the plain values are stored as they are.
          const stored = yield* sql<{ value: string; isSecret: boolean }>`
        SELECT value, is_secret FROM runtime_env_vars WHERE project_id = ${projectId} ORDER BY env_key`
          expect(stored.find((r) => r.isSecret)?.value).toMatch(/^v1\./)
          const files = yield* sql<{ content: string }>`SELECT content FROM runtime_files WHERE is_secret`
          expect(files.every((f) => f.content.startsWith("v1.") && !f.content.includes(FILE_SECRET))).toBe(true)
          // The session's start went out with its launch sealed: the outbox row holds no secret (the agent's own output
          // above does, because this prompt printed it).
          const starts = yield* sql<{ text: string }>`
        SELECT o::text AS text FROM actor_outbox o WHERE o::text LIKE '%cmd.session.start%'`
          expect(starts.length).toBe(1)
          expect(starts[0]!.text).toContain('""launch""')
          for (const secret of [SECRET, FILE_SECRET, "from profile"]) expect(starts[0]!.text).not.toContain(secret)
        })
    )

    it.effect("validation: a bad key or path is 400; another project's profile is 404", () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const bob = yield* makeUser("Bob")
        const mine = yield* createProject(alice, "mine")
        const theirs = yield* createProject(bob, "theirs")
        const profile = yield* api(bob, "POST", `/projects/${theirs}/agent-profiles`, {
          body: { name: "p", agent: "demo" }
        })
        const theirProfile = profile.body.id as string
        const bad = yield* api(alice, "PUT", `/projects/${mine}/runtime/env`, { body: { key: "1BAD", value: "x" } })
        expect(bad.status).toBe(400)
        for (const path of ["../escape", "a/../../b", "/etc/passwd", "~/../x", "./a"]) {
          const refused = yield* api(alice, "PUT", `/projects/${mine}/runtime/files`, { body: { path, content: "x" } })
          expect(refused.status, path).toBe(400)
        }
        const foreign = yield* api(alice, "GET", `/projects/${mine}/agent-profiles/${theirProfile}/runtime`)
        expect(foreign.status).toBe(404)
        const foreignTask = yield* api(alice, "POST", `/projects/${mine}/tasks`, {
          body: { prompt: "say hi", profileId: theirProfile }
        })
        expect(foreignTask.status).toBe(404)
        const notMember = yield* api(alice, "GET", `/projects/${theirs}/agent-profiles`)
        expect(notMember.status).toBe(403)
        const dup = yield* api(bob, "POST", `/projects/${theirs}/agent-profiles`, {
          body: { name: "p", agent: "demo" }
        })
        expect(dup.status).toBe(409)
      })
    )

    it.effect("credentials: stored encrypted, listed as hasValue only, rotated and revoked; kinds are checked", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const carol = yield* makeUser("Carol")
        const catalog = yield* api(carol, "GET", "/agents")
        expect(catalog.body.agents.map((a: { id: string }) => a.id)).toEqual([
          "demo",
          "claude-code",
          "codex",
          "gemini",
          "opencode"
        ])
        const wrongKind = yield* api(carol, "PUT", "/agent-credentials/gemini", {
          body: { kind: "auth-file", value: "{}" }
        })
        expect(wrongKind.status).toBe(400)
        const notJson = yield* api(carol, "PUT", "/agent-credentials/codex", {
          body: { kind: "auth-file", value: "nope" }
        })
        expect(notJson.status).toBe(400)
        const set = yield* api(carol, "PUT", "/agent-credentials/claude-code", {
          body: { kind: "api-key", value: KEY }
        })
        expect(set.status).toBe(200)
        const first = yield* sql<{
          sealed: string
        }>`SELECT sealed FROM agent_credentials WHERE user_id = ${carol.userId}`
        expect(first[0]?.sealed).toMatch(/^v1\./)
        expect(first[0]?.sealed).not.toContain(KEY)
        const rotated = yield* api(carol, "PUT", "/agent-credentials/claude-code", {
          body: { kind: "oauth-token", value: `${KEY}-rotated` }
        })
        expect(rotated.body).toMatchObject({ kind: "oauth-token", hasValue: true })
        const auth = yield* api(carol, "PUT", "/agent-credentials/codex", {
          body: { kind: "auth-file", value: JSON.stringify({ OPENAI_API_KEY: KEY }) }
        })
        expect(auth.status).toBe(200)
        const listed = yield* api(carol, "GET", "/agent-credentials")
        expect(listed.body.credentials.map((c: { agent: string; kind: string }) => [c.agent, c.kind])).toEqual([
          ["claude-code", "oauth-token"],
          ["codex", "auth-file"]
        ])
        const revoked = yield* api(carol, "DELETE", "/agent-credentials/claude-code")
        expect(revoked.status).toBe(200)
        const again = yield* api(carol, "DELETE", "/agent-credentials/claude-code")
        expect(again.status).toBe(404)
        // no response carried the key, and other users see none of Carol's credentials
        const dave = yield* makeUser("Dave")
        const daves = yield* api(dave, "GET", "/agent-credentials")
        expect(daves.body.credentials).toEqual([])
        yield* expectNoSecrets([carol, dave])
        for (const response of recorded()) expect(response.text.includes(KEY), response.path).toBe(false)
        const ledger = yield* sql<{ text: string }>`SELECT string_agg(c::text, ' ') AS text FROM agent_credentials c`
        expect(ledger[0]?.text ?? "").not.toContain(KEY)
      })
    )
  }
)
