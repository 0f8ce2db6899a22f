/**
 * Benchmark: the gateway's live feed. (1) Events per second fanned out to 100 WebSocket clients of
 * one session, and (2) the latency the gateway adds per event, both against a raw core NATS
 * subscriber of the same subject in the same run; (3) catch-up time of a client that reconnects
 * having missed 10,000 events, against reading the same rows from Postgres directly. Events are
 * published straight onto the session's SAM_EVT subject (the session actor is not what is measured;
 * see "Session reports"), and the transcript rows are inserted beforehand, as the actor would have.
 * The clients and the raw subscriber run in a child process, so their parsing does not slow the
 * gateway. Run: `node --import tsx test/bench/feed.ts [events] [clients]`. Rewrites the "Live feed"
 * section of docs/benchmarks.md.
 */
import { type ChildProcess, fork } from "node:child_process"
import { cpus } from "node:os"
import { fileURLToPath } from "node:url"
import { SqlClient } from "@effect/sql"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Domain, encode, makeId, Nats, natsLayer, Subjects } from "@sam/bus"
import { Auth, Gateway } from "@sam/gateway"
import { nodeWebSocket } from "@sam/gateway/client"
import { Migrations } from "@sam/sql"
import { Context, Effect, Layer, Redacted } from "effect"
import { runOnStack, writeSection } from "./BenchReport.js"

/** Parent → child; the child keeps the fields of `connect` for later commands. */
interface Message {
  readonly cmd: "connect" | "arm" | "wait" | "catchup" | "exit"
  readonly url?: string
  readonly token?: string
  readonly sessionId?: string
  readonly clients?: number
  readonly natsUrl?: string
  readonly creds?: string
  readonly subject?: string
  readonly upTo?: number
  readonly latency?: boolean
}
interface Reply {
  readonly wsDoneAt: number
  readonly rawDoneAt: number
  readonly inOrder: boolean
  /** per event: publish → the first client had it, and → the last of them had it */
  readonly first: Array<number>
  readonly last: Array<number>
  readonly raw: Array<number>
  readonly ms: Array<number>
}

if (process.argv[2] === "--clients") {
  runClients()
} else {
  await parent()
}

