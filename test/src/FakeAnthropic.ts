import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"

/**
 * A local fake of the Anthropic Messages API (`POST /v1/messages`, streaming) on loopback, for running the real
 * Claude Code adapter without a model account. It follows the documented shapes: the SSE events `message_start`,
 * `content_block_start`/`_delta`/`_stop` (text, thinking with its signature, tool_use with `input_json_delta`),
 * `message_delta` with the stop reason and usage, `message_stop`; and the error body
 * `{"type":"error","error":{"type","message"},"request_id"}` with 401 `authentication_error`, 429
 * `rate_limit_error` (with `retry-after`) and 529 `overloaded_error`. Each test scripts the turns of the agent's
 * main loop (requests that offer tools); side requests (a session title) get a short text.
 */

export type Block =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "thinking"; readonly thinking: string }
  | { readonly type: "tool_use"; readonly name: string; readonly input: Record<string, unknown> }

/** The usage a reply reports; default 25 input tokens (`message_start`) and 42 output tokens (`message_delta`). */
export interface Usage {
  readonly input_tokens: number
  readonly output_tokens: number
}

export type Reply =
  | { readonly blocks: ReadonlyArray<Block>; readonly usage?: Usage }
  | { readonly status: 401 | 429 | 529; readonly message?: string }

/** A reply, or one made from the request (e.g. with the working directory the adapter told the model). */
export type Scripted = Reply | ((request: Request) => Reply)

/** The working directory Claude Code states in its system prompt ("Primary working directory: …"). */
export const workingDirectory = (request: Request) =>
  /Primary working directory: (\S+)/.exec(JSON.stringify(request.body))?.[1]?.replace(/\\n$/, "")

export interface Request {
  readonly path: string
  readonly apiKey: string | undefined
  readonly authorization: string | undefined
  readonly model: string | undefined
  readonly main: boolean
  // biome-ignore lint/suspicious/noExplicitAny: the request body as the adapter sent it
  readonly body: any
}

const ERROR_TYPES = { 401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error" } as const
const ERROR_MESSAGES = {
  401: "invalid x-api-key",
  429: "Number of request tokens has exceeded your per-minute rate limit",
  529: "Overloaded"
} as const

const sse = (res: ServerResponse, events: ReadonlyArray<readonly [string, Record<string, unknown>]>) => {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": "req_fake" })
  for (const [type, data] of events) res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`)
  res.end()
}

let messages = 0

const stream = (
  res: ServerResponse,
  model: string,
  blocks: ReadonlyArray<Block>,
  usage: Usage = { input_tokens: 25, output_tokens: 42 }
) => {
  const id = `msg_fake${++messages}`
  const events: Array<readonly [string, Record<string, unknown>]> = [
    [
      "message_start",
      {
        message: {
          id,
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: usage.input_tokens, output_tokens: 1 }
        }
      }
    ]
  ]
  blocks.forEach((block, index) => {
    if (block.type === "text") {
      events.push(["content_block_start", { index, content_block: { type: "text", text: "" } }])
      events.push(["content_block_delta", { index, delta: { type: "text_delta", text: block.text } }])
    } else if (block.type === "thinking") {
      events.push(["content_block_start", { index, content_block: { type: "thinking", thinking: "", signature: "" } }])
      events.push(["content_block_delta", { index, delta: { type: "thinking_delta", thinking: block.thinking } }])
      events.push(["content_block_delta", { index, delta: { type: "signature_delta", signature: "c2lnbmF0dXJl" } }])
    } else {
      events.push([
        "content_block_start",
        {
          index,
          content_block: { type: "tool_use", id: `toolu_fake${messages}_${index}`, name: block.name, input: {} }
        }
      ])
      events.push([
        "content_block_delta",
        { index, delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) } }
      ])
    }
    events.push(["content_block_stop", { index }])
  })
  const usesTool = blocks.some((b) => b.type === "tool_use")
  events.push([
    "message_delta",
    {
      delta: { stop_reason: usesTool ? "tool_use" : "end_turn", stop_sequence: null },
      usage: { output_tokens: usage.output_tokens }
    }
  ])
  events.push(["message_stop", {}])
  sse(res, events)
}

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => {
      body += chunk
    })
    req.on("end", () => resolve(body))
  })

/** Starts the fake on 127.0.0.1 in the current scope; `script` queues the main loop's next replies. */
export const startFakeAnthropic = Effect.acquireRelease(
  Effect.promise(async () => {
    const queue: Array<Scripted> = []
    const requests: Array<Request> = []
    const server = createServer(async (req, res) => {
      const text = await readBody(req)
      // biome-ignore lint/suspicious/noExplicitAny: JSON from the adapter
      let body: any = {}
      try {
        body = JSON.parse(text)
      } catch {}
      const path = (req.url ?? "/").split("?")[0] ?? "/"
      const main = Array.isArray(body.tools) && body.tools.length > 0
      const request: Request = {
        path,
        apiKey: req.headers["x-api-key"] as string | undefined,
        authorization: req.headers.authorization,
        model: body.model,
        main,
        body
      }
      requests.push(request)
      if (path === "/v1/messages/count_tokens") {
        res.writeHead(200, { "content-type": "application/json" })
        return res.end(JSON.stringify({ input_tokens: 25 }))
      }
      if (path !== "/v1/messages") {
        res.writeHead(404, { "content-type": "application/json" })
        return res.end(
          JSON.stringify({
            type: "error",
            error: { type: "not_found_error", message: `no ${path}` },
            request_id: "req_fake"
          })
        )
      }
      const next = main ? queue.shift() : { blocks: [{ type: "text" as const, text: "A title" }] }
      const reply: Reply =
        next === undefined
          ? { blocks: [{ type: "text", text: "Done." }] }
          : typeof next === "function"
            ? next(request)
            : next
      if ("status" in reply) {
        res.writeHead(reply.status, {
          "content-type": "application/json",
          "request-id": "req_fake",
          ...(reply.status === 429 ? { "retry-after": "1" } : {})
        })
        return res.end(
          JSON.stringify({
            type: "error",
            error: { type: ERROR_TYPES[reply.status], message: reply.message ?? ERROR_MESSAGES[reply.status] },
            request_id: "req_fake"
          })
        )
      }
      stream(res, body.model ?? "claude-fake", reply.blocks, reply.usage)
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as AddressInfo
    return {
      url: `http://127.0.0.1:${port}`,
      requests,
      /** the main loop's next replies, in order; when none is left it answers "Done." */
      script: (...replies: ReadonlyArray<Scripted>) => {
        queue.push(...replies)
      },
      server
    }
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)

export type FakeAnthropic = Effect.Effect.Success<typeof startFakeAnthropic>
