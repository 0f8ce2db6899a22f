import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { layer } from "@effect/vitest"
import { Domain, type Envelope, makeId, Publish, Subjects } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { natsAdmin, stack } from "../src/Env.js"
import { tempDir } from "../src/TestStack.js"
import { collectReports, is, makeRepo, prepareNode, reportWaiter, startVmAgent } from "../src/VmAgentProcess.js"
import { attackTurn } from "./AgentTranscript.js"

const { NodeProtocol } = Domain

/**
 * The demo agent as an attacker in its workspace (ADR 0014): one prompt of `run` lines, each trying to reach a secret
 * of the machine it runs on. The vm-agent runs the host runtime as root, as `sam up` does here and in CI.
 */

/** What the vm-agent's environment holds besides its own settings: secrets of the process that started it. */
const VM_AGENT_SECRETS = {
  SAM_GITHUB_CLIENT_SECRET: "gh-client-secret-canary-7f3a9c",
  DATABASE_URL: "postgres://sam:db-password-canary-91be@127.0.0.1:1/sam"
}
const WORKSPACE_VAR = { name: "WORKSPACE_GREETING", value: "hello-from-the-workspace-env" }
const OTHER_PROJECT_SECRET = "other-project-secret-c0ffee"

/** The long strings of a `.creds` file or a JSON key file: JWTs and nkey seeds. */
const secretStrings = (text: string) => [...text.matchAll(/[A-Za-z0-9_.=-]{20,}/g)].map((m) => m[0])

/** `NAME=value` entries of a process's initial environment, as root reads them. */
const environOf = (pid: number) =>
  readFileSync(`/proc/${pid}/environ`, "utf8")
    .split("\0")
    .filter((entry) => {
      const [name = "", ...value] = entry.split("=")
      return !["PATH", "LANG", "HOME", "PWD", "SHLVL", "_", "TERM"].includes(name) && value.join("=").length >= 8
    })

