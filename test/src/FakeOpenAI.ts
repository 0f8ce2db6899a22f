import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"

/**
 * A local fake of the OpenAI Responses API (`POST /v1/responses`, streaming) on loopback, for running the real
 * Codex adapter without an account. Documented shapes: the SSE events `response.created`,
 * `response.output_item.added`/`.done` (reasoning with its summary, message with `output_text`, `function_call`),
 * `response.reasoning_summary_text.delta`, `response.output_text.delta`, and `response.completed` with `usage`;
 * errors as `{"error":{"message","type","param","code"}}` with 401 `invalid_api_key` and 429
 * `rate_limit_exceeded`. The same script also answers the Chat Completions API (`POST /v1/chat/completions`,
 * streaming `chat.completion.chunk`s with `delta.content`, `delta.reasoning_content` and `delta.tool_calls`, a final
 * usage chunk and `data: [DONE]`), for adapters on an OpenAI-compatible provider (OpenCode). Requests without tools
 * (a session title) get a short text there. Each test scripts the replies in order; when none is left it answers
 * "Done.".
 */

export type Item =
  | { readonly type: "reasoning"; readonly text: string }
  | { readonly type: "message"; readonly text: string }
  | { readonly type: "function_call"; readonly name: string; readonly arguments: Record<string, unknown> }

export type OpenAIReply = { readonly items: ReadonlyArray<Item> } | { readonly status: 401 | 429 }

export interface OpenAIRequest {
  readonly path: string
  readonly authorization: string | undefined
  /** a request with tools: the agent's own loop, not a side request */
  readonly main: boolean
  // biome-ignore lint/suspicious/noExplicitAny: the request body as the adapter sent it
  readonly body: any
}

const ERRORS = {
  401: { message: "Incorrect API key provided.", type: "invalid_request_error", param: null, code: "invalid_api_key" },
  429: { message: "Rate limit reached for requests", type: "requests", param: null, code: "rate_limit_exceeded" }
} as const

let counter = 0

const stream = (res: ServerResponse, model: string, items: ReadonlyArray<Item>) => {
  const id = `resp_fake${++counter}`
  const base = {
    id,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status: "in_progress",
    model,
    output: []
  }
  const events: Array<Record<string, unknown>> = [{ type: "response.created", response: base }]
  const output: Array<Record<string, unknown>> = []
  items.forEach((item, output_index) => {
    const itemId = `${item.type}_${counter}_${output_index}`
    if (item.type === "reasoning") {
      const done = { type: "reasoning", id: itemId, summary: [{ type: "summary_text", text: item.text }] }
      events.push({ type: "response.output_item.added", output_index, item: { ...done, summary: [] } })
      events.push({
        type: "response.reasoning_summary_part.added",
        item_id: itemId,
        output_index,
        summary_index: 0,
        part: { type: "summary_text", text: "" }
      })
      events.push({
        type: "response.reasoning_summary_text.delta",
        item_id: itemId,
        output_index,
        summary_index: 0,
        delta: item.text
      })
      events.push({ type: "response.output_item.done", output_index, item: done })
      output.push(done)
    } else if (item.type === "message") {
      const done = {
        type: "message",
        id: itemId,
        role: "assistant",
        status: "completed",
        content: [{ type: "output_text", text: item.text, annotations: [] }]
      }
      events.push({ type: "response.output_item.added", output_index, item: { ...done, content: [] } })
      events.push({
        type: "response.output_text.delta",
        item_id: itemId,
        output_index,
        content_index: 0,
        delta: item.text
      })
      events.push({ type: "response.output_item.done", output_index, item: done })
      output.push(done)
    } else {
      const done = {
        type: "function_call",
        id: itemId,
        call_id: `call_${counter}_${output_index}`,
        name: item.name,
        arguments: JSON.stringify(item.arguments),
        status: "completed"
      }
      events.push({ type: "response.output_item.added", output_index, item: done })
      events.push({ type: "response.output_item.done", output_index, item: done })
      output.push(done)
    }
  })
  events.push({
    type: "response.completed",
    response: {
      ...base,
      status: "completed",
      output,
      usage: {
        input_tokens: 120,
        output_tokens: 30,
        total_tokens: 150,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens_details: { reasoning_tokens: 10 }
      }
    }
  })
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  for (const [sequence_number, event] of events.entries())
    res.write(`event: ${event.type}\ndata: ${JSON.stringify({ ...event, sequence_number })}\n\n`)
  res.end()
}

const chatStream = (res: ServerResponse, model: string, items: ReadonlyArray<Item>) => {
  const id = `chatcmpl-fake${++counter}`
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    res.write(
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
    )
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  let tools = 0
  for (const [n, item] of items.entries()) {
    const role = n === 0 ? { role: "assistant" } : {}
    if (item.type === "reasoning") chunk({ ...role, reasoning_content: item.text })
    else if (item.type === "message") chunk({ ...role, content: item.text })
    else
      chunk({
        ...role,
        tool_calls: [
          {
            index: tools++,
            id: `call_${counter}_${n}`,
            type: "function",
            function: { name: item.name, arguments: JSON.stringify(item.arguments) }
          }
        ]
      })
  }
  chunk({}, tools > 0 ? "tool_calls" : "stop")
  res.write(
    `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model, choices: [], usage: { prompt_tokens: 120, completion_tokens: 30, total_tokens: 150 } })}\n\n`
  )
  res.write("data: [DONE]\n\n")
  res.end()
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

/** Starts the fake on 127.0.0.1 in the current scope. */
export const startFakeOpenAI = Effect.acquireRelease(
  Effect.promise(async () => {
    const queue: Array<OpenAIReply> = []
    const requests: Array<OpenAIRequest> = []
    const server = createServer(async (req, res) => {
      const text = await readBody(req)
      // biome-ignore lint/suspicious/noExplicitAny: JSON from the adapter
      let body: any = {}
      try {
        body = JSON.parse(text)
      } catch {}
      const path = (req.url ?? "/").split("?")[0] ?? "/"
      requests.push({
        path,
        authorization: req.headers.authorization,
        main: Array.isArray(body.tools) && body.tools.length > 0,
        body
      })
      const chat = path === "/v1/chat/completions"
      if (path !== "/v1/responses" && !chat) {
        res.writeHead(404, { "content-type": "application/json" })
        return res.end(
          JSON.stringify({
            error: { message: `Unknown path ${path}`, type: "invalid_request_error", param: null, code: null }
          })
        )
      }
      const side = chat && !(Array.isArray(body.tools) && body.tools.length > 0)
      const reply: OpenAIReply = side
        ? { items: [{ type: "message", text: "A title" }] }
        : (queue.shift() ?? { items: [{ type: "message", text: "Done." }] })
      if ("status" in reply) {
        res.writeHead(reply.status, { "content-type": "application/json" })
        return res.end(JSON.stringify({ error: ERRORS[reply.status] }))
      }
      if (chat) chatStream(res, body.model ?? "gpt-fake", reply.items)
      else stream(res, body.model ?? "gpt-fake", reply.items)
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as AddressInfo
    return {
      url: `http://127.0.0.1:${port}`,
      requests,
      script: (...replies: ReadonlyArray<OpenAIReply>) => {
        queue.push(...replies)
      },
      server
    }
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)
