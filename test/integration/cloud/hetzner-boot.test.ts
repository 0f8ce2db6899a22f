import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Credentials, makeId } from "@sam/bus"
import { SecretBox } from "@sam/sql"
import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect } from "vitest"
import * as NodeBoot from "../../../infra/src/cloud/NodeBoot.js"
import { bootEngine, nodeReady, taskThroughFeed, tokenOf } from "../../src/BootEnv.js"
import { bootCloudInit, type Machine } from "../../src/BootMachine.js"
import { seedProject, useSettings } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { startFakeHetzner } from "../../src/FakeHetzner.js"
import { http, makeGatewayEnv } from "../../src/GatewayHarness.js"
import { freePort } from "../../src/TestStack.js"

/**
 * The whole path of issue 14, with only Hetzner faked: a task on a project whose profile asks for a
 * Hetzner node makes the control plane create a server at the fake Hetzner API with the user data its
 * NodeBoot renders (a single-use bootstrap token, the artifact's sha256); the fake's `onServerCreated`
 * boots that user data in a machine-in-a-container (BootMachine), which installs the vm-agent from the
 * gateway, trades the token for the node's credentials, reaches NATS through the gateway's /nats and
 * reports ready; the demo agent runs the task there and its words reach the feed. Deleting the node
 * deletes the server, and the fake's `onServerDeleted` powers the machine off.
 */
const { engine, skipReason } = await bootEngine("hetzner-boot")
const HETZNER_TOKEN = randomBytes(32).toString("hex")
useSettings({ SAM_MASTER_KEY: randomBytes(32).toString("base64") })
const fake = await startFakeHetzner({ tokens: [HETZNER_TOKEN] })
const gatewayPort = await freePort()
const gatewayUrl = `http://127.0.0.1:${gatewayPort}`

/** Machines the fake's servers booted, by server id; their scope closes after the file. */
const machines = new Map<number, Promise<Machine>>()
const machineScope = Effect.runSync(Scope.make())
const shared: Array<string> = []
afterAll(async () => {
  await Effect.runPromise(Scope.close(machineScope, Exit.void))
  await fake.close()
})
if (engine !== undefined) {
  fake.onServerCreated((server, userData) => {
    machines.set(
      server.id,
      Effect.runPromise(
        bootCloudInit(userData, {
          socketPath: engine.socketPath,
          image: engine.image,
          shared,
          env: { SAM_FIREWALL_SIMULATE_NO_IP6TABLES: "1", SAM_VM_AGENT_ENV: "SAM_NODE_RUNTIME=host" }
        }).pipe(Scope.extend(machineScope))
      )
    )
  })
  fake.onServerDeleted((server) => {
    void machines.get(server.id)?.then((m) => m.stop())
  })
}

const Env = makeGatewayEnv(
  { port: gatewayPort },
  {
    hetzner: {
      apiUrl: fake.url,
      nodeBoot: NodeBoot.layer({ controlPlaneUrl: gatewayUrl }),
      policy: { initialDelayMs: 20, maxDelayMs: 80, maxAttempts: 3, budgetMs: 10_000, placementRetryDelayMs: 10 }
    }
  }
)

