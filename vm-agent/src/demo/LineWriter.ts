import { once } from "node:events"
import type { AnyMessage } from "@agentclientprotocol/sdk"

/**
 * ACP messages as lines on `out`, each written at once: a pipe's writes are synchronous on Linux, so a write waits
 * only while the pipe is full (and fails if `out` fails meanwhile). The SDK's own output path (`ndJsonStream` over
 * `Writable.toWeb`) takes a chain of promises, a writer lock and a byte copy per message: what a streaming agent pays
 * per chunk (issue 12).
 */
export const lineWriter = (out: NodeJS.WritableStream) =>
  new WritableStream<AnyMessage>({
    start: (controller) => {
      out.once("error", (error) => controller.error(error))
    },
    write: (message) =>
      out.write(`${JSON.stringify(message)}\n`) ? undefined : once(out, "drain").then(() => undefined)
  })
