import { rm } from "node:fs/promises"
import { join } from "node:path"
import { layer } from "@effect/vitest"
import { Domain, makeId } from "@sam/bus"
import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect } from "vitest"
import * as DockerEngine from "../../../infra/src/DockerEngine.js"
import * as WorkspaceImage from "../../../infra/src/WorkspaceImage.js"
import { makeDockerRuntime } from "../../../vm-agent/src/runtime/DockerRuntime.js"
import { natsAdmin, waitUntil } from "../../src/Env.js"
import { tempDir } from "../../src/TestStack.js"
import { conversationTurn, is, nodeUnderTest, reportWaiter, startVmAgent } from "../../src/VmAgentProcess.js"

/**
 * The vm-agent end to end over NATS with the Docker runtime: the workspace is a container of a dockerd of our own
 * and the demo agent runs inside it. Skipped with the reason when no engine can be had (unless SAM_DOCKER_READY=1).
 */
const { NodeProtocol } = Domain

const dockerDir = await tempDir("sam-node-docker-")
const engineScope = Effect.runSync(Scope.make())
const engine = await Effect.runPromise(
  Effect.gen(function* () {
    const engine = yield* DockerEngine.start({ dir: join(dockerDir, "engine"), onProgress: () => {} })
    yield* WorkspaceImage.ensure(engine, { onProgress: (line) => process.stdout.write(`[vm-agent docker] ${line}\n`) })
    return engine.socketPath
  }).pipe(Scope.extend(engineScope), Effect.either)
)
const skipReason = engine._tag === "Left" ? `no Docker engine: ${engine.left.message}` : undefined
if (skipReason && process.env.SAM_DOCKER_READY === "1")
  throw new Error(`the prepared Docker engine failed: ${skipReason}`)
if (skipReason) console.warn(`[vm-agent docker] SKIPPED: ${skipReason}`)

afterAll(async () => {
  await Effect.runPromise(Scope.close(engineScope, Exit.void))
  await rm(dockerDir, { recursive: true, force: true })
})

