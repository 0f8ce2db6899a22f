import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Credentials, makeId } from "@sam/bus"
import { Effect } from "effect"
import { describe, expect } from "vitest"
import * as NodeBoot from "../../../infra/src/cloud/NodeBoot.js"
import { bootEngine, nodeReady, taskThroughFeed, tokenOf } from "../../src/BootEnv.js"
import { bootCloudInit } from "../../src/BootMachine.js"
import { seedProject, useSettings } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { GatewayUrl, http, makeGatewayEnv } from "../../src/GatewayHarness.js"

/**
 * A cloud node's boot, for real, without the cloud: the user data NodeBoot renders for a node boots a
 * container machine (BootMachine: cloud-init and systemd stand-ins, host network), whose boot script
 * disables the apt timers, applies the firewall (its IPv6 probe failing), installs the checksummed
 * vm-agent from the gateway, which trades its bootstrap token for the node's credentials, connects to
 * NATS and reports ready; a demo-agent task runs there and reaches the feed; powering it off stops the node.
 */
const { engine, skipReason } = await bootEngine("boot-cloud-init")
// The user's only node is the booted one: a task never starts a local node here.
useSettings({ SAM_MAX_NODES_PER_USER: "1" })

describe.skipIf(skipReason)(`a node booted from its cloud-init${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`, () => {
  layer(makeGatewayEnv(), { excludeTestServices: true, timeout: 120_000 })("boot", (it) => {
    it.scoped(
      "installs the artifact, exchanges its token once, runs a task, and stops with its machine",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const url = yield* GatewayUrl
          const { userId, projectId, repo } = yield* seedProject()
          const token = yield* tokenOf(userId)
          const nodeId = makeId("node")
          // What the node actor does for a cloud node before its provider creates the server.
          yield* sql`INSERT INTO nodes (id, provider, status, owner_id, provider_request_id)
            VALUES (${nodeId}, 'hetzner', 'provisioning', ${userId}, 'test')`
          const boot = yield* NodeBoot.make({ controlPlaneUrl: url })
          const userData = yield* boot.userData({ nodeId, ownerId: userId, provider: "hetzner" })
          expect(userData.startsWith("#cloud-config\n")).toBe(true)
          const spent = /sam_boot_[A-Za-z0-9_-]{43}/.exec(userData)?.[0]
          expect(spent).toBeDefined()

          const machine = yield* bootCloudInit(userData, {
            socketPath: engine!.socketPath,
            image: engine!.image,
            shared: [repo],
            env: {
              SAM_FIREWALL_SIMULATE_NO_IP6TABLES: "1",
              SAM_VM_AGENT_ENV: "SAM_NODE_RUNTIME=host\nSAM_NODE_HEARTBEAT_MS=500"
            }
          })
          yield* nodeReady(nodeId).pipe(
            Effect.tapError(() =>
              Effect.promise(async () => console.error(`[boot] machine console:\n${await machine.console()}`))
            )
          )

          // The boot script's trace: the apt timers were disabled before the vm-agent started.
          const trace = yield* Effect.promise(() => machine.file("/var/log/sam-boot.trace"))
          const disabled = trace.indexOf("systemctl disable apt-daily.timer")
          const unattended = trace.indexOf("systemctl disable unattended-upgrades.service")
          const agent = trace.search(/\+ exec \S*node \/opt\/sam\/current\/vm-agent\.mjs/)
          expect(disabled).toBeGreaterThan(-1)
          expect(unattended).toBeGreaterThan(-1)
          expect(agent).toBeGreaterThan(Math.max(disabled, unattended))
          expect(trace).not.toContain(spent)
          // The firewall ran with no ip6_tables (its own probe) and exited 0: the boot went on.
          const console_ = yield* Effect.promise(() => machine.console())
          expect(console_).toContain("sam-firewall: IPv6: this kernel has no ip6_tables (probed)")
          expect(console_).toContain("sam-boot: firewall completed")
          expect(console_).not.toContain(spent)
          // NATS over WebSocket through the gateway's own port (ADR 0027): no NATS port is needed.
          expect(console_).toMatch(/bootstrap: this machine is node node_\w+; NATS ws:\/\/127\.0\.0\.1:\d+\/nats/)

          // The node's boot log, as its vm-agent reported it.
          const log = yield* http("GET", `/api/v1/nodes/${nodeId}/boot-log`, { token })
          expect(log.status).toBe(200)
          const steps = (log.body.entries as Array<{ step: string; status: string; message: string }>).map(
            (e) => `${e.step}:${e.status}`
          )
          for (const step of [
            "apt-timers:completed",
            "firewall:completed",
            "node:completed",
            "artifact:completed",
            "vm-agent:started"
          ])
            expect(steps).toContain(step)
          expect(steps.indexOf("apt-timers:completed")).toBeLessThan(steps.indexOf("vm-agent:started"))

          // The token was single-use: a replay changes nothing and says why.
          const replay = yield* http("POST", "/api/v1/node-boot/exchange", {
            body: { token: spent, nodeId, publicKey: Credentials.newUserKey().publicKey }
          })
          expect(replay.status).toBe(401)
          expect(replay.body.code).toBe("unauthenticated")

          // A profile that asks for a Hetzner node: placed on this one (ready, the user's, of that provider).
          const profile = yield* http("POST", `/api/v1/projects/${projectId}/agent-profiles`, {
            token,
            body: { name: "cloud", agent: "demo", nodeProvider: "hetzner" }
          })
          expect(profile.status).toBe(201)
          const run = yield* taskThroughFeed(projectId, token, "booted from cloud-init", profile.body.id).pipe(
            Effect.tapError(() =>
              Effect.promise(async () => console.error(`[boot] machine console:\n${await machine.console()}`))
            )
          )
          expect(run.task).toMatchObject({ status: "completed", nodeId })

          // Powering the machine off stops the node: no more heartbeats.
          yield* Effect.promise(() => machine.stop())
          expect(yield* Effect.promise(() => machine.exitCode())).toBeDefined()
          yield* waitUntil(
            "the node to go silent",
            sql<{ silent: boolean }>`
              SELECT last_heartbeat_at < now() - interval '3 seconds' AS silent FROM nodes WHERE id = ${nodeId}`.pipe(
              Effect.map((rows) => (rows[0]?.silent ? true : undefined))
            ),
            { timeout: "30 seconds", every: "250 millis" }
          )
        }),
      240_000
    )
  })
})
