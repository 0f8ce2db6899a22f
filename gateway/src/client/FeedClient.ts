// Browser-safe: no Node module is imported at load time (`ws` only in Node, when first connecting);
// `@sam/bus` only for its types.
import type { Api } from "@sam/bus"
import type NodeWebSocket from "ws"

/** What the client needs of a WebSocket: the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { readonly data: unknown }) => void) | null
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}

/** Opens a socket to `url`; `token`, when given, is to be sent as a bearer header if the platform can. */
export type WebSocketFactory = (url: string, token: string | undefined) => Promise<WebSocketLike>

export type FeedStatus =
  | { readonly state: "connecting" }
  | { readonly state: "open"; readonly connectionId: string }
  | { readonly state: "closed"; readonly code: number; readonly reason: string; readonly reconnecting: boolean }

export interface FeedClientOptions {
  /** the gateway: `http://127.0.0.1:8080`; "" for the page's own origin in a browser */
  readonly baseUrl: string
  /** an API token or session token; without one a browser sends its session cookie */
  readonly token?: string
  readonly projects?: ReadonlyArray<string>
  /** sessions to follow, from `afterSeq` (default 0: the whole transcript) */
  readonly sessions?: ReadonlyArray<{ readonly sessionId: string; readonly afterSeq?: number }>
  readonly onFrame?: (frame: Api.ServerFrame) => void
  readonly onStatus?: (status: FeedStatus) => void
  readonly minBackoffMs?: number
  readonly maxBackoffMs?: number
  /** how to open sockets; default: `ws` in Node (token as a header), the global WebSocket elsewhere */
  readonly webSocket?: WebSocketFactory
  /** default true; false to call `connect()` yourself */
  readonly connect?: boolean
}

/** The `ws` package's WebSocket class, for Node (which has no global WebSocket before v22). */
export const nodeWebSocket = async (): Promise<typeof NodeWebSocket> => {
  const name = "ws"
  return ((await import(/* @vite-ignore */ name)) as { default: typeof NodeWebSocket }).default
}

const isNode = () => typeof process !== "undefined" && typeof process.versions?.node === "string"

/**
 * Sockets of the `ws` package's class `WS`, with the token as a bearer header; a refused upgrade closes as
 * 4000 + its HTTP status (4401). Node code that imports `ws` itself passes `wsFactory(WebSocket)` (the CLI:
 * its bundle then has no dynamic import to resolve at run time, infra/run-cached.cjs).
 */