describe.skipIf(skipReason)(`vm-agent with Docker workspaces${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`, () => {
  const socketPath = engine._tag === "Right" ? engine.right : ""
  layer(natsAdmin(), { excludeTestServices: true, timeout: 120_000 })("a vm-agent on a Docker node", (it) => {
    it.scoped(
      "runs the demo agent inside the workspace container: prompt, cancel kills the command in the container, context across cancel and restart, task commit",
      () =>
        Effect.gen(function* () {
          const t0 = Date.now()
          const { nodeId, node, repo, reports, send } = yield* nodeUnderTest
          const env = { SAM_NODE_RUNTIME: "docker", SAM_DOCKER_SOCKET: socketPath }
          const { waitFor, texts } = reportWaiter(reports, () => agent.output(), t0)

          /** what the agent said, its text chunks joined */
          const said = (sessionId: string) =>
            reports.all().pipe(
              Effect.map((all) =>
                all
                  .filter(is("session.event-reported", (r) => r.body.sessionId === sessionId))
                  .map((r) => r.body.event as { readonly type: string; readonly text?: string })
                  .flatMap((event) => (event.type === "text" ? [event.text ?? ""] : []))
                  .join("")
              )
            )

          let agent = startVmAgent(nodeId, node, env)
          yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
          const ready = yield* waitFor("node.ready", is("node.ready"), "30 seconds")
          expect(ready.body.capabilities.docker).toBe(true)

          const workspaceId = makeId("ws")
          yield* send(NodeProtocol.WorkspaceCreate.make({ workspaceId, projectId: makeId("proj"), repoUrl: repo }))
          yield* waitFor(
            "workspace running",
            is("workspace.status-reported", (r) => r.body.status === "running"),
            "40 seconds"
          )
          // A second runtime on the node's storage, to look into the container.
          const runtime = makeDockerRuntime({ dataDir: node.dataDir, socketPath })
          yield* Effect.addFinalizer(() => runtime.delete(workspaceId).pipe(Effect.ignore))
          const sh = (script: string) =>
            runtime.exec(workspaceId, ["/bin/sh", "-c", script]).pipe(Effect.map((r) => r.stdout.trim()))
          const sleepsLeft = sh(
            "n=0; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null | grep -q '^sleep 30' && n=$((n+1)); done; echo $n"
          )

          // A conversation whose agent runs in the container.
          const startAt = Date.now()
          const sessionId = yield* conversationTurn(send, waitFor, workspaceId, "run pwd; cat README.md")
          console.log(
            `session start to first turn end (agent start in the container included): ${Date.now() - startAt} ms`
          )
          const seqs = (yield* reports.all())
            .filter(is("session.event-reported", (r) => r.body.sessionId === sessionId))
            .map((r) => r.body.nodeSeq)
          expect(seqs).toEqual(seqs.map((_, i) => i + 1))
          expect(yield* texts(sessionId)).toContain("/workspace")
          expect(yield* texts(sessionId)).toContain("# demo")

          // Cancel a long shell command: its processes die inside the container (the agent stays), MARKER never shows.
          yield* send(
            NodeProtocol.SessionPrompt.make({ sessionId, prompt: 'run sleep 30; echo MAR""KER', promptEpoch: 2 })
          )
          yield* waitFor(
            "the shell runs",
            is("session.event-reported", (r) => r.body.event.type === "tool-call" && r.body.sessionId === sessionId)
          )
          yield* waitUntil(
            "sleep in the container",
            sleepsLeft.pipe(Effect.map((n) => (n === "1" ? true : undefined))),
            { timeout: "10 seconds" }
          )
          const cancelAt = Date.now()
          yield* send(NodeProtocol.SessionCancel.make({ sessionId }))
          yield* waitFor(
            "cancelled turn",
            is("session.activity-reported", (r) => r.body.promptEpoch === 2 && r.body.stopReason === "cancelled")
          )
          console.log(`cancel command to cancelled report: ${Date.now() - cancelAt} ms`)
          expect(Date.now() - cancelAt).toBeLessThan(1500 + 3000)
          expect(yield* sleepsLeft).toBe("0")
          expect(yield* texts(sessionId)).not.toContain("MARKER")

          yield* send(NodeProtocol.SessionPrompt.make({ sessionId, prompt: "recall", promptEpoch: 3 }))
          yield* waitFor(
            "recall turn",
            is("session.activity-reported", (r) => r.body.promptEpoch === 3 && r.body.stopReason === "end_turn")
          )
          expect(yield* said(sessionId)).toContain("1) run pwd; cat README.md 2) run sleep 30")

          // The vm-agent dies mid-prompt: when it is back, the agent's group in the container is gone and a
          // prompt sent meanwhile runs in the same conversation.
          yield* send(
            NodeProtocol.SessionPrompt.make({ sessionId, prompt: 'run sleep 30; echo LA""TE', promptEpoch: 4 })
          )
          yield* waitFor(
            "tool call 4",
            is(
              "session.event-reported",
              (r) => r.body.promptEpoch === 4 && r.body.event.type === "tool-call" && r.body.sessionId === sessionId
            )
          )
          agent.child.kill("SIGKILL")
          yield* Effect.promise(() => agent.exited)
          yield* send(NodeProtocol.SessionPrompt.make({ sessionId, prompt: "say back again", promptEpoch: 5 }))
          agent = startVmAgent(nodeId, node, env)
          yield* waitFor(
            "not working forever",
            is(
              "session.activity-reported",
              (r) => r.body.activity === "idle" && (r.body.reason ?? "").includes("restarted")
            )
          )
          yield* waitFor(
            "prompt sent while down",
            is("session.activity-reported", (r) => r.body.promptEpoch === 5 && r.body.stopReason === "end_turn"),
            "30 seconds"
          )
          expect(yield* sleepsLeft).toBe("0")
          expect(yield* said(sessionId)).toContain("back again")
          expect(yield* texts(sessionId)).not.toContain("LATE")

          // Task mode: committed in the container's checkout; the agent's state is not part of the commit.
          const taskId = makeId("task")
          yield* send(
            NodeProtocol.SessionStart.make({
              sessionId: makeId("sess"),
              workspaceId,
              taskId,
              agent: "demo",
              mode: "task",
              prompt: "run echo new > NEW.txt"
            })
          )
          const result = yield* waitFor(
            "task result",
            is("task.result", (r) => r.body.taskId === taskId),
            "30 seconds"
          )
          expect(result.body).toMatchObject({ outcome: "committed", branch: `sam/${taskId}` })
          expect(yield* sh(`git rev-parse sam/${taskId}`)).toBe(result.body.commitSha)
          expect(yield* sh(`git show --name-only --format= sam/${taskId}`)).toBe("NEW.txt")
        })
    )
  })
})
