import { rm } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { vmAgentPids } from "../src/ProcessTree.js"
import { type Api, api, makeEnv, type SamUp, startSamUp, stopSamUp, waitFor } from "./SamUp.js"
import {
  expectNothingWorking,
  followWithClient,
  pids,
  processTree,
  said,
  sleeping,
  stackProcesses,
  startTurns,
  type Turn,
  ticking,
  transcript,
  untilCompleted,
  untilLost,
  watchFeed
} from "./Turns.js"

/**
 * Issue 10's fault matrix against `./sam up` (real nats-server, Postgres, vm-agents and the demo
 * agent): kill -9 of the vm-agent, kill -9 of nats-server, SIGSTOP of Postgres for 10 s, Ctrl-C and
 * a new `sam up`, each while a task-mode turn and a conversation turn run on one node. Afterwards,
 * within 60 s of the fault clearing, each task and session is in a truthful state, the transcript
 * says what happened with `seq` contiguous and unique, and nothing is left running or prompting.
 *
 * A fault the turn can outlive (NATS, Postgres) strikes a turn that streams output for a few seconds:
 * the turn must end as it would have without the fault, every line of output once. A fault that takes
 * the agent's process with it (the vm-agent, the stack) strikes `run sleep 60`: the turn is lost, and
 * must end as lost. One stack for the whole file; each cell starts its own pair of tasks.
 */

const TICKS = 12

