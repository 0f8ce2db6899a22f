import { request as httpRequest, type IncomingMessage, type RequestOptions } from "node:http"
import { request as httpsRequest } from "node:https"
import type { Client } from "@sam/gateway/client"

/**
 * The CLI's requests over `node:http` (or `node:https`) instead of `fetch`. Node's `fetch` (undici) parses
 * HTTP with a WebAssembly module that V8 optimizes on background threads, and a process exits only once
 * they finish: each CLI command that used `fetch` spent ~170 ms after its output before it could exit
 * (issue 12: `sam task list`). `node:http` parses natively and loads nothing of the kind.
 */
export const nodeTransport: Client.Transport = async ({ url, method, headers, body, signal }) => {
  const target = new URL(url)
  const request = target.protocol === "https:" ? httpsRequest : target.protocol === "http:" ? httpRequest : undefined
  if (request === undefined) throw new Error(`unsupported protocol ${target.protocol} (use http: or https:)`)
  const options: RequestOptions = {
    method,
    headers: body === undefined ? headers : { ...headers, "content-length": String(Buffer.byteLength(body)) },
    signal
  }
  return new Promise((resolve, reject) => {
    const req = request(target, options, (response: IncomingMessage) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        text += chunk
      })
      response.on("end", () => resolve({ status: response.statusCode ?? 0, text }))
      response.on("error", reject)
    })
    req.on("error", reject)
    req.end(body)
  })
}
