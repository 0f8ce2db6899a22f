import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"

/**
 * A local fake of the Gemini API (`POST /v1beta/models/<model>:streamGenerateContent?alt=sse` and
 * `:generateContent`, key in `x-goog-api-key`) on loopback, for running the real Gemini CLI without an account.
 * Documented shapes: each SSE `data:` chunk is a `GenerateContentResponse` (`candidates[].content.parts[]` with
 * `text`, `thought: true` for thoughts, `functionCall {name, args}`; `finishReason`; `usageMetadata`); errors are
 * `{"error":{"code","message","status","details"}}`, an invalid key being 400 `INVALID_ARGUMENT` with reason
 * `API_KEY_INVALID`, a quota 429 `RESOURCE_EXHAUSTED`. Requests that offer tools take the scripted replies; the
 * CLI's side requests (routing, next-speaker checks) get a neutral JSON answer.
 */

export type Part =
  | { readonly text: string }
  | { readonly thought: string }
  | { readonly functionCall: { readonly name: string; readonly args: Record<string, unknown> } }

export type GeminiReply = { readonly parts: ReadonlyArray<Part> } | { readonly status: 400 | 429 }

export interface GeminiRequest {
  readonly path: string
  readonly apiKey: string | undefined
  readonly main: boolean
  // biome-ignore lint/suspicious/noExplicitAny: the request body as the CLI sent it
  readonly body: any
}

const ERRORS = {
  400: {
    code: 400,
    message: "API key not valid. Please pass a valid API key.",
    status: "INVALID_ARGUMENT",
    details: [
      { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com" }
    ]
  },
  429: { code: 429, message: "Resource has been exhausted (e.g. check quota).", status: "RESOURCE_EXHAUSTED" }
} as const

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => {
      body += chunk
    })
    req.on("end", () => resolve(body))
  })

const response = (parts: ReadonlyArray<Part>, model: string) => ({
  candidates: [
    {
      content: {
        role: "model",
        parts: parts.map((p) => ("thought" in p ? { text: p.thought, thought: true } : p))
      },
      finishReason: "STOP",
      index: 0
    }
  ],
  usageMetadata: { promptTokenCount: 120, candidatesTokenCount: 30, totalTokenCount: 150 },
  modelVersion: model
})

export const startFakeGemini = Effect.acquireRelease(
  Effect.promise(async () => {
    const queue: Array<GeminiReply> = []
    const requests: Array<GeminiRequest> = []
    const server = createServer(async (req, res) => {
      // biome-ignore lint/suspicious/noExplicitAny: JSON from the CLI
      let body: any = {}
      try {
        body = JSON.parse(await readBody(req))
      } catch {}
      const path = (req.url ?? "/").split("?")[0] ?? "/"
      const main = Array.isArray(body.tools) && body.tools.length > 0
      requests.push({ path, apiKey: req.headers["x-goog-api-key"] as string | undefined, main, body })
      const model = /models\/([^:]+)/.exec(path)?.[1] ?? "gemini-fake"
      const reply: GeminiReply = main
        ? (queue.shift() ?? { parts: [{ text: "Done." }] })
        : { parts: [{ text: JSON.stringify({ reasoning: "the user speaks next", next_speaker: "user" }) }] }
      if ("status" in reply) {
        res.writeHead(reply.status, { "content-type": "application/json" })
        return res.end(JSON.stringify({ error: ERRORS[reply.status] }))
      }
      if (path.endsWith(":countTokens")) {
        res.writeHead(200, { "content-type": "application/json" })
        return res.end(JSON.stringify({ totalTokens: 120 }))
      }
      if (path.endsWith(":streamGenerateContent")) {
        res.writeHead(200, { "content-type": "text/event-stream" })
        res.write(`data: ${JSON.stringify(response(reply.parts, model))}\r\n\r\n`)
        return res.end()
      }
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify(response(reply.parts, model)))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as AddressInfo
    return {
      url: `http://127.0.0.1:${port}`,
      requests,
      script: (...replies: ReadonlyArray<GeminiReply>) => {
        queue.push(...replies)
      },
      server
    }
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)
