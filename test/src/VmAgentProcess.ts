import { type ChildProcess, spawn } from "node:child_process"
import { mkdir, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { Consume, Domain, type Envelope, makeId, Nats, Publish, Subjects } from "@sam/bus"
import { Host } from "@sam/infra"
import { Chunk, type Duration, Effect, Fiber, Redacted, Ref, Stream } from "effect"
import { partyCredentials, stack, unique, waitUntil } from "./Env.js"
import { makeRepo } from "./Repo.js"
import { tempDir } from "./TestStack.js"

const root = resolve(import.meta.dirname, "../..")

export interface VmAgentProcess {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}

/** Node credentials, its durable consumer (as the control plane would create it) and a data dir. */
export const prepareNode = (nodeId: string, dir: string) =>
  Effect.gen(function* () {
    const { user, revoke } = yield* partyCredentials({ kind: "node", nodeId }, { ttlSeconds: 3600 })
    const credsFile = join(dir, "node.creds")
    yield* Effect.promise(async () => {
      await mkdir(dir, { recursive: true })
      await writeFile(credsFile, Redacted.value(user.creds), { mode: 0o600 })
    })
    yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeId))
    /** `revoke` revokes the node's credentials at the server, as deleting the node does */
    return { credsFile, dataDir: join(dir, "data"), revoke }
  })

/**
 * A node for a test, before its vm-agent starts: its id and data dir, credentials and consumer (`prepareNode`), a
 * repository to clone, its reports collected, and `send` for its commands.
 */
export const nodeUnderTest = Effect.gen(function* () {
  const nodeId = makeId("node")
  const dir = yield* Effect.promise(() => tempDir("sam-node-"))
  const node = yield* prepareNode(nodeId, dir)
  const repo = makeRepo(join(dir, "repo"))
  const reports = yield* collectReports(nodeId)
  const send = (envelope: Envelope) => Publish.publish(Subjects.nodeCommand(nodeId, envelope.type), envelope)
  return { nodeId, dir, node, repo, reports, send }
})

/**
 * A real vm-agent process: the compiled one when `./sam test` built it (SAM_COMPILED=1), as the local provider
 * starts it; else from source (`node --import tsx vm-agent/src/main.ts`), which compiles it at every start.
 */
