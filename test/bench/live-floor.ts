/**
 * Benchmark: the live path's floor on this machine. The least any implementation of the design does per event,
 * in plain JavaScript (no Effect, no actors, no ACP SDK), on the same nats-server, Postgres and streams as SAM:
 * agents that write a stamped `session/update` line every `1000/rate` ms (`floor/writer.mjs`), nodes that read
 * them and publish each session's run of lines as one JetStream report (`floor/node.mjs`), and in this process a
 * consumer of those reports that gives each event its `seq`, writes what came meanwhile in one statement (the
 * ledger), publishes each report's events to JetStream as one event, and acknowledges them; a gateway that reads
 * those events and sends them over a WebSocket; and one WebSocket client per session. The same shape as
 * `test/bench/live.ts`'s paced runs (20 sessions, 3 nodes, each session streaming for 4 s) and its burst (750 events
 * a session at once, beside raw core NATS), so the two compare.
 * Run: `node --import tsx test/bench/live-floor.ts [sessions]`, or as part of `test/bench/live.ts`, which compares
 * its own runs with these. Rewrites the "Live path: the design's floor" section of docs/benchmarks.md.
 */
import { spawn } from "node:child_process"
import { cpus } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, credsAuthenticator, headers } from "@nats-io/transport-node"
import { Subjects } from "@sam/bus"
import { Effect, Redacted } from "effect"
import Pg from "pg"
import WS, { WebSocketServer } from "ws"
import { z } from "zod"
import { startTestStack } from "../src/TestStack.js"
import { writeSection } from "./BenchReport.js"
import { cpuByKind, cpuPer } from "./ProcessCpu.js"

const NODES = 3
const SECONDS = 4
const OWN = "control plane, gateway, clients"

/** A node's report as the floor's consumer parses it (every boundary parses with zod). */
const Report = z.object({
  type: z.literal("floor.events"),
  sessionId: z.string(),
  events: z.array(z.object({ sessionUpdate: z.string(), content: z.object({ type: z.string(), text: z.string() }) }))
})

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
const now = () => performance.timeOrigin + performance.now()

/** One paced run of the floor: its latencies (ms) and CPU time per event (µs) by kind of process. */
export interface FloorRun {
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly cpuPerEvent: number
  readonly text: string
}

/**
 * The floor on a stack of its own (nats-server and Postgres, no control plane): a warm-up, then every session at
 * 50 and at 10 events/s. Its section for docs/benchmarks.md and the two runs.
 */
