import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, makeId } from "@sam/bus"
import { SecretBox } from "@sam/sql"
import { Effect, Layer } from "effect"
import { afterAll, expect } from "vitest"
import { NodeBoot } from "../../../infra/src/cloud/NodeBoot.js"
import { makeControlPlaneEnv, seedProject, submitTask, useSettings } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { capacityError, startFakeHetzner } from "../../src/FakeHetzner.js"

const TOKEN = randomBytes(32).toString("hex")
useSettings({ SAM_MASTER_KEY: randomBytes(32).toString("base64"), SAM_TASK_STEP_TIMEOUT_MS: "3000" })
const fake = await startFakeHetzner({ tokens: [TOKEN] })
afterAll(() => fake.close())

/** The boot's user data stands in (the boot's own tests boot it for real): a marker per node. */
const TestBoot = Layer.succeed(
  NodeBoot,
  NodeBoot.of({ userData: (node) => Effect.succeed(`#cloud-config\n# sam node ${node.nodeId}\n`) })
)
const Env = makeControlPlaneEnv({
  runtime: "host",
  hetzner: {
    apiUrl: fake.url,
    nodeBoot: TestBoot,
    // The seed's rules with short delays (their exact delays: create-retry.test.ts).
    policy: { initialDelayMs: 20, maxDelayMs: 80, maxAttempts: 3, budgetMs: 10_000, placementRetryDelayMs: 10 }
  }
})

/** A user with a Hetzner token, and a project with a profile that asks for a Hetzner node. */
const seedHetznerProfile = (columns: { readonly vmSize?: string; readonly vmLocation?: string } = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { projectId, userId } = yield* seedProject()
    const sealed = yield* SecretBox.seal(TOKEN)
    yield* sql`
      INSERT INTO cloud_credentials (user_id, provider, sealed, validated_at) VALUES (${userId}, 'hetzner', ${sealed}, now())`
    const profileId = makeId("prof")
    yield* sql`
      INSERT INTO agent_profiles (id, project_id, created_by, name, agent, node_provider, vm_size, vm_location)
      VALUES (${profileId}, ${projectId}, ${userId}, 'on hetzner', 'demo', 'hetzner', ${columns.vmSize ?? null},
        ${columns.vmLocation ?? null})`
    return { projectId, userId, profileId }
  })

const nodeOfTask = (taskId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    waitUntil(
      "the task's node",
      sql<{ id: string; provider: string; ownerId: string }>`
        SELECT n.id, n.provider, n.owner_id FROM nodes n JOIN node_reservations r ON r.node_id = n.id
        WHERE r.task_id = ${taskId}`.pipe(Effect.map((rows) => rows[0]))
    )
  )

layer(Env, { excludeTestServices: true, timeout: 120_000 })(
  "a task on a profile that asks for a Hetzner node",
  (it) => {
    it.effect("a labelled server in the profile's location, one per node; deleting the node deletes it", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { projectId, userId, profileId } = yield* seedHetznerProfile({ vmLocation: "hel1" })
        const taskId = yield* submitTask(projectId, userId, "say hello", "task", profileId)
        const node = yield* nodeOfTask(taskId)
        expect(node).toMatchObject({ provider: "hetzner", ownerId: userId })
        const server = yield* waitUntil(
          "its Hetzner server",
          Effect.sync(() => fake.servers(TOKEN).find((s) => s.labels["sam-node"] === node.id))
        )
        expect(server).toMatchObject({
          server_type: "cx33",
          location: "hel1",
          name: `sam-${node.id.replace(/_/g, "-")}`
        })
        expect(server.labels["sam-owner"]).toBe(userId)
        expect(fake.userData(server.id)).toContain(`# sam node ${node.id}`)
        const [machine] = yield* waitUntil(
          "the server stored",
          sql<{ serverId: string | null; size: string; sizeExplicit: boolean }>`
          SELECT server_id::text AS server_id, size, size_explicit FROM node_machines WHERE node_id = ${node.id}`.pipe(
            Effect.map((rows) => (rows[0]?.serverId === String(server.id) ? rows : undefined))
          )
        )
        expect(machine).toMatchObject({ size: "medium", sizeExplicit: false })
        // A second task of the profile takes a slot on the same node: no second server.
        const second = yield* submitTask(projectId, userId, "say again", "task", profileId)
        expect((yield* nodeOfTask(second)).id).toBe(node.id)
        expect(fake.servers(TOKEN).filter((s) => s.labels["sam-owner"] === userId)).toHaveLength(1)
        // The user deletes the node: its server is deleted at Hetzner.
        yield* Actors.ask(
          ControlPlane.NodeRef,
          node.id,
          Domain.ControlProtocol.NodeDestroy.make({ nodeId: node.id as never, reason: "test" })
        )
        yield* waitUntil(
          "the server deleted",
          Effect.sync(() => (fake.servers(TOKEN).some((s) => s.id === server.id) ? undefined : true)),
          { timeout: "60 seconds" }
        )
      })
    )

    it.effect("a profile's explicit size with no capacity: the task fails with the seed's message; no server", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { projectId, userId, profileId } = yield* seedHetznerProfile({ vmSize: "large" })
        fake.failCreates(...Array.from({ length: 3 }, () => ({ ...capacityError(), serverType: "cx43" })))
        const taskId = yield* submitTask(projectId, userId, "say hello", "task", profileId)
        const node = yield* nodeOfTask(taskId)
        const task = yield* waitUntil(
          "the task to fail",
          sql<{ status: string; errorStep: string | null; errorReason: string | null }>`
          SELECT status, error_step, error_reason FROM tasks WHERE id = ${taskId}`.pipe(
            Effect.map((rows) => (rows[0]?.status === "failed" ? rows[0] : undefined))
          ),
          { timeout: "30 seconds" }
        )
        expect(task).toEqual({
          status: "failed",
          errorStep: "node_provisioning",
          errorReason: "its node could not be provisioned: There were no large machines available."
        })
        const creates = yield* sql<{ serverType: string; status: string }>`
        SELECT server_type, status FROM provider_requests WHERE node_id = ${node.id} ORDER BY id`
        expect(creates).toEqual(Array.from({ length: 3 }, () => ({ serverType: "cx43", status: "failed" })))
        expect(fake.servers(TOKEN).filter((s) => s.labels["sam-node"] === node.id)).toEqual([])
      })
    )
  }
)
