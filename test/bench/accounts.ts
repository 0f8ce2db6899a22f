/**
 * What the node's own NATS account costs (ADR 0016): a node's reports cross a service import into
 * SAM and its commands come back through an imported pull API, where before they stayed inside one
 * account. Measured against the same calls from a user inside SAM (the raw baseline), in one run:
 * JetStream publishes to SAM_AGENT (each acknowledged), and pulling + acking messages of a durable
 * consumer on SAM_NODE.
 *
 *   node --import tsx test/bench/accounts.ts [messages]
 */
import { jetstream } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/nats-core"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Accounts, Consume, Credentials, makeId, Nats, Subjects } from "@sam/bus"
import type { LocalStack } from "@sam/infra"
import { Effect, Redacted } from "effect"
import { partyCredentials } from "../src/Parties.js"
import { runOnStack, writeSection } from "./BenchReport.js"

const N = Number(process.argv[2] ?? 3000)
const WINDOW = 64

const open = (url: string, creds: Redacted.Redacted<string>, inboxPrefix: string) =>
  connect({
    servers: url,
    authenticator: credsAuthenticator(new TextEncoder().encode(Redacted.value(creds))),
    inboxPrefix
  })

/** N acknowledged JetStream publishes, at most WINDOW in flight. */
const publishAll = async (nc: NatsConnection, subject: string, apiPrefix?: string) => {
  const js = jetstream(nc, apiPrefix === undefined ? {} : { apiPrefix })
  const payload = JSON.stringify({ text: "x".repeat(200) })
  const started = performance.now()
  const inFlight = new Set<Promise<unknown>>()
  for (let i = 0; i < N; i++) {
    const p: Promise<unknown> = js.publish(subject, payload).finally(() => inFlight.delete(p))
    inFlight.add(p)
    if (inFlight.size >= WINDOW) await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
  return performance.now() - started
}

/** Pull and ack N messages of a durable consumer. */
const consumeAll = async (nc: NatsConnection, durable: string, apiPrefix?: string) => {
  const js = jetstream(nc, apiPrefix === undefined ? {} : { apiPrefix })
  const consumer = await js.consumers.get("SAM_NODE", durable)
  const started = performance.now()
  let seen = 0
  const messages = await consumer.consume({ max_messages: 256, expires: 5000 })
  for await (const m of messages) {
    m.ack()
    if (++seen === N) break
  }
  await nc.flush()
  return performance.now() - started
}

/** One party, fresh: its node id, credentials and consumer loaded with N commands; its publish and pull times. */
const measure = (stack: LocalStack.Stack, kind: "inside" | "own") =>
  Effect.gen(function* () {
    const { js } = yield* Nats
    const nodeId = makeId("node")
    const durable = Subjects.nodeConsumerName(nodeId)
    const creds =
      kind === "inside"
        ? // Baseline: a user inside SAM with the node's subjects (the layout before ADR 0016).
          (yield* Credentials.mintUser(stack.signing, "bench-inside", {
            publish: {
              allow: [
                Subjects.agentAll(nodeId),
                `$JS.API.CONSUMER.INFO.SAM_NODE.${durable}`,
                `$JS.API.CONSUMER.MSG.NEXT.SAM_NODE.${durable}`,
                `$JS.ACK.SAM_NODE.${durable}.>`
              ]
            },
            subscribe: { allow: [`${Subjects.nodeInboxPrefix(nodeId)}.>`] }
          })).creds
        : (yield* partyCredentials(
            { kind: "node", nodeId },
            { natsUrl: stack.natsUrl, systemCreds: stack.systemCreds, authority: stack.authority }
          )).user.creds
    yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeId))
    const payload = JSON.stringify({ text: "y".repeat(200) })
    for (let i = 0; i < N; i++)
      yield* Effect.promise(() => js.publish(Subjects.nodeCommand(nodeId, "bench.cmd"), payload))
    const nc = yield* Effect.promise(() => open(stack.natsUrl, creds, Subjects.nodeInboxPrefix(nodeId)))
    const prefix = kind === "own" ? Accounts.nodeJsApiPrefix : undefined
    const pub = yield* Effect.promise(() => publishAll(nc, Subjects.agentReport(nodeId, "bench.report"), prefix))
    const pull = yield* Effect.promise(() => consumeAll(nc, durable, prefix))
    yield* Effect.promise(() => nc.close())
    return { pub, pull }
  })

const main = (stack: LocalStack.Stack) =>
  Effect.gen(function* () {
    // Two rounds, interleaved, the better of each kept: the first calls of a run warm the server up.
    const best = { pubInside: Infinity, pubOwn: Infinity, pullInside: Infinity, pullOwn: Infinity }
    for (let round = 0; round < 2; round++) {
      const inside = yield* measure(stack, "inside")
      const own = yield* measure(stack, "own")
      best.pubInside = Math.min(best.pubInside, inside.pub)
      best.pullInside = Math.min(best.pullInside, inside.pull)
      best.pubOwn = Math.min(best.pubOwn, own.pub)
      best.pullOwn = Math.min(best.pullOwn, own.pull)
    }
    const { pubInside, pubOwn, pullInside, pullOwn } = best
    const rate = (ms: number) => Math.round((N / ms) * 1000)
    const row = (path: string, ms: number) => `| ${path} | ${rate(ms)} | ${Math.round(ms)} |`
    yield* writeSection(
      "Node account boundary",
      [
        "## Node account boundary",
        "",
        `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/accounts.ts ${N}\``,
        "on this machine (2 cores, shared with other work; figures vary run to run), nats-server 2.9.",
        `${N} JetStream publishes of a 200-byte report (at most ${WINDOW} unacknowledged), then ${N} commands pulled`,
        "(two interleaved rounds, the better of each)",
        "and acked from a node's durable consumer: by a user of the node's own account, whose calls cross SAM's",
        "service exports (ADR 0016), against a user inside SAM with the same subjects (the layout before).",
        "",
        "| path | msgs/s | total ms |",
        "|---|---:|---:|",
        row("report publish, node account → SAM_AGENT", pubOwn),
        row("report publish, inside SAM (baseline)", pubInside),
        row("command pull + ack, node account", pullOwn),
        row("command pull + ack, inside SAM (baseline)", pullInside),
        "",
        `Ratios own account/inside: publish ${(pubInside / pubOwn).toFixed(2)}, pull ${(pullInside / pullOwn).toFixed(2)}.`,
        ""
      ].join("\n")
    )
  })

await runOnStack(main)