export const wsFactory =
  (WS: typeof NodeWebSocket): WebSocketFactory =>
  async (url, token) => {
    const socket = new WS(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
    let refusedWith: number | undefined
    const adapter: WebSocketLike = {
      get readyState() {
        return socket.readyState
      },
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      send: (data) => socket.send(data),
      close: (code, reason) => socket.close(code, reason)
    }
    socket.on("open", () => adapter.onopen?.(undefined))
    socket.on("message", (data, isBinary) => adapter.onmessage?.({ data: isBinary ? data : String(data) }))
    socket.on("error", (error) => adapter.onerror?.(error))
    socket.on("close", (code, reason) =>
      adapter.onclose?.(
        refusedWith === undefined
          ? { code, reason: reason.toString() }
          : { code: 4000 + refusedWith, reason: `HTTP ${refusedWith}` }
      )
    )
    socket.on("unexpected-response", (_request, response) => {
      refusedWith = response.statusCode ?? 0
      socket.terminate()
    })
    return adapter
  }

/** In Node, by default: `ws`, imported when the first socket opens. */
const nodeFactory: WebSocketFactory = async (url, token) => wsFactory(await nodeWebSocket())(url, token)

/** Elsewhere: the global WebSocket, with the token in the URL (browsers cannot set headers on it). */
const globalFactory: WebSocketFactory = async (url, token) => {
  const Global = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket
  if (Global === undefined) throw new Error("no WebSocket here: pass options.webSocket")
  return new Global(token === undefined ? url : `${url}${url.includes("?") ? "&" : "?"}access_token=${token}`)
}

const feedUrl = (baseUrl: string) => {
  const origin = baseUrl !== "" ? baseUrl : ((globalThis as { location?: { href: string } }).location?.href ?? "")
  const url = new URL("/api/v1/feed", origin)
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
  return url.toString()
}

/**
 * A frame as a consumer takes it: a `session.events` frame is the `session.event` frames of its entries,
 * in order; any other frame is itself.
 */
export const framesOf = (frame: Api.ServerFrame): ReadonlyArray<Api.ServerFrame> =>
  frame.type === "session.events"
    ? frame.events.map((entry) => ({ type: "session.event" as const, sessionId: frame.sessionId, ...entry }))
    : [frame]

/**
 * A reconnecting client of the gateway's feed (see `Api` Feed.ts for the protocol). It keeps the
 * last seq it delivered per session and, after any reconnect, subscribes again from there, so its
 * consumer sees every session event once and in order, as a `session.event` frame (the entries of
 * a `session.events` frame one by one); a repeat is dropped (and counted). It
 * answers pings, and treats two heartbeats of silence as a dead connection. It stops reconnecting
 * only when closed, or when the gateway refuses the credential (4001, or an HTTP 401 as 4401).
 */
export class FeedClient implements AsyncIterable<Api.ServerFrame> {
  readonly stats = { connections: 0, duplicates: 0, gaps: 0 }
  private readonly projects = new Set<string>()
  private readonly sessions = new Map<string, number>()
  private socket: WebSocketLike | undefined
  private wanted = true
  private ended = false
  private attempt = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private lastHeard = 0
  private readonly queue: Array<Api.ServerFrame> = []
  private readonly waiting: Array<(result: IteratorResult<Api.ServerFrame>) => void> = []

  constructor(private readonly options: FeedClientOptions) {
    for (const project of options.projects ?? []) this.projects.add(project)
    for (const session of options.sessions ?? []) this.sessions.set(session.sessionId, session.afterSeq ?? 0)
    if (options.connect !== false) this.connect()
  }

  /** The last seq delivered for a session (its `afterSeq` before anything arrived). */
  lastSeq(sessionId: string): number | undefined {
    return this.sessions.get(sessionId)
  }

  subscribe(request: FeedSubscription) {
    const projects = request.projects ?? []
    const sessions = (request.sessions ?? []).map((s) => ({ sessionId: s.sessionId, afterSeq: s.afterSeq ?? 0 }))
    for (const project of projects) this.projects.add(project)
    for (const session of sessions) this.sessions.set(session.sessionId, session.afterSeq)
    this.send({ type: "subscribe", projects, sessions })
  }

  unsubscribe(request: { readonly projects?: ReadonlyArray<string>; readonly sessions?: ReadonlyArray<string> }) {
    for (const project of request.projects ?? []) this.projects.delete(project)
    for (const session of request.sessions ?? []) this.sessions.delete(session)
    this.send({ type: "unsubscribe", projects: request.projects ?? [], sessions: request.sessions ?? [] })
  }

  /** Connect now (also after `disconnect`). */
  connect() {
    if (this.ended) return
    this.wanted = true
    clearTimeout(this.timer)
    if (this.socket !== undefined) return
    this.status({ state: "connecting" })
    const factory = this.options.webSocket ?? (isNode() ? nodeFactory : globalFactory)
    factory(feedUrl(this.options.baseUrl), this.options.token).then(
      (socket) => this.attach(socket),
      (error) => this.closed(1006, String(error))
    )
  }

  /** Drop the connection and stay offline until `connect()`; what was delivered is remembered. */
  disconnect() {
    this.wanted = false
    clearTimeout(this.timer)
    this.socket?.close(1000, "client disconnect")
  }

  /** Disconnect for good; iterators end. */
  close() {
    this.disconnect()
    this.ended = true
    for (const resolve of this.waiting.splice(0)) resolve({ done: true, value: undefined })
  }

  [Symbol.asyncIterator](): AsyncIterator<Api.ServerFrame> {
    return {
      next: () => {
        const frame = this.queue.shift()
        if (frame !== undefined) return Promise.resolve({ done: false, value: frame })
        if (this.ended) return Promise.resolve({ done: true, value: undefined })
        return new Promise((resolve) => this.waiting.push(resolve))
      },
      return: () => {
        this.close()
        return Promise.resolve({ done: true, value: undefined })
      }
    }
  }

  private attach(socket: WebSocketLike) {
    this.socket = socket
    this.lastHeard = Date.now()
    socket.onmessage = (event) => typeof event.data === "string" && this.receive(event.data)
    socket.onclose = (event) => {
      if (this.socket === socket) this.closed(event.code, event.reason)
    }
    socket.onerror = () => {}
    socket.onopen = () => {
      this.stats.connections++
      const sessions = [...this.sessions].map(([sessionId, afterSeq]) => ({ sessionId, afterSeq }))
      if (this.projects.size > 0 || sessions.length > 0) {
        this.send({ type: "subscribe", projects: [...this.projects], sessions })
      }
    }
    if (!this.wanted) socket.close(1000, "client disconnect")
  }

  private receive(data: string) {
    this.lastHeard = Date.now()
    let frame: Api.ServerFrame
    try {
      frame = JSON.parse(data) as Api.ServerFrame
    } catch {
      return
    }
    if (frame.type === "session.events") {
      // frames are the gateway's and are not checked one by one; one not even a list is dropped
      if (Array.isArray(frame.events)) for (const one of framesOf(frame)) this.take(one)
      return
    }
    this.take(frame)
  }

  private take(frame: Api.ServerFrame) {
    switch (frame.type) {
      case "hello":
        this.attempt = 0
        this.status({ state: "open", connectionId: frame.connectionId })
        this.watch(frame.heartbeatMs)
        break
      case "ping":
        this.send({ type: "pong" })
        return
      case "session.event": {
        const last = this.sessions.get(frame.sessionId)
        if (last === undefined) return
        if (frame.seq <= last) {
          this.stats.duplicates++
          return
        }
        if (frame.seq !== last + 1) this.stats.gaps++
        this.sessions.set(frame.sessionId, frame.seq)
        break
      }
      case "error": {
        // A refused subscription is not asked for again on the next reconnect.
        const details = frame.details as { projectId?: string; sessionId?: string } | undefined
        if (details?.projectId !== undefined) this.projects.delete(details.projectId)
        if (details?.sessionId !== undefined) this.sessions.delete(details.sessionId)
        break
      }
    }
    this.deliver(frame)
  }

  private deliver(frame: Api.ServerFrame) {
    this.options.onFrame?.(frame)
    const resolve = this.waiting.shift()
    if (resolve !== undefined) resolve({ done: false, value: frame })
    else if (this.options.onFrame === undefined) this.queue.push(frame)
  }

  /** The server pings every heartbeat: two heartbeats of silence means the connection is gone. */
  private watch(heartbeatMs: number) {
    const socket = this.socket
    const check = () => {
      if (this.socket !== socket) return
      if (Date.now() - this.lastHeard > 2 * heartbeatMs) return socket?.close(4000, "no ping from the server")
      setTimeout(check, heartbeatMs).unref?.()
    }
    setTimeout(check, heartbeatMs).unref?.()
  }

  private closed(code: number, reason: string) {
    this.socket = undefined
    const refused = code === 4001 || code === 4401
    const reconnecting = this.wanted && !this.ended && !refused
    this.status({ state: "closed", code, reason, reconnecting })
    if (refused) this.close()
    if (!reconnecting) return
    const min = this.options.minBackoffMs ?? 100
    const delay = Math.min(this.options.maxBackoffMs ?? 10_000, min * 2 ** this.attempt++) * (0.5 + Math.random() / 2)
    this.timer = setTimeout(() => this.connect(), delay)
  }

  private send(frame: { readonly type: Api.ClientFrame["type"] } & Record<string, unknown>) {
    if (this.socket?.readyState === 1) this.socket.send(JSON.stringify(frame))
  }

  private status(status: FeedStatus) {
    this.options.onStatus?.(status)
  }
}

export interface FeedSubscription {
  readonly projects?: ReadonlyArray<string>
  readonly sessions?: ReadonlyArray<{ readonly sessionId: string; readonly afterSeq?: number }>
}