async function parent() {
  const N = Number(process.argv[2] ?? 3_000)
  const CLIENTS = Number(process.argv[3] ?? 100)
  const LATENCY_EVENTS = 300
  const MISSED = 10_000
  const CATCHUP_RUNS = 7
  const now = () => performance.timeOrigin + performance.now()
  const percentile = (values: ReadonlyArray<number>, p: number) => {
    const sorted = [...values].sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
  }

  const child = fork(fileURLToPath(import.meta.url), ["--clients"], { execArgv: ["--import", "tsx"] })
  const replies: Array<(reply: Reply) => void> = []
  child.on("message", (reply) => replies.shift()?.(reply as Reply))
  child.on("exit", (code) => {
    if (code !== 0) {
      process.stderr.write(`the clients' process exited with ${code}\n`)
      process.exit(1)
    }
  })
  const ask = (message: Message) =>
    Effect.promise(
      () =>
        new Promise<Reply>((resolve) => {
          replies.push(resolve)
          child.send(message)
        })
    )

  const main = (natsUrl: string, creds: Redacted.Redacted<string>) =>
    Effect.gen(function* () {
      yield* Migrations.migrate()
      const sql = yield* SqlClient.SqlClient
      const userId = makeId("user")
      const projectId = makeId("proj")
      yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'bench')`
      yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'b', 'file:///b')`
      yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${projectId}, ${userId}, 'owner')`
      const session = () =>
        Effect.gen(function* () {
          const sessionId = makeId("sess")
          yield* sql`INSERT INTO sessions (id, project_id, agent) VALUES (${sessionId}, ${projectId}, 'demo')`
          return sessionId
        })
      /** the transcript rows 1..count, as the session actor would have written them before publishing */
      const record = (sessionId: string, count: number) =>
        Effect.gen(function* () {
          for (let from = 1; from <= count; from += 1000) {
            const rows = Array.from({ length: Math.min(1000, count - from + 1) }, (_, i) => ({
              session_id: sessionId,
              seq: from + i,
              type: "text",
              payload: JSON.stringify({ type: "text", text: `chunk ${from + i} ${"x".repeat(80)}` }),
              prompt_epoch: 1,
              node_seq: from + i
            }))
            yield* sql`INSERT INTO session_events ${sql.insert(rows)}`
          }
          yield* sql`UPDATE sessions SET last_seq = ${count} WHERE id = ${sessionId}`
        })
      const live = yield* session()
      const missed = yield* session()
      yield* record(missed, MISSED)
      const { token } = yield* Effect.flatMap(Auth, (auth) => auth.createToken(userId, { name: "bench" })).pipe(
        Effect.provide(Auth.Default)
      )
      // One user holds every client: the per-user cap on feed connections (32 by default) is raised to fit them.
      const { url } = yield* Gateway.start({
        host: "127.0.0.1",
        port: 0,
        feed: { maxConnectionsPerUser: CLIENTS + 20 }
      })
      const publisher = Context.get(yield* Layer.build(natsLayer({ servers: natsUrl, creds, name: "bench-pub" })), Nats)
      const subject = Subjects.event(projectId, "session", live, "session.event")
      const publish = (seq: number, text: string) =>
        publisher.nc.publish(
          subject,
          encode(
            Domain.SessionEvents.SessionEventAppended.make({
              sessionId: live,
              seq,
              promptEpoch: 1,
              nodeSeq: seq,
              event: { type: "text", text }
            })
          )
        )

      yield* ask({
        cmd: "connect",
        url,
        token,
        sessionId: live,
        clients: CLIENTS,
        natsUrl,
        creds: Redacted.value(creds),
        subject
      })

      // (1) a burst of N events as fast as the publisher can go
      yield* ask({ cmd: "arm", upTo: N })
      const burstStart = now()
      for (let seq = 1; seq <= N; seq++) publish(seq, `chunk ${seq} ${"x".repeat(80)}`)
      yield* Effect.promise(() => publisher.nc.flush())
      const burst = yield* ask({ cmd: "wait" })
      const wsMs = burst.wsDoneAt - burstStart
      const rawMs = burst.rawDoneAt - burstStart

      // (2) latency: events one at a time, 5 ms apart, each carrying when it was sent
      yield* ask({ cmd: "arm", upTo: N + LATENCY_EVENTS, latency: true })
      for (let seq = N + 1; seq <= N + LATENCY_EVENTS; seq++) {
        publish(seq, `t=${now()} ${"x".repeat(80)}`)
        yield* Effect.sleep(5)
      }
      const lat = yield* ask({ cmd: "wait" })

      // (3) catch-up of MISSED events: one client (CATCHUP_RUNS times, each followed by the baseline,
      // medians of both), then ten at once; baseline: the rows read directly
      const readAll = Effect.gen(function* () {
        for (let after = 0; after < MISSED; after += 500) {
          yield* sql`SELECT seq, payload::text, at FROM session_events
            WHERE session_id = ${missed} AND seq > ${after} ORDER BY seq LIMIT 500`.withoutTransform
        }
      })
      const oneMs: Array<number> = []
      const readOneMs: Array<number> = []
      for (let run = 0; run < CATCHUP_RUNS; run++) {
        oneMs.push(...(yield* ask({ cmd: "catchup", sessionId: missed, clients: 1 })).ms)
        const readStart = now()
        yield* readAll
        readOneMs.push(now() - readStart)
      }
      const ten = yield* ask({ cmd: "catchup", sessionId: missed, clients: 10 })
      const one = percentile(oneMs, 50)
      const readMs = percentile(readOneMs, 50)
      const readTenStart = now()
      yield* Effect.all(
        Array.from({ length: 10 }, () => readAll),
        { concurrency: "unbounded", discard: true }
      )
      const readTenMs = now() - readTenStart
      yield* ask({ cmd: "exit" })

      const rate = (ms: number) => ((N / ms) * 1000).toFixed(0)
      const ms = (value: number) => value.toFixed(1)
      const section = [
        "## Live feed",
        "",
        `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/feed.ts ${N} ${CLIENTS}\``,
        `on this machine (${cpus().length} cores, shared with other work; figures vary run to run), Node.js ${process.version}, nats-server 2.9, embedded Postgres 17.`,
        `One session followed by ${CLIENTS} WebSocket clients of one gateway (one bus subscription, each event decoded and`,
        "serialized once); the clients and the raw core NATS subscriber of the same subject run in a separate process.",
        'Events are published straight onto the session\'s SAM_EVT subject (the session actor is measured in "Session reports").',
        "",
        "| path | events/s | frames/s | total ms |",
        "|---|---:|---:|---:|",
        `| ${N} events in a burst, to each of ${CLIENTS} WebSocket clients | ${rate(wsMs)} | ${((N * CLIENTS * 1000) / wsMs).toFixed(0)} | ${wsMs.toFixed(0)} |`,
        `| the same events, raw core NATS subscriber | ${rate(rawMs)} | ${rate(rawMs)} | ${rawMs.toFixed(0)} |`,
        "",
        `Ratio fan-out/raw (events/s): ${(rawMs / wsMs).toFixed(3)}; every client got every event once and in order: ${burst.inOrder}.`,
        "",
        `| latency, ${LATENCY_EVENTS} events 5 ms apart | p50 ms | p99 ms |`,
        "|---|---:|---:|",
        `| publish → the first of ${CLIENTS} WebSocket clients | ${ms(percentile(lat.first, 50))} | ${ms(percentile(lat.first, 99))} |`,
        `| publish → the last of ${CLIENTS} WebSocket clients | ${ms(percentile(lat.last, 50))} | ${ms(percentile(lat.last, 99))} |`,
        `| publish → raw core NATS subscriber (baseline) | ${ms(percentile(lat.raw, 50))} | ${ms(percentile(lat.raw, 99))} |`,
        "",
        `Added by the gateway to the first client: ${ms(percentile(lat.first, 50) - percentile(lat.raw, 50))} ms at p50, ${ms(percentile(lat.first, 99) - percentile(lat.raw, 99))} ms at p99;`,
        `to the last (which includes the clients' own process reading ${CLIENTS} sockets): ${ms(percentile(lat.last, 50) - percentile(lat.raw, 50))} ms at p50.`,
        "",
        `| catch-up of ${MISSED} missed events (connect → caught-up) | ms | baseline: the same rows read from Postgres, 500 a page, ms | ratio |`,
        "|---|---:|---:|---:|",
        `| one client reconnecting (median of ${CATCHUP_RUNS}; fastest ${Math.min(...oneMs).toFixed(0)}, slowest ${Math.max(...oneMs).toFixed(0)}) | ${one.toFixed(0)} | ${readMs.toFixed(0)} | ${(one / readMs).toFixed(1)}× |`,
        `| ten clients reconnecting at once (the slowest) | ${Math.max(...ten.ms).toFixed(0)} | ${readTenMs.toFixed(0)} | ${(Math.max(...ten.ms) / readTenMs).toFixed(1)}× |`,
        ""
      ].join("\n")
      yield* writeSection("Live feed", section)
    }).pipe(Effect.scoped)

  await runOnStack(
    (stack) => main(stack.natsUrl, stack.controlPlaneCreds),
    () => {
      child.removeAllListeners("exit")
      ;(child as ChildProcess).kill()
    }
  )
}

