import { createInbox, headers, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core"

/** A message for a stream, with its de-duplication key (`Nats-Msg-Id`) and any other headers. */
export interface ToStore {
  readonly subject: string
  readonly data: Uint8Array
  readonly msgId: string
  /** sent with `Nats-Msg-Id` set on them */
  readonly headers?: MsgHdrs | undefined
}

/** What the stream answered for a message it stored. */
export interface StreamAck {
  readonly stream: string
  readonly seq: number
  /** true when the stream already had a message with this id within its duplicate window */
  readonly duplicate: boolean
}

export interface StreamPublisher {
  /**
   * Publish all of them now, in order, on the connection (nothing else is sent between them); the
   * promise settles with their acknowledgements, in order, once JetStream has stored every one (a repeat
   * it dropped counts as stored), or fails with the first refusal or after the timeout without an answer.
   */
  readonly publish: (messages: ReadonlyArray<ToStore>) => Promise<ReadonlyArray<StreamAck>>
  /** Stop listening for acknowledgements; what still waits fails. */
  readonly close: () => void
}

interface Batch {
  left: number
  settled: boolean
  readonly tokens: Array<string>
  readonly acks: Array<StreamAck>
  readonly done: (acks: ReadonlyArray<StreamAck>) => void
  readonly fail: (error: Error) => void
  timer?: ReturnType<typeof setTimeout>
}

const decoder = new TextDecoder()

/** The stream's acknowledgement, or why its answer is not one. */
const ackOf = (msg: Msg): StreamAck | string => {
  // no stream listens on the subject: the server answers with a status and no body
  if (msg.data.length === 0) return `no stream answered (${msg.headers?.code ?? "no status"})`
  try {
    const ack = JSON.parse(decoder.decode(msg.data)) as {
      readonly stream?: unknown
      readonly seq?: unknown
      readonly duplicate?: unknown
      readonly error?: { readonly description?: unknown }
    }
    if (typeof ack.stream === "string" && typeof ack.seq === "number" && ack.error === undefined)
      return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true }
    return `refused: ${String(ack.error?.description ?? "not an acknowledgement")}`
  } catch {
    return "an answer that is not JSON"
  }
}

/**
 * JetStream publishes whose acknowledgements come back on one subscription of the connection (issue 12).
 * The client's `js.publish` is a request per message (an entry in its reply mux, a timer, a promise race
 * and an error object each), which was the largest part of what an actor's outgoing event cost its
 * commit. Here a batch's messages are published at once, each with its `Nats-Msg-Id` and a reply subject
 * under one wildcard subscription, and one timer waits for all of their acknowledgements.
 */
export const makeStreamPublisher = (nc: NatsConnection, timeoutMs = 5_000): StreamPublisher => {
  // The connection's own inbox prefix, when its credentials only allow replies under one.
  const prefix = createInbox((nc as { readonly options?: { readonly inboxPrefix?: string } }).options?.inboxPrefix)
  /** by reply token: its batch, and its place in the batch */
  const waiting = new Map<string, { readonly batch: Batch; readonly index: number; readonly subject: string }>()
  let counter = 0
  const finish = (batch: Batch, error?: Error) => {
    if (batch.settled) return
    batch.settled = true
    clearTimeout(batch.timer)
    for (const token of batch.tokens) waiting.delete(token)
    if (error === undefined) batch.done(batch.acks)
    else batch.fail(error)
  }
  const sub = nc.subscribe(`${prefix}.*`, {
    callback: (error, msg) => {
      if (error !== null) return
      const token = msg.subject.slice(prefix.length + 1)
      const entry = waiting.get(token)
      if (entry === undefined) return // answered after its batch failed or timed out
      waiting.delete(token)
      const { batch, index, subject } = entry
      const ack = ackOf(msg)
      if (typeof ack === "string") return finish(batch, new Error(`publish to ${subject}: ${ack}`))
      batch.acks[index] = ack
      if (--batch.left === 0) finish(batch)
    }
  })
  const publish = (messages: ReadonlyArray<ToStore>) =>
    new Promise<ReadonlyArray<StreamAck>>((done, fail) => {
      if (messages.length === 0) return done([])
      const batch: Batch = { left: messages.length, settled: false, tokens: [], acks: [], done, fail }
      try {
        for (const message of messages) {
          const token = (counter++).toString(36)
          waiting.set(token, { batch, index: batch.tokens.length, subject: message.subject })
          batch.tokens.push(token)
          const h = message.headers ?? headers()
          h.set("Nats-Msg-Id", message.msgId)
          nc.publish(message.subject, message.data, { reply: `${prefix}.${token}`, headers: h })
        }
      } catch (error) {
        return finish(batch, error instanceof Error ? error : new Error(String(error)))
      }
      batch.timer = setTimeout(
        () => finish(batch, new Error(`publish: no acknowledgement within ${timeoutMs} ms`)),
        timeoutMs
      )
      batch.timer.unref?.()
    })
  return {
    publish,
    close: () => {
      sub.unsubscribe()
      for (const { batch } of [...waiting.values()]) finish(batch, new Error("publish: the publisher was closed"))
    }
  }
}