export const measureFloor = async (sessionCount: number, burstPerSession = 750) => {
  const running = await startTestStack()
  const { stack } = running
  try {
    const nc = await connect({
      servers: stack.natsUrl,
      authenticator: credsAuthenticator(new TextEncoder().encode(Redacted.value(stack.controlPlaneCreds))),
      name: "floor"
    })
    const js = jetstream(nc)
    const jsm = await jetstreamManager(nc)
    const pool = new Pg.Pool({ connectionString: Redacted.value(stack.databaseUrl), max: 4 })
    pool.on("error", () => {})
    await pool.query(
      "CREATE TABLE floor_events (session_id text NOT NULL, seq bigint NOT NULL, body text NOT NULL, PRIMARY KEY (session_id, seq))"
    )
    const encoder = new TextEncoder()
    const decoder = new TextDecoder()

    // JetStream publishes whose acknowledgements come back on one subscription (as bus/src/StreamPublisher.ts)
    const waiting = new Map<string, () => void>()
    let token = 0
    nc.subscribe("_INBOX.floor-cp.*", {
      callback: (_, msg) => {
        const t = msg.subject.slice("_INBOX.floor-cp.".length)
        waiting.get(t)?.()
        waiting.delete(t)
      }
    })
    const publish = (subject: string, data: Uint8Array, id: string) =>
      new Promise<void>((resolve) => {
        const t = String(++token)
        waiting.set(t, resolve)
        const h = headers()
        h.set("Nats-Msg-Id", id)
        nc.publish(subject, data, { reply: `_INBOX.floor-cp.${t}`, headers: h })
      })

    // The control plane's part: what came while the last batch was committed is the next batch (group commit).
    const seqs = new Map<string, number>()
    let batch: Array<JsMsg> = []
    let committing = false
    let statements = 0
    const commit = async (messages: Array<JsMsg>) => {
      const rows = { session: [] as Array<string>, seq: [] as Array<number>, body: [] as Array<string> }
      const events: Array<{ subject: string; data: Uint8Array; id: string }> = []
      for (const msg of messages) {
        const report = Report.parse(JSON.parse(decoder.decode(msg.data)))
        const first = (seqs.get(report.sessionId) ?? 0) + 1
        report.events.forEach((event, i) => {
          rows.session.push(report.sessionId)
          rows.seq.push(first + i)
          rows.body.push(JSON.stringify(event))
        })
        seqs.set(report.sessionId, first + report.events.length - 1)
        const event = { type: "floor.session-events", sessionId: report.sessionId, seq: first, events: report.events }
        events.push({
          subject: `sam.evt.floor.session.${report.sessionId}.events`,
          data: encoder.encode(JSON.stringify(event)),
          id: `evt-${report.sessionId}-${first}`
        })
      }
      statements++
      await pool.query({
        name: "floor-ledger",
        text: "INSERT INTO floor_events (session_id, seq, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])",
        values: [rows.session, rows.seq, rows.body]
      })
      await Promise.all(events.map((e) => publish(e.subject, e.data, e.id)))
      for (const msg of messages) msg.ack()
    }
    const next = () => {
      if (committing || batch.length === 0) return
      committing = true
      const messages = batch
      batch = []
      commit(messages).then(
        () => {
          committing = false
          next()
        },
        (error) => {
          console.error(error)
          process.exit(1)
        }
      )
    }
    /** A durable consumer of what comes to `stream` from now on, delivered to `callback`. */
    const consume = async (
      stream: string,
      name: string,
      filter: string,
      ack: AckPolicy,
      callback: (msg: JsMsg) => void
    ) => {
      await jsm.consumers.add(stream, {
        durable_name: name,
        filter_subject: filter,
        ack_policy: ack,
        deliver_policy: DeliverPolicy.New
      })
      return (await js.consumers.get(stream, name)).consume({ max_messages: 256, callback })
    }
    const reports = await consume(
      "SAM_AGENT",
      "floor-ingest",
      "sam.agent.*.rpt.floor-events.>",
      AckPolicy.Explicit,
      (msg) => {
        batch.push(msg)
        next()
      }
    )

    // The gateway's part: each event to its session's WebSocket.
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 })
    await new Promise((resolve) => server.once("listening", resolve))
    const sockets = new Map<string, WS>()
    server.on("connection", (socket, request) => {
      sockets.set(new URL(request.url ?? "/", "http://x").searchParams.get("session") ?? "", socket)
    })
    const feed = await consume("SAM_EVT", "floor-feed", "sam.evt.floor.>", AckPolicy.None, (msg) => {
      sockets.get(msg.subject.split(".")[4]!)?.send(msg.data)
    })

    // The clients: the time from each stamp to its arrival.
    const port = (server.address() as { port: number }).port
    const sessions = Array.from({ length: sessionCount }, (_, i) => `s${i}`)
    let latencies: Array<number> = []
    let received = 0
    let firstStamp = Number.POSITIVE_INFINITY
    let lastArrival = 0
    const clients = await Promise.all(
      sessions.map(
        (session) =>
          new Promise<WS>((resolve) => {
            const client = new WS(`ws://127.0.0.1:${port}/?session=${session}`)
            client.on("message", (data: Buffer) => {
              const at = now()
              const event = JSON.parse(data.toString("utf8")) as { events: Array<{ content: { text: string } }> }
              for (const e of event.events) {
                received++
                const stamp = Number(e.content.text.split(" ")[1])
                latencies.push(at - stamp)
                firstStamp = Math.min(firstStamp, stamp)
              }
              lastArrival = at
            })
            client.once("open", () => resolve(client))
          })
      )
    )

    let runs = 0
    /**
     * Every session's writer writes `count` events, one every `gap` ms (0: all at once); once all are received, the
     * CPU time per event by kind of process.
     */
    const stream = async (gap: number, count: number) => {
      latencies = []
      received = 0
      statements = 0
      firstStamp = Number.POSITIVE_INFINITY
      lastArrival = 0
      const cpuBefore = cpuByKind(OWN)
      const nodes = Array.from({ length: NODES }, (_, n) => {
        const config = {
          url: stack.natsUrl,
          credsFile: stack.controlPlaneCredsFile,
          node: `floor${n}`,
          run: `r${++runs}`,
          sessions: sessions.filter((_, i) => i % NODES === n),
          gap,
          count,
          // every session's stamps at once (as live.ts's paced runs), once every node has started its writers
          delay: 500
        }
        const child = spawn(
          process.execPath,
          [join(import.meta.dirname, "floor", "node.mjs"), JSON.stringify(config)],
          {
            stdio: ["ignore", "pipe", "inherit"]
          }
        )
        let out = ""
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
          out += chunk
        })
        return new Promise<{ nodeCpuMs: number; writersCpuMs: number }>((resolve, reject) =>
          child.on("close", (code) =>
            code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`floor node exited ${code}`))
          )
        )
      })
      const ended = await Promise.all(nodes)
      const expected = count * sessionCount
      const deadline = Date.now() + 60_000
      while (received < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
      const cpu = [
        ...cpuPer(cpuBefore, cpuByKind(OWN), received),
        { kind: "nodes", us: (ended.reduce((sum, e) => sum + e.nodeCpuMs, 0) * 1000) / received },
        { kind: "agents", us: (ended.reduce((sum, e) => sum + e.writersCpuMs, 0) * 1000) / received }
      ]
        .filter(({ us }) => us > 0)
        .sort((a, b) => b.us - a.us)
      return { expected, cpu, total: cpu.reduce((sum, c) => sum + c.us, 0) }
    }

    /** All sessions stream `perSecond` events each for SECONDS; the latencies and the CPU time per event. */
    const paced = async (perSecond: number, seconds = SECONDS) => {
      const { expected, cpu, total } = await stream(Math.round(1000 / perSecond), perSecond * seconds)
      const sorted = [...latencies].sort((a, b) => a - b)
      const rate = perSecond * sessionCount
      const text = [
        `Each of the ${sessionCount} sessions streaming ${perSecond} events/s for ${seconds} s (${rate} events/s in all; ${received} of ${expected} events received):`,
        `from the agent's write to the client, p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms;`,
        `${(received / statements).toFixed(1)} events per ledger statement.`,
        `CPU time per event, by process: ${cpu.map((c) => `${c.kind} ${c.us.toFixed(0)} µs`).join(", ")};`,
        `${total.toFixed(0)} µs in all: ${rate} events/s take ${((total * rate) / 10_000).toFixed(0)}% of one core (this machine has ${cpus().length * 100}%).`,
        ""
      ].join("\n")
      return {
        perSecond,
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        cpuPerEvent: total,
        text
      } satisfies FloorRun
    }

    /** Every session writes `perSession` events at once: events/s from the first written to the last received. */
    const burst = async (perSession: number) => {
      const { expected, cpu, total } = await stream(0, perSession)
      const elapsed = lastArrival - firstStamp
      const perSecond = (received / elapsed) * 1000
      // as live.ts's baseline: as many payloads of 400 bytes over core NATS, publish → subscribe
      const payload = encoder.encode("x".repeat(400))
      let rawReceived = 0
      // a subject the control plane's credentials may publish to and subscribe to, as live.ts's
      const subject = Subjects.pty("node_bench", "floor", "out")
      const sub = nc.subscribe(subject, { callback: () => void rawReceived++ })
      await nc.flush()
      const rawStart = now()
      for (let i = 0; i < received; i++) nc.publish(subject, payload)
      while (rawReceived < received) await new Promise((r) => setImmediate(r))
      const raw = (received / (now() - rawStart)) * 1000
      sub.unsubscribe()
      const text = [
        `Each of the ${sessionCount} sessions writing ${perSession} events at once (${received} of ${expected} events received):`,
        `${perSecond.toFixed(0)} events/s from the first event written to the last received (${elapsed.toFixed(0)} ms);`,
        `raw core NATS publish → subscribe of as many payloads of 400 bytes, in this process: ${raw.toFixed(0)} events/s (the floor's burst: ${(perSecond / raw).toFixed(3)} of it).`,
        `${(received / statements).toFixed(1)} events per ledger statement.`,
        `CPU time per event, by process: ${cpu.map((c) => `${c.kind} ${c.us.toFixed(0)} µs`).join(", ")}; ${total.toFixed(0)} µs in all.`,
        ""
      ].join("\n")
      return { events: received, elapsed, perSecond, raw, cpuPerEvent: total, text }
    }

    await paced(10, 1) // warm-up: the code of every process compiled by V8
    const target = await paced(50)
    const light = await paced(10)
    // as live.ts's burst: the first runs code nothing has run yet, the second is the one read
    await burst(burstPerSession)
    const bursts = await burst(burstPerSession)
    for (const client of clients) client.close()
    server.close()
    await feed.close()
    await reports.close()
    await pool.end()
    await nc.drain()

    const section = [
      "## Live path: the design's floor",
      "",
      `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/live-floor.ts ${sessionCount}\` (or \`live.ts\`, before its own runs)`,
      `on this machine (${cpus().length} cores, shared with other work; figures vary run to run), Node.js ${process.version}, nats-server 2.9, embedded Postgres 17.`,
      "The least any implementation of the design does per event, in plain JavaScript, on the same servers and",
      'streams as SAM, to compare with the paced runs of "Live path": agents that only write a stamped',
      "`session/update` line at their pace (`test/bench/floor/writer.mjs`); nodes that read them and publish each",
      "session's run of lines as one JetStream report, the next once the last is acknowledged (`floor/node.mjs`); one",
      `process with a consumer of the reports that gives each event its \`seq\`, writes what came meanwhile in one`,
      "statement, publishes each report's events as one JetStream event and acknowledges the reports, a gateway that",
      "sends each event to its session's WebSocket, and a client per session. No actors, no ACP, no checks of who",
      `owns what, no snapshots, no spans. ${sessionCount} sessions on ${NODES} nodes; every session's stamps at once.`,
      `Then, as the live path's burst, every session's agent writes ${burstPerSession} events at once, twice (the second is read), and`,
      "raw core NATS moves as many payloads in the same process: what the design can reach beside raw NATS here.",
      "",
      target.text,
      light.text,
      bursts.text
    ].join("\n")
    return { section, target, light, burst: bursts }
  } finally {
    await running.close()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const sessions = Number(process.argv[2] ?? 20)
  const { section } = await measureFloor(sessions)
  await Effect.runPromise(writeSection("Live path: the design's floor", section))
}
