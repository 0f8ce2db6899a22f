import { mkdir, rm, rmdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { layer } from "@effect/vitest"
import { Domain, type Envelope, makeId, Publish, Subjects } from "@sam/bus"
import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect } from "vitest"
import * as DockerEngine from "../../infra/src/DockerEngine.js"
import * as WorkspaceImage from "../../infra/src/WorkspaceImage.js"
import { natsAdmin } from "../src/Env.js"
import { tempDir } from "../src/TestStack.js"
import { collectReports, is, makeRepo, prepareNode, reportWaiter, startVmAgent } from "../src/VmAgentProcess.js"
import { attackTurn } from "./AgentTranscript.js"

/**
 * The demo agent as an attacker in a Docker workspace (ADR 0014): it runs as a user that is not root, with the
 * workspace's environment only. A dockerd of our own; skipped with the reason when none can be had (unless
 * SAM_DOCKER_READY=1).
 */
const { NodeProtocol } = Domain

const VM_AGENT_SECRET = { SAM_GITHUB_CLIENT_SECRET: "gh-client-secret-canary-docker-5d1e" }
const WORKSPACE_VAR = { name: "WORKSPACE_GREETING", value: "hello-from-the-container-env" }
/** the checkout SAM runs from: `./sam up` keeps its data in `.sam` there, the tests in `.sam-test` */
const CHECKOUT = fileURLToPath(new URL("../..", import.meta.url))
/**
 * A seed in the checkout's data directory that the container's user could read (as when `sam up` runs as uid
 * 1000): the files are 0600, the point is who may reach them at all.
 */
const dataCanary = {
  dir: join(CHECKOUT, ".sam-test", `agent-secrets-docker-${process.pid}-${Date.now()}`),
  value: `SAOCANARYSEED${Math.random().toString(36).slice(2)}`
}

const dockerDir = await tempDir("sam-sec-docker-")
const engineScope = Effect.runSync(Scope.make())
const engine = await Effect.runPromise(
  Effect.gen(function* () {
    const engine = yield* DockerEngine.start({ dir: join(dockerDir, "engine"), onProgress: () => {} })
    yield* WorkspaceImage.ensure(engine, { onProgress: (line) => process.stdout.write(`[security docker] ${line}\n`) })
    return engine.socketPath
  }).pipe(Scope.extend(engineScope), Effect.either)
)
const skipReason = engine._tag === "Left" ? `no Docker engine: ${engine.left.message}` : undefined
if (skipReason && process.env.SAM_DOCKER_READY === "1")
  throw new Error(`the prepared Docker engine failed: ${skipReason}`)
if (skipReason) console.warn(`[security docker] SKIPPED: ${skipReason}`)

await mkdir(dataCanary.dir, { recursive: true, mode: 0o755 })
await writeFile(join(dataCanary.dir, "keys.json"), dataCanary.value, { mode: 0o644 })

afterAll(async () => {
  await Effect.runPromise(Scope.close(engineScope, Exit.void))
  await rm(dockerDir, { recursive: true, force: true })
  await rm(dataCanary.dir, { recursive: true, force: true })
  await rmdir(join(CHECKOUT, ".sam-test")).catch(() => undefined)
})

describe.skipIf(skipReason)(`an agent in a container${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`, () => {
  const socketPath = engine._tag === "Right" ? engine.right : ""
  layer(natsAdmin(), { excludeTestServices: true, timeout: 180_000 })("sees only what it was given", (it) => {
    it.scoped("runs as a user that is not root, with the workspace's environment only, and none of SAM's files", () =>
      Effect.gen(function* () {
        const nodeId = makeId("node")
        const dir = yield* Effect.promise(() => tempDir("sam-sec-node-"))
        const node = yield* prepareNode(nodeId, dir)
        const reports = yield* collectReports(nodeId)
        const send = (envelope: Envelope) => Publish.publish(Subjects.nodeCommand(nodeId, envelope.type), envelope)
        const agent = startVmAgent(nodeId, node, {
          SAM_NODE_RUNTIME: "docker",
          SAM_DOCKER_SOCKET: socketPath,
          ...VM_AGENT_SECRET
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
        const { waitFor } = reportWaiter(reports, () => agent.output())
        yield* waitFor("node.ready", is("node.ready"), "30 seconds")

        const workspaceId = makeId("ws")
        yield* send(
          NodeProtocol.WorkspaceCreate.make({
            workspaceId,
            projectId: makeId("proj"),
            repoUrl: makeRepo(join(dir, "repo")),
            env: [{ ...WORKSPACE_VAR, secret: false }]
          })
        )
        yield* waitFor(
          "workspace running",
          is("workspace.status-reported", (r) => r.body.workspaceId === workspaceId && r.body.status === "running"),
          "60 seconds"
        )
        // root's files in the container (its init runs as the workspace's user too: its environ is the workspace's
        // own, which the transcript check covers)
        const attempts = ["cat /etc/shadow", "ls /root"]
        // SAM's own files through what SAM mounts (/opt/sam): the checkout's data directories and git, by name (the
        // repository the workspace was cloned from, /opt/sam/source, is the workspace's own)
        const relative = dataCanary.dir.slice(CHECKOUT.length)
        const looks = [
          "ls -a /opt/sam/app",
          "find /opt/sam -path /opt/sam/source -prune -o \\( -name .git -o -name '.sam*' -o -name '.env*' -o -name '*.creds' -o -name keys.json \\) -print",
          "cat /opt/sam/app/.git/HEAD",
          `cat /opt/sam/app/${relative}/keys.json`
        ]
        const commands = ["id -u", "env", ...attempts, ...looks]
        const { sessionId, all, calls } = yield* attackTurn({ send, waitFor, reports }, workspaceId, commands)
        expect(calls.map((c) => c.command)).toEqual(commands)
        const [uid, env, ...rest] = calls
        const tries = rest.slice(0, attempts.length)
        const [listed, found, gitHead, seed] = rest.slice(attempts.length)
        expect.soft(uid?.output.trim()).toBe("1000")
        expect.soft(env?.output).toContain(`${WORKSPACE_VAR.name}=${WORKSPACE_VAR.value}`)
        expect.soft(env?.output).toContain("HOME=/home/sam")
        const names = (env?.output ?? "").split("\n").map((line) => line.split("=")[0])
        expect.soft(names.filter((name) => name?.startsWith("SAM_"))).toEqual(["SAM_DEMO_AGENT_STATE_DIR"])
        for (const attempt of tries) {
          expect.soft(attempt.output, attempt.command).toMatch(/Permission denied/)
          expect.soft(attempt.exitCode, attempt.command).not.toBe(0)
        }
        expect.soft(listed?.output, "the app mount's names").not.toMatch(/\.git|\.sam|node_modules|package\.json/)
        expect.soft(found?.output.trim(), "SAM's files found under /opt/sam").toBe("")
        expect.soft(gitHead?.output, "the checkout's .git").not.toContain("ref:")
        expect.soft(gitHead?.exitCode).not.toBe(0)
        expect.soft(seed?.output, "the checkout's data directory").not.toContain(dataCanary.value)
        expect.soft(seed?.exitCode).not.toBe(0)
        const transcript = JSON.stringify(
          all.filter(is("session.event-reported", (r) => r.body.sessionId === sessionId))
        )
        expect.soft(transcript).not.toContain(VM_AGENT_SECRET.SAM_GITHUB_CLIENT_SECRET)
        expect.soft(transcript).not.toContain(dataCanary.value)
      })
    )
  })
})
