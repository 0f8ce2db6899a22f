import { once } from "node:events"
import type { AnyMessage } from "@agentclientprotocol/sdk"

/**
 * ACP messages as lines on `out` (`stream`). The lines written in one pass of the event loop go out in one write once
 * it is over (`process.nextTick`): an agent that streams many chunks at once wakes its reader once, not once per chunk
 * (issue 12), and a chunk written alone goes out at once. A pipe's writes are synchronous on Linux; should the pipe be
 * full, the next messages wait until it has room (and fail if `out` fails meanwhile). The SDK's own output path
 * (`ndJsonStream` over `Writable.toWeb`) takes a chain of promises, a writer lock and a byte copy per message.
 * `send` puts a line after the messages before it, once `out` has room, as the stream does: the demo agent's updates
 * go this way, past the SDK's chain of promises and `WritableStream`, which cost a streaming agent about 90 µs of CPU
 * a line at 50 lines a second (issue 12). `raw` puts a line at once, even while `out` is full; `flush` writes what
 * waits now (before the process exits).
 */
export const lineWriter = (out: NodeJS.WritableStream) => {
  let lines: Array<string> = []
  /** pending while `out` is full */
  let room: Promise<void> | undefined
  const flush = () => {
    if (lines.length === 0) return
    const text = lines.join("")
    lines = []
    if (out.write(text)) return
    const drained = once(out, "drain").then(() => {
      room = undefined
    })
    // what waits for it fails with it; the stream itself fails through the error listener below
    drained.catch(() => {})
    room = drained
  }
  const raw = (line: string) => {
    if (lines.length === 0) process.nextTick(flush)
    lines.push(`${line}\n`)
  }
  const send = (line: string): void | Promise<void> => (room === undefined ? raw(line) : room.then(() => raw(line)))
  const stream = new WritableStream<AnyMessage>({
    start: (controller) => {
      out.once("error", (error) => controller.error(error))
    },
    write: (message) => send(JSON.stringify(message))
  })
  return { stream, send, raw, flush }
}
