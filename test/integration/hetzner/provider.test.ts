import { randomBytes } from "node:crypto"
import { FetchHttpClient } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { ControlPlane } from "@sam/actors"
import { makeId } from "@sam/bus"
import { Hetzner, NodeProviders } from "@sam/infra"
import { Migrations, SecretBox } from "@sam/sql"
import { Cause, Effect, Fiber, Layer, Logger } from "effect"
import { afterAll, beforeAll, expect } from "vitest"
import { NodeBoot } from "../../../infra/src/cloud/NodeBoot.js"
import { freshDatabase, natsAdmin, sqlLayer, waitUntil } from "../../src/Env.js"
import { capacityError, startFakeHetzner } from "../../src/FakeHetzner.js"

const TOKEN = `hz-${randomBytes(24).toString("hex")}`
const OTHER_TOKEN = `hz-${randomBytes(24).toString("hex")}`
let fake: Awaited<ReturnType<typeof startFakeHetzner>>
const saved = { ...process.env }
beforeAll(async () => {
  fake = await startFakeHetzner({ tokens: [TOKEN, OTHER_TOKEN] })
  process.env.SAM_MASTER_KEY = randomBytes(32).toString("base64")
  process.env.SAM_RECONCILE_SETTLE_MS = "0"
  process.env.SAM_RECONCILE_INTERVAL_MS = "200"
})
afterAll(async () => {
  for (const k of ["SAM_MASTER_KEY", "SAM_RECONCILE_SETTLE_MS", "SAM_RECONCILE_INTERVAL_MS"]) {
    if (saved[k] === undefined) delete process.env[k]
    else process.env[k] = saved[k]
  }
  await fake?.close()
})

/** The boot's user data stands in here (its own tests cover it): a marker the test can look for. */
const TestBoot = Layer.succeed(
  NodeBoot,
  NodeBoot.of({ userData: (node) => Effect.succeed(`#cloud-config\n# node ${node.nodeId}\n`) })
)
const Db = Layer.unwrapEffect(
  Effect.promise(freshDatabase).pipe(
    Effect.map(sqlLayer),
    Effect.tap((sql) => Migrations.migrate().pipe(Effect.provide(sql)))
  )
)
const Client = Layer.unwrapEffect(
  Effect.sync(() => Hetzner.Client.layer({ baseUrl: fake.url }).pipe(Layer.provide(FetchHttpClient.layer)))
)
const Env = Layer.mergeAll(Db, Client, TestBoot)

const fastPolicy = { initialDelayMs: 10, maxDelayMs: 40, maxAttempts: 3, budgetMs: 10_000, placementRetryDelayMs: 5 }

