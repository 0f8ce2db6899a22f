import { join } from "node:path"
import { layer } from "@effect/vitest"
import { Consume, Domain, makeId, Publish, Subjects } from "@sam/bus"
import { Effect, Layer, Option } from "effect"
import { expect } from "vitest"
import { AcpSessionHost } from "../../../vm-agent/src/acp/AcpSessionHost.js"
import { MAX_COMMAND_DELIVERIES, run } from "../../../vm-agent/src/node/Daemon.js"
import { NodeSettings } from "../../../vm-agent/src/node/NodeConfig.js"
import { RuntimeFailure, WorkspaceRuntime } from "../../../vm-agent/src/runtime/WorkspaceRuntime.js"
import { natsAdmin } from "../../src/Env.js"
import { tempDir } from "../../src/TestStack.js"
import { collectReports, is, reportWaiter } from "../../src/VmAgentProcess.js"

const { NodeProtocol } = Domain

/**
 * A runtime whose `delete` fails (I/O) a given number of times per workspace, whose `stop` dies, and
 * whose workspace `running` is there but cannot spawn a process (I/O).
 */
const flakyRuntime = (failuresOf: (workspaceId: string) => number, running: string) => {
  const attempts = new Map<string, number>()
  const count = (key: string) => {
    const n = (attempts.get(key) ?? 0) + 1
    attempts.set(key, n)
    return n
  }
  const unused = () => Effect.dieMessage("not used by this test")
  const layer = Layer.succeed(WorkspaceRuntime, {
    kind: "host",
    capabilities: () => Effect.succeed({ docker: false, hostRuntime: true }),
    list: () => Effect.succeed([]),
    endProcesses: () => Effect.void,
    get: (workspaceId) =>
      Effect.succeed(
        workspaceId === running
          ? Option.some({
              workspaceId,
              runtime: "host" as const,
              status: "running" as const,
              path: "/nonexistent",
              home: "/nonexistent",
              createdAt: new Date().toISOString(),
              updatedAt: new Date().toISOString()
            })
          : Option.none()
      ),
    create: unused,
    spawn: (workspaceId) =>
      Effect.suspend(() => {
        count(`spawn:${workspaceId}`)
        return Effect.fail(new RuntimeFailure({ reason: "io", message: "EAGAIN: no process for now" }))
      }),
    exec: unused,
    start: unused,
    stop: (workspaceId) =>
      Effect.suspend(() => {
        count(`stop:${workspaceId}`)
        return Effect.dieMessage("a bug in stop")
      }),
    delete: (workspaceId) =>
      Effect.suspend(() =>
        count(`delete:${workspaceId}`) <= failuresOf(workspaceId)
          ? Effect.fail(new RuntimeFailure({ reason: "io", message: "EIO: the disk did not answer" }))
          : Effect.void
      )
  })
  return { layer, attempts: (key: string) => attempts.get(key) ?? 0 }
}

layer(natsAdmin(), { excludeTestServices: true, timeout: 120_000 })(
  "the vm-agent settles commands by outcome",
  (it) => {
    it.scoped(
      "retries a failure that may pass, reports a defect, and gives up after a bounded number of deliveries",
      () =>
        Effect.gen(function* () {
          const nodeId = makeId("node")
          const dir = yield* Effect.promise(() => tempDir("sam-settle-"))
          yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeId))
          const reports = yield* collectReports(nodeId)
          const { waitFor } = reportWaiter(reports, () => "")
          const transient = makeId("ws")
          const broken = makeId("ws")
          const stopped = makeId("ws")
          const spawnless = makeId("ws")
          const runtime = flakyRuntime(
            (id) => (id === transient ? 2 : id === broken ? Number.POSITIVE_INFINITY : 0),
            spawnless
          )
          const settings = NodeSettings.parse({
            nodeId,
            natsUrl: "unused",
            credsFile: "unused",
            dataDir: join(dir, "data"),
            runtime: "host",
            heartbeatMs: 500
          })
          yield* run(settings).pipe(
            Effect.provide(Layer.merge(runtime.layer, AcpSessionHost.Default)),
            Effect.forkScoped
          )
          yield* waitFor("node.ready", is("node.ready"))
          const send = (envelope: Domain.NodeProtocol.NodeCommand) =>
            Publish.publish(Subjects.nodeCommand(nodeId, envelope.type), envelope)

          // Fails twice for an I/O reason, then succeeds: redelivered, and done.
          yield* send(NodeProtocol.WorkspaceDelete.make({ workspaceId: transient }))
          yield* waitFor(
            "deleted after two failures",
            is("workspace.status-reported", (r) => r.body.workspaceId === transient && r.body.status === "deleted")
          )
          expect(runtime.attempts(`delete:${transient}`)).toBe(3)

          // A defect is reported (not silently acked) and not tried again.
          const stop = NodeProtocol.WorkspaceStop.make({ workspaceId: stopped })
          yield* send(stop)
          const defect = yield* waitFor(
            "defect reported",
            is("command.rejected", (r) => r.body.messageId === stop.id)
          )
          expect(defect.body.code).toBe("unavailable")
          expect(defect.body.message).toContain("a bug in stop")

          // Always failing: given up after MAX_COMMAND_DELIVERIES deliveries, reported `unavailable`.
          const doomed = NodeProtocol.WorkspaceDelete.make({ workspaceId: broken })
          yield* send(doomed)
          const gaveUp = yield* waitFor(
            "given up",
            is("command.rejected", (r) => r.body.messageId === doomed.id),
            "30 seconds"
          )
          expect(gaveUp.body.code).toBe("unavailable")
          expect(gaveUp.body.message).toContain(`after ${MAX_COMMAND_DELIVERIES} deliveries`)
          expect(runtime.attempts(`delete:${broken}`)).toBe(MAX_COMMAND_DELIVERIES)
          expect(runtime.attempts(`stop:${stopped}`)).toBe(1)

          // An agent that cannot be spawned for an I/O reason: the start is tried again, not refused at
          // once, and after the last delivery refused as unavailable (the session actor fails it then).
          const start = NodeProtocol.SessionStart.make({
            sessionId: makeId("sess"),
            workspaceId: spawnless,
            agent: "demo",
            mode: "conversation",
            prompt: "say hi"
          })
          yield* send(start)
          const refused = yield* waitFor(
            "the start given up",
            is("command.rejected", (r) => r.body.messageId === start.id),
            "30 seconds"
          )
          expect(refused.body).toMatchObject({ code: "unavailable", commandType: "session.start" })
          expect(refused.body.message).toContain(`gave up after ${MAX_COMMAND_DELIVERIES} deliveries`)
          expect(refused.body.message).toContain("EAGAIN")
          expect(runtime.attempts(`spawn:${spawnless}`)).toBeGreaterThanOrEqual(MAX_COMMAND_DELIVERIES)
          const all = yield* reports.all()
          expect(all.filter(is("command.rejected", (r) => r.body.messageId === doomed.id))).toHaveLength(1)
          expect(
            all.some(
              is(
                "command.rejected",
                (r) => r.body.commandType === "workspace.delete" && r.body.message.includes(transient)
              )
            )
          ).toBe(false)
        })
    )
  }
)