layer(natsAdmin(), { excludeTestServices: true, timeout: 180_000 })("an agent sees only what it was given", (it) => {
  it.scoped.runIf(process.getuid?.() === 0)(
    "the demo agent cannot read the node's or the stack's secrets, the vm-agent's environment or another project's workspace; its workspace's env reaches it",
    () =>
      Effect.gen(function* () {
        const nodeId = makeId("node")
        const dir = yield* Effect.promise(() => tempDir("sam-sec-node-"))
        const node = yield* prepareNode(nodeId, dir)
        const reports = yield* collectReports(nodeId)
        const send = (envelope: Envelope) => Publish.publish(Subjects.nodeCommand(nodeId, envelope.type), envelope)
        const agent = startVmAgent(nodeId, node, VM_AGENT_SECRETS)
        yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
        const { waitFor } = reportWaiter(reports, () => agent.output())
        yield* waitFor("node.ready", is("node.ready"), "30 seconds")

        // Two projects' workspaces on the node: the attacker's, and another with a secret file and variable.
        const workspace = (repo: string, extra: Partial<Parameters<typeof NodeProtocol.WorkspaceCreate.make>[0]>) =>
          Effect.gen(function* () {
            const workspaceId = makeId("ws")
            yield* send(
              NodeProtocol.WorkspaceCreate.make({ workspaceId, projectId: makeId("proj"), repoUrl: repo, ...extra })
            )
            yield* waitFor(
              `workspace ${workspaceId} running`,
              is("workspace.status-reported", (r) => r.body.workspaceId === workspaceId && r.body.status === "running"),
              "30 seconds"
            )
            return { workspaceId, path: join(node.dataDir, "workspaces", workspaceId) }
          })
        const mine = yield* workspace(makeRepo(join(dir, "repo-mine")), {
          env: [{ ...WORKSPACE_VAR, secret: false }]
        })
        const other = yield* workspace(makeRepo(join(dir, "repo-other")), {
          env: [{ name: "OTHER_TOKEN", value: OTHER_PROJECT_SECRET, secret: true }],
          files: [{ path: "SECRET.md", content: `${OTHER_PROJECT_SECRET}\n` }]
        })

        const data = stack().dataDir
        const cliToken = join(data, "cli.token")
        const attempts = {
          keys: `cat ${join(data, "nats", "keys.json")}`,
          controlPlaneCreds: `cat ${join(data, "nats", "control-plane.creds")}`,
          natsDir: `ls ${join(data, "nats")}`,
          dataDir: `ls ${data}`,
          postgresPassword: `cat ${join(data, "postgres", "password")}`,
          postgresDir: `ls ${join(data, "postgres")}`,
          ...(existsSync(cliToken) ? { cliToken: `cat ${cliToken}` } : {}),
          nodeCreds: `cat ${node.credsFile}`,
          vmAgentEnviron: `cat /proc/${agent.child.pid}/environ`,
          controlPlaneEnviron: `cat /proc/${process.pid}/environ`,
          initEnviron: "cat /proc/1/environ",
          otherCheckout: `ls ${join(other.path, "workspace")}`,
          otherSecretFile: `cat ${join(other.path, "workspace", "SECRET.md")}`,
          otherEnvFile: `cat ${join(other.path, ".sam-env.json")}`,
          workspaces: `ls ${join(node.dataDir, "workspaces")}`,
          nodeDataDir: `ls ${node.dataDir}`,
          sessionRecords: `ls ${join(node.dataDir, "sessions")}`
        }
        const commands = ["id -u", "env", ...Object.values(attempts)]
        const { sessionId, all, calls } = yield* attackTurn({ send, waitFor, reports }, mine.workspaceId, commands)
        expect(calls.map((c) => c.command)).toEqual(commands)
        const [uid, env, ...tries] = calls

        // Soft assertions: a run on code without isolation lists every way in, not just the first.
        // The agent is not root, and its environment is its workspace's and its own, nothing of the vm-agent's.
        expect.soft(Number(uid?.output.trim())).not.toBe(0)
        expect.soft(Number(uid?.output.trim())).toBeGreaterThan(0)
        expect.soft(env?.output).toContain(`${WORKSPACE_VAR.name}=${WORKSPACE_VAR.value}`)
        expect.soft(env?.output).toContain(`HOME=${join(mine.path, "home")}`)
        const names = (env?.output ?? "").split("\n").map((line) => line.split("=")[0])
        expect.soft(names.filter((name) => name?.startsWith("SAM_"))).toEqual(["SAM_DEMO_AGENT_STATE_DIR"])
        expect.soft(names).not.toContain("OTHER_TOKEN")

        // Every attempt was refused by the kernel.
        for (const attempt of tries) {
          expect.soft({ command: attempt.command, output: attempt.output }).toMatchObject({
            output: expect.stringMatching(/Permission denied/)
          })
          expect.soft(attempt.exitCode, attempt.command).not.toBe(0)
        }

        // And no secret value appears anywhere in what the session reported.
        const transcript = JSON.stringify(
          all.filter(is("session.event-reported", (r) => r.body.sessionId === sessionId))
        )
        const secrets = [
          ...Object.values(VM_AGENT_SECRETS),
          OTHER_PROJECT_SECRET,
          ...secretStrings(readFileSync(join(data, "nats", "keys.json"), "utf8")),
          ...secretStrings(readFileSync(join(data, "nats", "control-plane.creds"), "utf8")),
          ...secretStrings(readFileSync(node.credsFile, "utf8")),
          readFileSync(join(data, "postgres", "password"), "utf8").trim(),
          ...(existsSync(cliToken) ? [readFileSync(cliToken, "utf8").trim()] : []),
          ...environOf(agent.child.pid!),
          ...environOf(process.pid)
        ]
        expect(secrets.length).toBeGreaterThan(10)
        const leaked = secrets.filter((secret) => transcript.includes(JSON.stringify(secret).slice(1, -1)))
        expect.soft(leaked).toEqual([])
      })
  )
})
