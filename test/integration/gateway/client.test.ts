import { layer } from "@effect/vitest"
import { Api } from "@sam/bus"
import { Client as ClientModule } from "@sam/gateway/client"
import { Effect } from "effect"
import { describe, expect } from "vitest"
import { nodeTransport } from "../../../infra/src/HttpTransport.js"
import { freePort, GatewayEnv, GatewayUrl, makeUser } from "../../src/index.js"

const failure = <A>(effect: Effect.Effect<A, ClientModule.ApiClientError>) => Effect.flip(effect)

// The browser's (and the default) transport, fetch, and the CLI's, node:http: the same calls, the same answers.
const transports = [
  ["fetch", ClientModule.fetchTransport],
  ["node:http", nodeTransport]
] as const

layer(GatewayEnv, { excludeTestServices: true, timeout: 60_000 })("gateway: the typed TypeScript client", (it) => {
  for (const [name, transport] of transports) {
    const Client = {
      ...ClientModule,
      make: (options: ClientModule.ClientOptions) => ClientModule.make({ transport, ...options })
    }
    describe(`over ${name}`, () => {
      it.effect("calls endpoints with path parameters and JSON bodies, and parses the answers", () =>
        Effect.gen(function* () {
          const alice = yield* makeUser("Alice")
          const api = Client.make({ baseUrl: `${yield* GatewayUrl}/`, token: alice.token })
          const me = yield* api.call(Api.AuthEndpoints.me)
          expect(me).toMatchObject({ userId: alice.userId, via: "token" })

          const project = yield* api.call(Api.ProjectEndpoints.createProject, {
            body: { name: "demo", repoUrl: "https://example.com/demo.git" }
          })
          expect(project).toMatchObject({ name: "demo", role: "owner", defaultBranch: "main", ownerId: alice.userId })
          const got = yield* api.call(Api.ProjectEndpoints.getProject, { params: { projectId: project.id } })
          expect(got).toEqual(project)
          const { projects } = yield* api.call(Api.ProjectEndpoints.listProjects)
          expect(projects.map((p) => p.id)).toEqual([project.id])

          // Query parameters go into the search string (a page of a project's tasks, filtered by status).
          const page = yield* api.call(Api.TaskEndpoints.listTasks, {
            params: { projectId: project.id },
            query: { status: "queued,in_progress", limit: 5 }
          })
          expect(page).toEqual({ tasks: [], nextBefore: null })
          const badQuery = yield* failure(
            api.call(Api.TaskEndpoints.listTasks, { params: { projectId: project.id }, query: { status: "bogus" } })
          )
          expect(badQuery).toMatchObject({ status: 400, code: "invalid_query" })

          const token = yield* api.call(Api.AuthEndpoints.createToken, { body: { name: "ci", expiresInDays: 2 } })
          expect(token.token).toMatch(/^sam_pat_/)
          const revoked = yield* api.call(Api.AuthEndpoints.revokeToken, { params: { tokenId: token.id } })
          expect(revoked.revokedAt).not.toBeNull()
        })
      )

      it.effect("fails with the gateway's status, code, message and details", () =>
        Effect.gen(function* () {
          const base = yield* GatewayUrl
          const alice = yield* makeUser("Alice")
          const bob = yield* makeUser("Bob")
          const asAlice = Client.make({ baseUrl: base, token: alice.token })
          const project = yield* asAlice.call(Api.ProjectEndpoints.createProject, {
            body: { name: "p", repoUrl: "https://example.com/p.git" }
          })

          const forbidden = yield* failure(
            Client.make({ baseUrl: base, token: bob.token }).call(Api.ProjectEndpoints.getProject, {
              params: { projectId: project.id }
            })
          )
          expect(forbidden).toBeInstanceOf(Client.ApiClientError)
          expect(forbidden).toMatchObject({ _tag: "ApiClientError", status: 403, code: "forbidden" })
          expect(forbidden.message).toContain(project.id)

          const anonymous = yield* failure(Client.make({ baseUrl: base }).call(Api.ProjectEndpoints.listProjects))
          expect(anonymous).toMatchObject({ status: 401, code: "unauthenticated" })

          const missing = yield* failure(
            asAlice.call(Api.ProjectEndpoints.getProject, { params: { projectId: "proj_nosuchproject" } })
          )
          expect(missing).toMatchObject({ status: 404, code: "not_found", message: "no project proj_nosuchproject" })

          const invalid = yield* failure(
            asAlice.call(Api.ProjectEndpoints.createProject, { body: { name: "", repoUrl: "/x" } })
          )
          expect(invalid).toMatchObject({ status: 400, code: "invalid_body" })
          expect(invalid.details).toEqual([expect.objectContaining({ path: "name" })])

          // A path parameter is encoded, so it cannot reach another route.
          const sneaky = yield* failure(
            asAlice.call(Api.ProjectEndpoints.getProject, { params: { projectId: "../tokens" } })
          )
          expect(sneaky).toMatchObject({ status: 400, code: "invalid_params" })
        })
      )

      it.effect("says when the gateway cannot be reached", () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const error = yield* failure(
            Client.make({ baseUrl: `http://127.0.0.1:${port}`, token: "sam_pat_x" }).call(Api.AuthEndpoints.me)
          )
          expect(error).toMatchObject({ status: 0, code: "unreachable" })
          expect(error.message).toContain(`http://127.0.0.1:${port}`)
          expect(error.message).toMatch(/ECONNREFUSED/)
        })
      )
    })
  }
})