describe("the fault matrix: every turn ends truthfully", async () => {
  const setup = await makeEnv()
  const env = {
    ...setup.env,
    // Faster signs of life and a shorter bound for a turn with none (defaults 5 s and 60 s).
    SAM_NODE_HEARTBEAT_MS: "1000",
    SAM_SESSION_LOST_AFTER_MS: "20000",
    // Every cell's tasks on one node: tasks whose turn was lost await a follow-up, holding their slot.
    SAM_NODE_MAX_WORKSPACES: "12",
    // No web app: these faults are the API's and the actors' to survive (and it keeps the start short).
    SAM_WEB_DIST: join(setup.dataDir, "no-web")
  }
  let up: SamUp
  let client: Api
  let projectId: string

  beforeAll(async () => {
    // Generous: on a machine busy with other suites a start has taken over a minute.
    up = await startSamUp(env, 110_000)
    client = await api(setup.gateway, setup.dataDir)
    const project = await client.call("POST", "/projects", { name: "matrix", repoUrl: setup.repo })
    expect(project.status).toBe(201)
    projectId = project.body.id
  }, 120_000)
  let failed = false
  afterEach(async (context) => {
    if (context.task.result?.state === "fail") failed = true
    // The log's multi-line lease records (every shard lost and taken again around a NATS restart) left out.
    if (context.task.result?.state === "fail")
      console.log(
        `sam up's output:\n${up
          .output()
          .replace(/\n {2}\S[^\n]*/g, "")
          .slice(-12000)}`
      )
  })
  afterAll(async () => {
    if (up !== undefined) await stopSamUp(up)
    // A failure's data directory stays for a look (node logs, the JetStream store, the database).
    if (failed) console.log(`kept ${setup.dataDir}`)
    else await rm(setup.dataDir, { recursive: true, force: true })
  })

  /** The vm-agent process of `nodeId` in this stack. */
  const vmAgentPid = async (nodeId: string) => vmAgentPids(`SAM_NODE_ID=${nodeId}`, `SAM_DATA_DIR=${setup.dataDir}`)[0]

  const log = (cell: string, since: number, turns: ReadonlyArray<Turn>, outcome: ReadonlyArray<{ status: string }>) =>
    console.log(
      `${cell}: ${turns.map((t, i) => `${t.mode} ${outcome[i]?.status}`).join(", ")}; truthful ${Date.now() - since} ms after the fault cleared`
    )

  it("kill -9 of the vm-agent: both turns end as lost, the restarted node says so", async () => {
    const { task, conversation } = await startTurns(client, projectId, sleeping)
    const feed = await watchFeed(setup.gateway, client, [task.sessionId, conversation.sessionId])
    const nodes = [...new Set([task.nodeId, conversation.nodeId])]
    const victims = await Promise.all(nodes.map((n) => waitFor(`the vm-agent of ${n}`, () => vmAgentPid(n), 5_000)))
    for (const pid of victims) process.kill(pid, "SIGKILL")
    const cleared = Date.now()
    // Back within the bound (restarted in 1 s), the node says the turn was lost and the task awaits a
    // follow-up; on a machine so loaded that the restart takes longer, failing as silent is truthful too.
    const ends = await Promise.all([task, conversation].map((turn) => untilLost(client, turn, 60_000)))
    log("vm-agent kill -9", cleared, [task, conversation], ends)
    await feed.expectWhole(task.sessionId)
    await feed.expectWhole(conversation.sessionId)
    feed.close()
    await expectNothingWorking(client, projectId)
    // The agents outlived their vm-agent (process groups of their own): the restarted one ended them.
    await waitFor(
      "no agent still running sleep 60",
      async () => (await stackProcesses(setup.dataDir, "sleep 60")).length === 0,
      10_000
    )
  }, 90_000)

  it("kill -9 of nats-server: both turns go on and end as they would have, no output lost or repeated", async () => {
    const { task, conversation } = await startTurns(client, projectId, ticking(TICKS))
    const feed = await watchFeed(setup.gateway, client, [task.sessionId, conversation.sessionId])
    const natsConf = join(setup.dataDir, "nats", "nats.conf")
    const [natsPid] = await pids(natsConf)
    expect(natsPid).toBeDefined()
    process.kill(natsPid as number, "SIGKILL")
    // A client that subscribes while NATS is down (its snapshot cannot be read yet) gets everything too.
    const during = await watchFeed(setup.gateway, client, [task.sessionId, conversation.sessionId])
    await waitFor(
      "nats-server restarted",
      async () => {
        const now = await pids(natsConf)
        return now.length === 1 && now[0] !== natsPid
      },
      15_000
    )
    const cleared = Date.now()
    const ends = await Promise.all([task, conversation].map((turn) => untilCompleted(client, turn, TICKS, 60_000)))
    log("nats-server kill -9", cleared, [task, conversation], ends)
    // A client connected through the outage saw every entry once: the feed re-read what NATS lost.
    for (const watch of [feed, during]) {
      await watch.expectWhole(task.sessionId)
      await watch.expectWhole(conversation.sessionId)
      watch.close()
    }
    await expectNothingWorking(client, projectId)
  }, 90_000)

  it("SIGSTOP of Postgres for 10 s: both turns go on and end as they would have, no output lost or repeated", async () => {
    const { task, conversation } = await startTurns(client, projectId, ticking(TICKS))
    const feed = await watchFeed(setup.gateway, client, [task.sessionId, conversation.sessionId])
    const pgData = join(setup.dataDir, "postgres", "data")
    const [postmaster] = await pids(`postgres -D ${pgData}`)
    expect(postmaster).toBeDefined()
    // The whole server: the postmaster and every backend, as a machine that froze would.
    const frozen = await processTree(postmaster as number)
    const statuses: Array<number> = []
    try {
      // Inside the try: whatever was frozen is resumed, also should this fail midway (a backend listed a moment
      // ago may have ended: ESRCH, which once threw here and left the server frozen behind the test run).
      for (const pid of frozen) {
        try {
          process.kill(pid, "SIGSTOP")
        } catch {}
      }
      // The fault itself lasts 10 s; meanwhile the API is asked, to see that the database is really gone.
      const until = Date.now() + 10_000
      while (Date.now() < until) {
        statuses.push((await client.call("GET", "/me")).status)
        await new Promise((done) => setTimeout(done, Math.max(0, Math.min(500, until - Date.now()))))
      }
    } finally {
      for (const pid of frozen) {
        try {
          process.kill(pid, "SIGCONT")
        } catch {}
      }
    }
    const cleared = Date.now()
    expect(statuses, "the API while Postgres was frozen").toContain(503)
    const ends = await Promise.all([task, conversation].map((turn) => untilCompleted(client, turn, TICKS, 60_000)))
    log("Postgres SIGSTOP 10 s", cleared, [task, conversation], ends)
    await feed.expectWhole(task.sessionId)
    await feed.expectWhole(conversation.sessionId)
    feed.close()
    await expectNothingWorking(client, projectId)
  }, 90_000)

  it("a permission answer in flight when the vm-agent dies: the transcript says the agent never had it", async () => {
    const created = await client.call("POST", `/projects/${projectId}/tasks`, {
      prompt: "say asking\nask-permission Deploy\nsay deployed",
      mode: "conversation"
    })
    expect(created.status).toBe(201)
    const taskId = created.body.id as string
    const asked = await waitFor(
      "the permission request in the snapshot",
      async () => {
        const task = (await client.call("GET", `/tasks/${taskId}`)).body
        if (!task.sessionId) return undefined
        const session = (await client.call("GET", `/sessions/${task.sessionId}`)).body
        const request = session.snapshot?.permissions?.[0]
        return request === undefined ? undefined : { task, request }
      },
      45_000
    )
    const { sessionId, nodeId } = asked.task
    const requestId = asked.request.requestId as string
    // The vm-agent freezes, the answer is recorded and sent, and the vm-agent dies before it reads it.
    const pid = (await waitFor("the vm-agent", () => vmAgentPid(nodeId), 5_000)) as number
    process.kill(pid, "SIGSTOP")
    const answer = await client.call("POST", `/sessions/${sessionId}/permissions/${requestId}`, { optionId: "allow" })
    expect(answer.status).toBe(202)
    process.kill(pid, "SIGKILL")
    const cleared = Date.now()
    const turn: Turn = { mode: "conversation", taskId, sessionId, nodeId }
    const ended = await untilLost(client, turn, 60_000)
    if (ended.status === "failed") {
      // The restart took longer than the healer's bound (a loaded machine): the session failed as silent,
      // and a failed session takes no answer; its transcript ends saying why.
      const { entries } = await transcript(client, sessionId)
      expect(entries.at(-1)?.event).toMatchObject({ type: "failed", source: "control_plane" })
      console.log("permission answer: the vm-agent came back after the healer's bound; the session failed as silent")
      return
    }
    const { entries } = await waitFor(
      "the answer recorded as undelivered",
      async () => {
        const page = await transcript(client, sessionId)
        return page.entries.some((e) => e.event.type === "permission-resolved" && e.event.outcome === "undelivered")
          ? page
          : undefined
      },
      30_000
    )
    console.log(`permission answer lost with its vm-agent: said so ${Date.now() - cleared} ms after the kill`)
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1))
    const answered = entries.findIndex((e) => e.event.type === "permission-answered")
    const undelivered = entries.findIndex(
      (e) => e.event.type === "permission-resolved" && e.event.outcome === "undelivered"
    )
    expect(entries[answered]?.event).toMatchObject({ requestId, outcome: "allow" })
    expect(entries[undelivered]?.event).toMatchObject({ requestId, source: "control_plane" })
    expect(entries[undelivered]?.event.reason).toContain("the node refused session.permission-answer")
    expect(undelivered).toBeGreaterThan(answered)
    expect(said(entries)).not.toContain("deployed")
    await expectNothingWorking(client, projectId)
  }, 90_000)

  it("Ctrl-C and a new sam up: both turns end as lost, reported by the node started again", async () => {
    const { task, conversation } = await startTurns(client, projectId, sleeping)
    const follower = followWithClient(setup.gateway, client, [task.sessionId, conversation.sessionId])
    await follower.caughtUp(task.sessionId)
    await follower.caughtUp(conversation.sessionId)
    const stopMs = await stopSamUp(up, 30_000)
    expect(await up.exited).toBe(0)
    // Nothing of the stack outlives it: no server, vm-agent, agent or its `sleep 60`.
    const left = await waitFor(
      "the stack's processes to end",
      async () => {
        const left = await stackProcesses(setup.dataDir)
        return left.length === 0 ? left : undefined
      },
      5_000
    ).catch(async () => stackProcesses(setup.dataDir))
    expect(left, "processes left by sam up").toEqual([])
    // Down for a while, as after a real Ctrl-C: longer, with the start, than the healer's bound (20 s), so
    // the heal that comes due meanwhile must not take the nodes' silence for their death.
    await new Promise((done) => setTimeout(done, 15_000))
    up = await startSamUp(env, 110_000)
    const cleared = Date.now()
    console.log(`Ctrl-C: stopped in ${stopMs} ms; up again`)
    client = await api(setup.gateway, setup.dataDir)
    const ends = await Promise.all([task, conversation].map((turn) => untilLost(client, turn, 60_000, true)))
    log("Ctrl-C and restart", cleared, [task, conversation], ends)
    // A client that stayed open through it reconnected by itself and saw each entry once.
    await follower.expectWhole(task.sessionId)
    await follower.expectWhole(conversation.sessionId)
    follower.close()
    await expectNothingWorking(client, projectId)
  }, 200_000)
})