/** The child: WebSocket clients of the feed and a raw NATS subscriber, driven by the parent over IPC. */
function runClients() {
  const now = () => performance.timeOrigin + performance.now()
  interface Client {
    last: number
    inOrder: boolean
  }
  const clients: Array<Client> = []
  const run = { target: 0, latency: false, done: 0, wsDoneAt: 0, rawDoneAt: 0, rawLast: 0 }
  let arrivals = new Map<number, { sent: number; first: number; last: number }>()
  let raw: Array<number> = []
  let finished: (() => void) | undefined
  const settle = () => {
    if (run.wsDoneAt > 0 && run.rawDoneAt > 0) finished?.()
  }
  const sentAt = (text: string) => Number(/^t=([\d.]+)/.exec(text)?.[1])
  const onEvent = (client: Client, seq: number, text: string) => {
    if (seq !== client.last + 1) client.inOrder = false
    client.last = seq
    if (run.latency) {
      const at = now()
      const seen = arrivals.get(seq)
      if (seen === undefined) arrivals.set(seq, { sent: sentAt(text), first: at, last: at })
      else seen.last = at
    }
    if (seq === run.target && ++run.done === clients.length) {
      run.wsDoneAt = now()
      settle()
    }
  }
  const open = async (url: string, token: string) => {
    const WS = await nodeWebSocket()
    const socket = new WS(`${url.replace(/^http/, "ws")}/api/v1/feed`, {
      headers: { authorization: `Bearer ${token}` }
    })
    await new Promise((resolve) => socket.once("open", resolve))
    return socket
  }
  const handlers: Record<Message["cmd"], (message: Message) => Promise<object>> = {
    connect: async (m) => {
      const nc = await connect({
        servers: m.natsUrl!,
        authenticator: credsAuthenticator(new TextEncoder().encode(m.creds!))
      })
      nc.subscribe(m.subject!, {
        callback: (_error, msg) => {
          const body = (msg.json() as { body: { seq: number; event: { text: string } } }).body
          run.rawLast = body.seq
          if (run.latency) raw.push(now() - sentAt(body.event.text))
          if (body.seq === run.target) {
            run.rawDoneAt = now()
            settle()
          }
        }
      })
      await nc.flush()
      await Promise.all(
        Array.from({ length: m.clients! }, async () => {
          const socket = await open(m.url!, m.token!)
          const client: Client = { last: 0, inOrder: true }
          clients.push(client)
          await new Promise<void>((resolve) => {
            socket.on("message", (data) => {
              const frame = JSON.parse(String(data))
              if (frame.type === "session.event") onEvent(client, frame.seq, frame.event.text)
              else if (frame.type === "caught-up") resolve()
            })
            socket.send(JSON.stringify({ type: "subscribe", sessions: [{ sessionId: m.sessionId!, afterSeq: 0 }] }))
          })
        })
      )
      return {}
    },
    arm: async (m) => {
      Object.assign(run, { target: m.upTo!, latency: m.latency === true, done: 0, wsDoneAt: 0, rawDoneAt: 0 })
      arrivals = new Map()
      raw = []
      return {}
    },
    wait: async () => {
      await new Promise<void>((resolve) => {
        finished = resolve
        settle()
      })
      const seen = [...arrivals.values()]
      return {
        wsDoneAt: run.wsDoneAt,
        rawDoneAt: run.rawDoneAt,
        inOrder: clients.every((c) => c.inOrder),
        first: seen.map((a) => a.first - a.sent),
        last: seen.map((a) => a.last - a.sent),
        raw
      }
    },
    catchup: async (m) => {
      const ms = await Promise.all(
        Array.from({ length: m.clients! }, async () => {
          const started = now()
          const socket = await open(m.url!, m.token!)
          let count = 0
          const elapsed = await new Promise<number>((resolve) => {
            socket.on("message", (data) => {
              const frame = JSON.parse(String(data))
              if (frame.type === "session.event") count++
              else if (frame.type === "session.events") count += frame.events.length
              else if (frame.type === "caught-up") resolve(now() - started)
            })
            socket.send(JSON.stringify({ type: "subscribe", sessions: [{ sessionId: m.sessionId!, afterSeq: 0 }] }))
          })
          socket.close()
          if (count !== 10_000) throw new Error(`caught up with ${count} events`)
          return elapsed
        })
      )
      return { ms }
    },
    exit: async () => {
      setTimeout(() => process.exit(0), 50)
      return {}
    }
  }
  let last: Message = { cmd: "connect" }
  process.on("message", (message: Message) => {
    if (message.cmd === "connect") last = message
    handlers[message.cmd]({ ...last, ...message }).then(
      (reply) => process.send?.(reply),
      (error) => {
        process.stderr.write(`child: ${message.cmd} failed: ${error}\n`)
        process.exit(1)
      }
    )
  })
}