describe.skipIf(skipReason)(
  `a task on a Hetzner node, booted for real${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`,
  () => {
    layer(Env, { excludeTestServices: true, timeout: 120_000 })("hetzner boot", (it) => {
      it.effect(
        "provisions a fake server, boots it through cloud-init, runs the demo agent, reaches the feed; deleting it stops it",
        () =>
          Effect.gen(function* () {
            const sql = yield* SqlClient.SqlClient
            const { projectId, userId, repo } = yield* seedProject()
            shared.push(repo)
            const token = yield* tokenOf(userId)
            yield* sql`
            INSERT INTO cloud_credentials (user_id, provider, sealed, validated_at)
            VALUES (${userId}, 'hetzner', ${yield* SecretBox.seal(HETZNER_TOKEN)}, now())`
            const profileId = makeId("prof")
            yield* sql`
            INSERT INTO agent_profiles (id, project_id, created_by, name, agent, node_provider)
            VALUES (${profileId}, ${projectId}, ${userId}, 'on hetzner', 'demo', 'hetzner')`

            const run = yield* taskThroughFeed(projectId, token, "hello from a Hetzner node", profileId).pipe(
              Effect.tapError(() =>
                Effect.promise(async () => {
                  for (const m of machines.values())
                    console.error(`[hetzner-boot] machine:\n${await (await m).console()}`)
                })
              )
            )
            expect(run.task.status).toBe("completed")
            const nodeId = run.task.nodeId!
            const node = yield* sql<{ provider: string; ownerId: string }>`
            SELECT provider, owner_id FROM nodes WHERE id = ${nodeId}`
            expect(node[0]).toEqual({ provider: "hetzner", ownerId: userId })
            const [server] = fake.servers(HETZNER_TOKEN).filter((s) => s.labels["sam-node"] === nodeId)
            expect(server).toBeDefined()
            yield* nodeReady(nodeId)

            // What the server was given: cloud-init with a single-use token, already spent.
            const userData = fake.userData(server!.id) ?? ""
            expect(userData.startsWith("#cloud-config\n")).toBe(true)
            const spent = /sam_boot_[A-Za-z0-9_-]{43}/.exec(userData)?.[0]
            const replay = yield* http("POST", "/api/v1/node-boot/exchange", {
              body: { token: spent, nodeId, publicKey: Credentials.newUserKey().publicKey }
            })
            expect(replay.status).toBe(401)
            const machine = yield* Effect.promise(() => machines.get(server!.id)!)
            const trace = yield* Effect.promise(() => machine.file("/var/log/sam-boot.trace"))
            expect(trace.indexOf("systemctl disable apt-daily.timer")).toBeGreaterThan(-1)
            expect(trace.search(/\+ exec \S*node \/opt\/sam\/current\/vm-agent\.mjs/)).toBeGreaterThan(
              trace.indexOf("systemctl disable unattended-upgrades.service")
            )
            const bootLog = yield* http("GET", `/api/v1/nodes/${nodeId}/boot-log`, { token })
            expect(JSON.stringify(bootLog.body)).toContain("IPv6: this kernel has no ip6_tables")
            // The boot log was live: the boot script's lines reached the control plane as it went, before the
            // vm-agent's exchange spent the token, in order and once each (the exchange's copy added only the rest).
            const lines = yield* sql<{ seq: number; step: string; status: string; early: boolean }>`
              SELECT l.seq, l.step, l.status, l.received_at < t.used_at AS early
              FROM node_boot_log l JOIN node_boot_tokens t ON t.node_id = l.node_id
              WHERE l.node_id = ${nodeId} ORDER BY l.id`
            const seqs = lines.map((l) => l.seq)
            expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
            expect(new Set(seqs).size).toBe(seqs.length)
            const early = lines.filter((l) => l.early).map((l) => `${l.step}:${l.status}`)
            for (const step of ["boot:started", "apt-timers:completed", "firewall:completed", "artifact:completed"])
              expect(early).toContain(step)
            expect(lines.find((l) => l.step === "vm-agent")?.early).toBe(false)
            // The machine made its own NATS key; its seed is now only in its creds file (root-only).
            expect(
              yield* Effect.promise(() =>
                machine.file("/var/lib/sam/node.seed").then(
                  () => "kept",
                  () => "gone"
                )
              )
            ).toBe("gone")

            // The user deletes the node: its server is deleted at Hetzner and the machine goes down.
            const deleted = yield* http("DELETE", `/api/v1/nodes/${nodeId}`, { token })
            expect(deleted.status).toBe(202)
            yield* waitUntil(
              "the server deleted",
              Effect.sync(() => (fake.servers(HETZNER_TOKEN).some((s) => s.id === server!.id) ? undefined : true)),
              { timeout: "60 seconds", every: "250 millis" }
            )
            yield* waitUntil(
              "the machine stopped",
              Effect.promise(() => machine.exitCode()),
              { timeout: "30 seconds", every: "250 millis" }
            )
          }),
        240_000
      )
    })
  }
)