/** A user with a sealed Hetzner token and a Hetzner node in the ledger, as the node actor leaves it. */
const seedNode = (options: { size?: string; explicit?: boolean; token?: string | null } = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const userId = makeId("user")
    const nodeId = makeId("node")
    yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'Hetzner user')`
    if (options.token !== null) {
      const sealed = yield* SecretBox.seal(options.token ?? TOKEN)
      yield* sql`INSERT INTO cloud_credentials (user_id, provider, sealed, validated_at) VALUES (${userId}, 'hetzner', ${sealed}, now())`
    }
    yield* sql`INSERT INTO nodes (id, owner_id, provider, status) VALUES (${nodeId}, ${userId}, 'hetzner', 'provisioning')`
    yield* sql`
      INSERT INTO node_machines (node_id, provider, size, size_explicit, location, image)
      VALUES (${nodeId}, 'hetzner', ${options.size ?? "medium"}, ${options.explicit ?? false}, 'nbg1', 'docker-ce')`
    return { userId, nodeId }
  })

const serversOf = (nodeId: string, token = TOKEN) => fake.servers(token).filter((s) => s.labels["sam-node"] === nodeId)
const creates = () => fake.requests.filter((r) => r.method === "POST" && r.path === "/servers").length

layer(Env, { excludeTestServices: true, timeout: 60_000 })("Hetzner provider", (it) => {
  it.scoped("provision creates one labelled server with the boot's user data, recorded before and after", () =>
    Effect.gen(function* () {
      const provider = yield* Hetzner.Provider.make({ policy: fastPolicy })
      const { userId, nodeId } = yield* seedNode()
      const result = yield* provider.provisionNow(nodeId)
      expect(result).toMatch(/^server \d+ created$/)
      const [server] = serversOf(nodeId)
      expect(server?.labels).toEqual({
        "sam-node": nodeId,
        "sam-owner": userId,
        "sam-installation": provider.installation,
        managed: "sam"
      })
      expect(server?.server_type).toBe("cx33")
      expect(server?.location).toBe("nbg1")
      expect(fake.userData(server!.id)).toContain(`# node ${nodeId}`)
      const sql = yield* SqlClient.SqlClient
      const ledger = yield* sql<{ status: string; serverId: string }>`
        SELECT status, server_id::text AS server_id FROM provider_requests WHERE node_id = ${nodeId}`
      expect(ledger).toEqual([{ status: "succeeded", serverId: String(server!.id) }])
      const [machine] = yield* sql<{ serverId: string; serverType: string }>`
        SELECT server_id::text AS server_id, server_type FROM node_machines WHERE node_id = ${nodeId}`
      expect(machine).toEqual({ serverId: String(server!.id), serverType: "cx33" })
      // Provisioned again (a redelivery, a restart): the server is found, none is created.
      const before = creates()
      expect(yield* provider.provisionNow(nodeId)).toBe(`server ${server!.id} exists`)
      expect(creates()).toBe(before)
    })
  )

  it.scoped(
    "a create whose answer is lost (connection reset after the server was made) does not make a second server",
    () =>
      Effect.gen(function* () {
        const provider = yield* Hetzner.Provider.make({ policy: fastPolicy })
        const { nodeId } = yield* seedNode()
        fake.dropNextCreateResponse()
        const before = creates()
        yield* provider.provisionNow(nodeId)
        expect(creates() - before).toBe(1)
        expect(serversOf(nodeId)).toHaveLength(1)
        const sql = yield* SqlClient.SqlClient
        const ledger = yield* sql<{ status: string; serverId: string | null }>`
        SELECT status, server_id::text AS server_id FROM provider_requests WHERE node_id = ${nodeId}`
        expect(ledger).toEqual([{ status: "unknown", serverId: String(serversOf(nodeId)[0]!.id) }])
      })
  )

  it.scoped(
    "a crash between 'request sent' and 'response stored': the next control plane finds the server by its labels",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        // The first control plane: it provisions, and dies as soon as Hetzner has made the server
        // (its fiber is interrupted in the server-created hook, before the answer is stored).
        const first = yield* Hetzner.Provider.make({ policy: fastPolicy })
        const { nodeId } = yield* seedNode()
        let crashed: (() => void) | undefined
        const made = new Promise<void>((done) => {
          crashed = done
        })
        fake.onServerCreated((server) => {
          if (server.labels["sam-node"] === nodeId) crashed?.()
        })
        const fiber = yield* Effect.fork(first.provisionNow(nodeId))
        yield* Effect.promise(() => made)
        yield* Fiber.interrupt(fiber)
        const sent = yield* sql<{ status: string }>`SELECT status FROM provider_requests WHERE node_id = ${nodeId}`
        expect(sent.map((r) => r.status)).toEqual(["sent"])
        const [stored] = yield* sql<{
          serverId: string | null
        }>`SELECT server_id FROM node_machines WHERE node_id = ${nodeId}`
        expect(stored?.serverId).toBeNull()
        // The next one provisions the node again.
        const second = yield* Hetzner.Provider.make({ policy: fastPolicy })
        const before = creates()
        expect(yield* second.provisionNow(nodeId)).toMatch(/exists$/)
        expect(creates()).toBe(before)
        expect(serversOf(nodeId)).toHaveLength(1)
      })
  )

  it.scoped("an explicitly requested size with no capacity fails the node with the seed's message", () =>
    Effect.gen(function* () {
      const provider = yield* Hetzner.Provider.make({ policy: fastPolicy })
      const { nodeId } = yield* seedNode({ size: "large", explicit: true })
      fake.failCreates(...Array.from({ length: 3 }, () => ({ ...capacityError(), serverType: "cx43" })))
      const error = yield* Effect.flip(provider.provisionNow(nodeId))
      expect(error.message).toBe("There were no large machines available.")
      const sql = yield* SqlClient.SqlClient
      const [node] = yield* sql<{ errorReason: string }>`SELECT error_reason FROM nodes WHERE id = ${nodeId}`
      expect(node?.errorReason).toBe("There were no large machines available.")
      expect(serversOf(nodeId)).toHaveLength(0)
    })
  )

  it.scoped("a user without a Hetzner token: the node says so, nothing is sent", () =>
    Effect.gen(function* () {
      const provider = yield* Hetzner.Provider.make({ policy: fastPolicy })
      const { nodeId } = yield* seedNode({ token: null })
      const before = fake.requests.length
      const error = yield* Effect.flip(provider.provisionNow(nodeId))
      expect(error.message).toContain("has no Hetzner API token")
      expect(fake.requests.length).toBe(before)
    })
  )

  it.scoped(
    "the reconciler deletes an orphaned server and marks a node whose server vanished; a failed list deletes nothing",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const hetzner = yield* Hetzner.Provider.make({ policy: fastPolicy })
        const { userId, nodeId: vanishing } = yield* seedNode({ token: OTHER_TOKEN })
        yield* hetzner.provisionNow(vanishing)
        const [server] = serversOf(vanishing, OTHER_TOKEN)
        const orphanNode = makeId("node")
        const orphan = fake.putServer(OTHER_TOKEN, {
          name: "sam-orphan",
          labels: {
            "sam-node": orphanNode,
            "sam-owner": userId,
            "sam-installation": hetzner.installation,
            managed: "sam"
          }
        })
        // Someone else's server in the same project: not ours, never touched.
        const foreign = fake.putServer(OTHER_TOKEN, { name: "their-db", labels: { role: "db" } })
        const local: ControlPlane.NodeProvider["Type"] = {
          provision: () => Effect.void,
          destroy: () => Effect.succeed("nothing"),
          list: () => Effect.succeed([])
        }
        const provider = yield* NodeProviders.routed({ local, hetzner })
        // The node's server vanishes behind SAM's back.
        fake.vanish(OTHER_TOKEN, server!.id)
        // First, a list that fails (the API answers 429 past its retries): nothing is deleted or marked.
        fake.rateLimit({ times: 1000, limit: 3600, remaining: 0, reset: Math.floor(Date.now() / 1000) + 3600 })
        const lists = () => fake.requests.filter((r) => r.path === "/servers" && r.method === "GET").length
        const listsBefore = lists()
        const failing = yield* Effect.forkScoped(
          ControlPlane.runMachineReconciler().pipe(Effect.provideService(ControlPlane.NodeProvider, provider))
        )
        yield* waitUntil(
          "a failed list",
          // the first list, and its retries past the 429s until it gives up (1 s each), all refused
          Effect.sync(() => (lists() >= listsBefore + 7 ? true : undefined)),
          { timeout: "20 seconds" }
        )
        yield* Fiber.interrupt(failing)
        expect(fake.servers(OTHER_TOKEN).map((s) => s.id)).toContain(orphan.id)
        const unmarked = yield* sql<{
          errorReason: string | null
        }>`SELECT error_reason FROM nodes WHERE id = ${vanishing}`
        expect(unmarked[0]?.errorReason).toBeNull()
        fake.rateLimit({ times: 0, limit: 3600, remaining: 3600, reset: 0 })
        // Then the reconciler runs with a working API.
        yield* Effect.forkScoped(
          ControlPlane.runMachineReconciler().pipe(Effect.provideService(ControlPlane.NodeProvider, provider))
        )
        yield* waitUntil(
          "the orphan deleted",
          Effect.sync(() => (fake.servers(OTHER_TOKEN).some((s) => s.id === orphan.id) ? undefined : true)),
          { timeout: "20 seconds" }
        )
        const marked = yield* waitUntil(
          "the vanished node marked",
          sql<{ errorReason: string | null }>`SELECT error_reason FROM nodes WHERE id = ${vanishing}`.pipe(
            Effect.map((rows) => rows[0]?.errorReason ?? undefined)
          ),
          { timeout: "20 seconds" }
        )
        expect(marked).toContain("no machine of it runs")
        expect(fake.servers(OTHER_TOKEN).map((s) => s.id)).toContain(foreign.id)
        const deletes = yield* sql<{ nodeId: string; status: string }>`
        SELECT node_id, status FROM provider_requests WHERE kind = 'delete'`
        expect(deletes).toEqual([{ nodeId: orphanNode, status: "succeeded" }])
      }).pipe(Effect.provide(natsAdmin()))
  )

  it.scoped("no log line carries a token: a success, a refused token (401), a list", () =>
    Effect.gen(function* () {
      const lines: string[] = []
      const capture = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ message, cause }) => {
          lines.push(`${JSON.stringify(message)} ${Cause.pretty(cause)}`)
        })
      )
      const revoked = `hz-${randomBytes(24).toString("hex")}`
      yield* Effect.gen(function* () {
        const provider = yield* Hetzner.Provider.make({ policy: fastPolicy })
        const good = yield* seedNode()
        yield* provider.provisionNow(good.nodeId)
        const bad = yield* seedNode({ token: revoked })
        const error = yield* Effect.flip(provider.provisionNow(bad.nodeId))
        expect(error.message).toContain("unable to authenticate")
        yield* Effect.either(provider.list())
      }).pipe(Effect.provide(capture))
      expect(lines.length).toBeGreaterThan(1)
      for (const line of lines) for (const token of [TOKEN, OTHER_TOKEN, revoked]) expect(line).not.toContain(token)
    })
  )
})