export const startVmAgent = (
  nodeId: string,
  node: { readonly credsFile: string; readonly dataDir: string },
  env: Record<string, string> = {}
): VmAgentProcess => {
  const main = process.env.SAM_COMPILED === "1" ? ["dist/vm-agent.mjs"] : ["--import", "tsx", "vm-agent/src/main.ts"]
  // it ends with the test's process, also one that crashed or was killed
  const [command, args] = Host.diesWithParent(process.execPath, main)
  const child = spawn(command, [...args], {
    cwd: root,
    env: {
      ...process.env,
      SAM_NODE_ID: nodeId,
      SAM_NATS_URL: stack().natsUrl,
      SAM_NATS_CREDS: node.credsFile,
      SAM_NODE_DATA_DIR: node.dataDir,
      SAM_NODE_RUNTIME: "host",
      SAM_NODE_HEARTBEAT_MS: "500",
      SAM_NODE_CANCEL_GRACE_MS: "1500",
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout?.on("data", (c: Buffer) => (output += c))
  child.stderr?.on("data", (c: Buffer) => (output += c))
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
  return { child, output: () => output, exited }
}

export type Report = Domain.NodeProtocol.AgentReport

/** Collect every report of one node from SAM_AGENT, in stream order, in the background. */
export const collectReports = (nodeId: string) =>
  Effect.gen(function* () {
    const durable = unique("reports-")
    yield* Consume.ensureConsumer("SAM_AGENT", { durable, filterSubject: `sam.agent.${nodeId}.rpt.>` })
    const seen = yield* Ref.make(Chunk.empty<Report>())
    const fiber = yield* Consume.consume<ReadonlyArray<{ readonly type: string }>, Report & Envelope>(
      "SAM_AGENT",
      durable,
      Domain.NodeProtocol.agentReports
    ).pipe(
      Stream.tap((d) => Consume.settle(d, Consume.Outcome.Ack())),
      // A run of events (`session.events`) is seen as the single events it holds, as the control plane applies it.
      Stream.runForEach((d) => Ref.update(seen, Chunk.appendAll(Chunk.fromIterable(singleEvents(d.envelope))))),
      Effect.forkScoped
    )
    return { all: () => Ref.get(seen).pipe(Effect.map(Chunk.toArray)), fiber }
  })

/** A report as its single events: a `session.events-reported` run becomes the `session.event-reported` reports it holds. */
export const singleEvents = (report: Report & Envelope): ReadonlyArray<Report & Envelope> =>
  report.type !== "session.events-reported"
    ? [report]
    : report.body.events.map(
        (e) =>
          ({
            ...report,
            type: "session.event-reported",
            body: { sessionId: report.body.sessionId, promptEpoch: report.body.promptEpoch, ...e }
          }) as Report & Envelope
      )

export const stopFiber = Fiber.interrupt

export { makeRepo } from "./Repo.js"

export type ReportOf<T extends Report["type"]> = Extract<Report, { type: T }>

/** A predicate on reports of one type, narrowing it. */
export const is =
  <T extends Report["type"]>(type: T, where: (r: ReportOf<T>) => boolean = () => true) =>
  (r: Report): r is ReportOf<T> =>
    r.type === type && where(r as ReportOf<T>)

/**
 * Waiting on a node's reports: `waitFor` the first that matches (on a timeout it prints every report
 * and the vm-agent's own output), and `texts` of one session's events, for asserting on content.
 */
export const reportWaiter = (
  reports: { readonly all: () => Effect.Effect<Array<Report>> },
  agentOutput: () => string,
  t0 = Date.now()
) => ({
  waitFor: <T extends Report["type"]>(
    what: string,
    pick: (r: Report) => r is ReportOf<T>,
    timeout: Duration.DurationInput = "20 seconds"
  ) =>
    waitUntil(what, reports.all().pipe(Effect.map((all) => all.find(pick))), { timeout }).pipe(
      Effect.tapError(() =>
        reports
          .all()
          .pipe(
            Effect.flatMap((all) =>
              Effect.sync(() =>
                console.log(
                  `reports:\n${all.map((r) => `${r.type} ${JSON.stringify(r.body).slice(0, 200)}`).join("\n")}\nvm-agent output:\n${agentOutput().slice(-3000)}`
                )
              )
            )
          )
      ),
      Effect.tap(() => Effect.sync(() => console.log(`✓ ${what} at ${Date.now() - t0} ms`)))
    ),
  texts: (sessionId: string) =>
    reports.all().pipe(
      Effect.map((all) =>
        all
          .filter(is("session.event-reported", (r) => r.body.sessionId === sessionId))
          .map((r) => JSON.stringify(r.body.event))
          .join("\n")
      )
    )
})

/** Create a workspace of `repoUrl` on the node (`workspace.create`) and wait until the node reports it running; its id. */
export const runningWorkspace = <E, R>(
  send: (envelope: Envelope) => Effect.Effect<unknown, E, R>,
  waitFor: ReturnType<typeof reportWaiter>["waitFor"],
  repoUrl: string
) =>
  Effect.gen(function* () {
    const workspaceId = makeId("ws")
    yield* send(
      Domain.NodeProtocol.WorkspaceCreate.make({ workspaceId, projectId: makeId("proj"), repoUrl, env: [], files: [] })
    )
    yield* waitFor(
      "workspace running",
      is("workspace.status-reported", (r) => r.body.workspaceId === workspaceId && r.body.status === "running")
    )
    return workspaceId
  })

/**
 * Start a conversation of the demo agent in a workspace of the node (`session.start`) and wait until its first
 * turn ends; its session id.
 */
export const conversationTurn = <E, R>(
  send: (envelope: Envelope) => Effect.Effect<unknown, E, R>,
  waitFor: ReturnType<typeof reportWaiter>["waitFor"],
  workspaceId: Domain.NodeProtocol.SessionStartBody["workspaceId"],
  prompt: string
) =>
  Effect.gen(function* () {
    const sessionId = makeId("sess")
    yield* send(
      Domain.NodeProtocol.SessionStart.make({ sessionId, workspaceId, agent: "demo", mode: "conversation", prompt })
    )
    yield* waitFor(
      "first turn ends",
      is("session.activity-reported", (r) => r.body.sessionId === sessionId && r.body.stopReason === "end_turn")
    )
    return sessionId
  })

/**
 * The sessions the node's heartbeats have listed as prompting (a turn on its way, a start waiting for its
 * workspace: the healer's evidence) while the scope lasts; `seen(id)` waits until one lists `id`.
 */
export const watchPrompting = (nodeId: string) =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const prompting = new Set<string>()
    const heartbeats = nc.subscribe(Subjects.heartbeat(nodeId), {
      callback: (_, msg) => {
        for (const id of msg.json<{ body: { promptingSessions: Array<string> } }>().body.promptingSessions)
          prompting.add(id)
      }
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => heartbeats.unsubscribe()))
    return {
      seen: (sessionId: string) =>
        waitUntil(
          `session ${sessionId} prompting in a heartbeat`,
          Effect.sync(() => (prompting.has(sessionId) ? true : undefined))
        )
    }
  })

/**
 * A `nodeUnderTest` whose vm-agent runs (killed with the scope) and has reported `node.ready`, with a
 * `reportWaiter` on its reports.
 */
export const readyNode = Effect.gen(function* () {
  const under = yield* nodeUnderTest
  const agent = startVmAgent(under.nodeId, under.node)
  const waiter = reportWaiter(under.reports, () => agent.output())
  yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
  yield* waiter.waitFor("node.ready", is("node.ready"), "30 seconds")
  return { ...under, ...waiter, agent }
})
