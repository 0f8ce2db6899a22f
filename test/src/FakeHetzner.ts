import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { Clock, Effect } from "effect"

/**
 * A stand-in for the Hetzner Cloud API (https://docs.hetzner.cloud) for tests: the server, server type,
 * location, image and action endpoints SAM uses, with the documented shapes (`meta.pagination`,
 * action objects, `{ error: { code, message, details } }`), status codes and `RateLimit-*` headers, and
 * label selectors (`k=v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`). Each API token is its own
 * Hetzner project with its own servers; an unknown token is 401 `unauthorized`.
 *
 * Scriptable per test: errors for the next creates (capacity, 412 per location, quota, any code), a
 * server cap (`server_limit_exceeded`), rate limiting with headers, and a lost answer (the server is
 * created, the connection is reset before the answer: a crash between "sent" and "stored").
 * `onServerCreated(server, userData)` / `onServerDeleted(server)` let a test boot a created server for
 * real. `handle` is the whole API as a function, so unit tests can run it in memory on the test clock.
 */

export interface FakeRequest {
  readonly method: string
  /** path after the API root, e.g. `/servers/3` */
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly body: string
}
export interface FakeResponse {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: unknown
  /** reset the connection instead of answering (the request was carried out) */
  readonly drop?: true
}

export interface FakeServer {
  id: number
  name: string
  status: string
  created: string
  labels: Record<string, string>
  server_type: string
  location: string
  image: string
  ipv4: string
  ipv6: string
}

export interface ScriptedError {
  readonly status: number
  readonly code: string
  readonly message: string
  /** only a create in this location takes it (default: any) */
  readonly location?: string
  /** only a create of this server type takes it (default: any) */
  readonly serverType?: string
}

export const capacityError = (location?: string): ScriptedError => ({
  status: 422,
  code: "resource_unavailable",
  message: "error during placement",
  ...(location === undefined ? {} : { location })
})
export const unsupportedLocation = (): ScriptedError => ({
  status: 422,
  code: "invalid_input",
  message: "unsupported location for server type"
})
export const placementError = (location?: string): ScriptedError => ({
  status: 412,
  code: "placement_error",
  message: "error during placement",
  ...(location === undefined ? {} : { location })
})

const SERVER_TYPES = [
  { id: 101, name: "cx23", description: "CX23", cores: 2, memory: 4, disk: 40, architecture: "x86" },
  { id: 102, name: "cx33", description: "CX33", cores: 4, memory: 8, disk: 80, architecture: "x86" },
  { id: 103, name: "cx43", description: "CX43", cores: 8, memory: 16, disk: 160, architecture: "x86" },
  { id: 104, name: "cx53", description: "CX53", cores: 16, memory: 32, disk: 320, architecture: "x86" }
].map((t) => ({ ...t, cpu_type: "shared", storage_type: "local", deprecated: false, prices: [] }))

const LOCATION_LIST = [
  {
    id: 1,
    name: "fsn1",
    description: "Falkenstein DC Park 1",
    country: "DE",
    city: "Falkenstein",
    network_zone: "eu-central"
  },
  {
    id: 2,
    name: "nbg1",
    description: "Nuremberg DC Park 1",
    country: "DE",
    city: "Nuremberg",
    network_zone: "eu-central"
  },
  {
    id: 3,
    name: "hel1",
    description: "Helsinki DC Park 1",
    country: "FI",
    city: "Helsinki",
    network_zone: "eu-central"
  },
  { id: 4, name: "ash", description: "Ashburn, VA", country: "US", city: "Ashburn, VA", network_zone: "us-east" },
  { id: 5, name: "hil", description: "Hillsboro, OR", country: "US", city: "Hillsboro, OR", network_zone: "us-west" }
].map((l) => ({ ...l, latitude: 0, longitude: 0 }))

const IMAGES = [
  { id: 161547269, type: "system", name: "ubuntu-24.04", description: "Ubuntu 24.04", os_flavor: "ubuntu" },
  { id: 200000001, type: "app", name: "docker-ce", description: "Docker CE", os_flavor: "ubuntu" }
].map((i) => ({ ...i, status: "available", architecture: "x86", os_version: "24.04", labels: {}, deprecated: null }))

const USER_DATA_MAX = 32 * 1024

/** Hetzner's label selector, as documented: comma-separated terms, all of which must hold. */
export const matchesSelector = (labels: Readonly<Record<string, string>>, selector: string) => {
  const terms = selector.match(/[^,(]+(?:\([^)]*\))?/g) ?? []
  return terms.every((raw) => {
    const term = raw.trim()
    if (term === "") return true
    const set = term.match(/^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/)
    if (set !== null) {
      const values = set[3]!.split(",").map((v) => v.trim())
      const has = labels[set[1]!] !== undefined && values.includes(labels[set[1]!]!)
      return set[2] === "in" ? has : !has
    }
    const neq = term.match(/^([^!=]+)!=(.*)$/)
    if (neq !== null) return labels[neq[1]!.trim()] !== neq[2]!.trim()
    const eq = term.match(/^([^!=]+)==?(.*)$/)
    if (eq !== null) return labels[eq[1]!.trim()] === eq[2]!.trim()
    if (term.startsWith("!")) return labels[term.slice(1).trim()] === undefined
    return labels[term] !== undefined
  })
}

export interface FakeHetznerOptions {
  /** API tokens that are valid, each its own project (more with `addToken`) */
  readonly tokens?: ReadonlyArray<string>
  /** the clock the fake stamps things with (tests on the TestClock pass theirs) */
  readonly now?: () => number
}

export const makeFakeHetzner = (options: FakeHetznerOptions = {}) => {
  const now = options.now ?? Date.now
  const projects = new Map<string, Map<number, FakeServer>>()
  const userData = new Map<number, string>()
  const actions = new Map<number, Record<string, unknown>>()
  let nextId = 1000
  const createErrors: ScriptedError[] = []
  let rateLimited: { times: number; limit: number; remaining: number; reset: number } | undefined
  let dropNextCreate = false
  let serverLimit = Number.POSITIVE_INFINITY
  const createdHooks: Array<(server: FakeServer, userData: string) => unknown> = []
  const deletedHooks: Array<(server: FakeServer) => unknown> = []
  /** every request, in order (method, path, query, location of a create) */
  const requests: Array<{ method: string; path: string; query: string; at: number; location?: string }> = []
  const hookErrors: unknown[] = []
  for (const t of options.tokens ?? []) projects.set(t, new Map())

  const iso = (ms: number) => new Date(ms).toISOString()
  const rateHeaders = () => ({
    "ratelimit-limit": "3600",
    "ratelimit-remaining": "3599",
    "ratelimit-reset": String(Math.floor(now() / 1000) + 1)
  })
  const json = (status: number, body: unknown, headers: Record<string, string> = {}): FakeResponse => ({
    status,
    headers: { "content-type": "application/json", ...rateHeaders(), ...headers },
    body
  })
  const error = (status: number, code: string, message: string, details: unknown = {}) =>
    json(status, { error: { code, message, details } })

  const serverJson = (s: FakeServer) => ({
    id: s.id,
    name: s.name,
    status: s.status,
    created: s.created,
    labels: s.labels,
    public_net: {
      ipv4: { id: s.id, ip: s.ipv4, blocked: false, dns_ptr: `static.${s.ipv4}.clients.your-server.de` },
      ipv6: { id: s.id, ip: `${s.ipv6}/64`, blocked: false, dns_ptr: [] },
      floating_ips: [],
      firewalls: []
    },
    private_net: [],
    server_type: SERVER_TYPES.find((t) => t.name === s.server_type),
    datacenter: {
      id: 1,
      name: `${s.location}-dc1`,
      description: `${s.location} DC 1`,
      location: LOCATION_LIST.find((l) => l.name === s.location)
    },
    image: IMAGES.find((i) => i.name === s.image) ?? null,
    iso: null,
    rescue_enabled: false,
    locked: false,
    backup_window: null,
    outgoing_traffic: 0,
    ingoing_traffic: 0,
    included_traffic: 21990232555520,
    protection: { delete: false, rebuild: false },
    volumes: [],
    load_balancers: [],
    primary_disk_size: SERVER_TYPES.find((t) => t.name === s.server_type)?.disk ?? 0,
    placement_group: null
  })

  const action = (command: string, resource: number) => {
    const id = nextId++
    const a = {
      id,
      command,
      status: "success",
      progress: 100,
      started: iso(now()),
      finished: iso(now()),
      resources: [{ id: resource, type: "server" }],
      error: null
    }
    actions.set(id, a)
    return { ...a, status: "running", progress: 0, finished: null }
  }

  const page = <A>(items: ReadonlyArray<A>, query: URLSearchParams) => {
    const perPage = Math.min(50, Math.max(1, Number(query.get("per_page") ?? 25) || 25))
    const last = Math.max(1, Math.ceil(items.length / perPage))
    const n = Math.max(1, Number(query.get("page") ?? 1) || 1)
    return {
      items: items.slice((n - 1) * perPage, n * perPage),
      meta: {
        pagination: {
          page: n,
          per_page: perPage,
          previous_page: n > 1 ? n - 1 : null,
          next_page: n < last ? n + 1 : null,
          last_page: last,
          total_entries: items.length
        }
      }
    }
  }

  const fire = (f: () => unknown) => {
    try {
      const r = f()
      if (r instanceof Promise) r.catch((e) => hookErrors.push(e))
    } catch (e) {
      hookErrors.push(e)
    }
  }

  const createServerRoute = (servers: Map<number, FakeServer>, text: string): FakeResponse => {
    let body: Record<string, unknown>
    try {
      body = JSON.parse(text) as Record<string, unknown>
    } catch {
      return error(400, "json_error", "invalid JSON")
    }
    const name = body.name
    if (typeof name !== "string" || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(name))
      return error(422, "invalid_input", "invalid input in field 'name'", {
        fields: [{ name: "name", messages: ["invalid"] }]
      })
    const type = SERVER_TYPES.find((t) => t.name === body.server_type)
    if (type === undefined) return error(422, "invalid_input", "invalid input in field 'server_type'")
    const location = typeof body.location === "string" ? body.location : "fsn1"
    if (!LOCATION_LIST.some((l) => l.name === location))
      return error(422, "invalid_input", "invalid input in field 'location'")
    if (!IMAGES.some((i) => i.name === body.image)) return error(422, "invalid_input", "invalid input in field 'image'")
    const data = typeof body.user_data === "string" ? body.user_data : ""
    if (Buffer.byteLength(data) > USER_DATA_MAX)
      return error(422, "invalid_input", "invalid input in field 'user_data'", {
        fields: [{ name: "user_data", messages: ["user_data is too long"] }]
      })
    const labels = (body.labels ?? {}) as Record<string, string>
    for (const [k, v] of Object.entries(labels))
      if (
        !/^([a-z0-9.-]+\/)?[a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?$/.test(k) ||
        !/^([a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?)?$/.test(String(v))
      )
        return error(422, "invalid_input", `invalid input in field 'labels'`)
    const scripted = createErrors.findIndex(
      (e) =>
        (e.location === undefined || e.location === location) &&
        (e.serverType === undefined || e.serverType === type.name)
    )
    if (scripted >= 0) {
      const e = createErrors.splice(scripted, 1)[0]!
      return error(e.status, e.code, e.message)
    }
    if ([...servers.values()].some((s) => s.name === name))
      return error(409, "uniqueness_error", "server name is already used", { fields: [{ name: "name" }] })
    if (servers.size >= serverLimit) return error(403, "server_limit_exceeded", "server limit exceeded")
    const id = nextId++
    const server: FakeServer = {
      id,
      name,
      status: "running",
      created: iso(now()),
      labels,
      server_type: type.name,
      location,
      image: String(body.image),
      ipv4: `192.0.2.${id % 250}`,
      ipv6: `2001:db8:${id.toString(16)}::`
    }
    servers.set(id, server)
    userData.set(id, data)
    for (const hook of createdHooks) fire(() => hook(server, data))
    const response = json(201, {
      server: { ...serverJson(server), status: "initializing" },
      action: action("create_server", id),
      next_actions: [action("start_server", id)],
      root_password: null
    })
    if (dropNextCreate) {
      dropNextCreate = false
      return { ...response, drop: true }
    }
    return response
  }

  /** The whole API: one request in, one answer out. */
  const handle = (request: FakeRequest): FakeResponse => {
    const location =
      request.method === "POST" && request.path === "/servers"
        ? (() => {
            try {
              return String((JSON.parse(request.body) as { location?: string }).location)
            } catch {
              return undefined
            }
          })()
        : undefined
    requests.push({
      method: request.method,
      path: request.path,
      query: request.query.toString(),
      at: now(),
      ...(location === undefined ? {} : { location })
    })
    const auth = request.headers.authorization ?? ""
    const token = auth.startsWith("Bearer ") ? auth.slice(7) : ""
    const servers = projects.get(token)
    if (servers === undefined) return error(401, "unauthorized", "unable to authenticate")
    if (rateLimited !== undefined && rateLimited.times > 0) {
      rateLimited.times -= 1
      const r = rateLimited
      return {
        ...error(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached"),
        headers: {
          "content-type": "application/json",
          "ratelimit-limit": String(r.limit),
          "ratelimit-remaining": String(r.remaining),
          "ratelimit-reset": String(r.reset)
        }
      }
    }
    const { method, path, query } = request
    if (method === "GET" && path === "/servers") {
      const selector = query.get("label_selector")
      const name = query.get("name")
      const all = [...servers.values()]
        .filter((s) => selector === null || matchesSelector(s.labels, selector))
        .filter((s) => name === null || s.name === name)
        .sort((a, b) => a.id - b.id)
      const p = page(all, query)
      return json(200, { servers: p.items.map(serverJson), meta: p.meta })
    }
    if (method === "POST" && path === "/servers") return createServerRoute(servers, request.body)
    const one = path.match(/^\/servers\/(\d+)$/)
    if (one !== null) {
      const id = Number(one[1])
      const server = servers.get(id)
      if (server === undefined) return error(404, "not_found", `server with ID '${id}' not found`)
      if (method === "GET") return json(200, { server: serverJson(server) })
      if (method === "DELETE") {
        servers.delete(id)
        for (const hook of deletedHooks) fire(() => hook(server))
        return json(200, { action: action("delete_server", id) })
      }
    }
    if (method === "GET" && path === "/server_types") {
      const p = page(SERVER_TYPES, query)
      return json(200, { server_types: p.items, meta: p.meta })
    }
    if (method === "GET" && path === "/locations") {
      const p = page(LOCATION_LIST, query)
      return json(200, { locations: p.items, meta: p.meta })
    }
    if (method === "GET" && path === "/images") {
      const all = IMAGES.filter(
        (i) =>
          (query.get("type") === null || i.type === query.get("type")) &&
          (query.get("name") === null || i.name === query.get("name"))
      )
      const p = page(all, query)
      return json(200, { images: p.items, meta: p.meta })
    }
    const act = path.match(/^\/actions\/(\d+)$/)
    if (act !== null && method === "GET") {
      const a = actions.get(Number(act[1]))
      return a === undefined
        ? error(404, "not_found", `action with ID '${act[1]}' not found`)
        : json(200, { action: a })
    }
    return error(404, "not_found", "not found")
  }

  return {
    handle,
    requests,
    hookErrors,
    /** the servers of the project of this token */
    servers: (token: string) => [...(projects.get(token)?.values() ?? [])],
    userData: (serverId: number) => userData.get(serverId),
    addToken: (token: string) => void (projects.has(token) ? undefined : projects.set(token, new Map())),
    /** the next creates answer these errors, in order (each taken by the first create in its location) */
    failCreates: (...errors: ReadonlyArray<ScriptedError>) => void createErrors.push(...errors),
    /** scripted errors not yet taken */
    pendingErrors: () => createErrors.length,
    /** at most this many servers per project; beyond, `403 server_limit_exceeded` */
    setServerLimit: (n: number) => {
      serverLimit = n
    },
    /** the next `times` requests answer 429 with these `RateLimit-*` headers */
    rateLimit: (r: { times: number; limit: number; remaining: number; reset: number }) => {
      rateLimited = { ...r }
    },
    /** the next create is carried out, but its connection is reset before the answer */
    dropNextCreateResponse: () => {
      dropNextCreate = true
    },
    /** a server someone created outside SAM (or an orphan SAM lost track of) */
    putServer: (
      token: string,
      server: Omit<Partial<FakeServer>, "id"> & { name: string; labels: Record<string, string> }
    ) => {
      const id = nextId++
      const s: FakeServer = {
        id,
        status: "running",
        created: iso(now()),
        server_type: "cx33",
        location: "nbg1",
        image: "docker-ce",
        ipv4: `192.0.2.${id % 250}`,
        ipv6: `2001:db8:${id.toString(16)}::`,
        ...server
      }
      projects.get(token)?.set(id, s)
      return s
    },
    /** removes a server behind SAM's back (it "vanished"); no hook fires */
    vanish: (token: string, serverId: number) => void projects.get(token)?.delete(serverId),
    onServerCreated: (hook: (server: FakeServer, userData: string) => unknown) => void createdHooks.push(hook),
    onServerDeleted: (hook: (server: FakeServer) => unknown) => void deletedHooks.push(hook)
  }
}

export type FakeHetzner = ReturnType<typeof makeFakeHetzner>

/** The fake on loopback: `url` is the API root to give the client (`SAM_HETZNER_API_URL`). */
export const startFakeHetzner = async (options: FakeHetznerOptions = {}) => {
  const fake = makeFakeHetzner(options)
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://fake")
      const path = url.pathname.replace(/^\/v1/, "")
      const headers: Record<string, string | undefined> = {}
      for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : v
      const answer = fake.handle({
        method: req.method ?? "GET",
        path,
        query: url.searchParams,
        headers,
        body: Buffer.concat(chunks).toString("utf8")
      })
      if (answer.drop) {
        req.socket.destroy()
        return
      }
      res.writeHead(answer.status, answer.headers)
      res.end(JSON.stringify(answer.body))
    })
  })
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done))
  const port = (server.address() as AddressInfo).port
  return {
    ...fake,
    url: `http://127.0.0.1:${port}/v1`,
    close: () => new Promise<void>((done) => server.close(() => done()))
  }
}

/**
 * The fake as an in-memory `HttpClient` (no socket), for unit tests on the TestClock: every call is
 * stamped with the Effect clock in `calls`. A dropped answer is a transport error, as a reset is.
 */
export const inMemoryHttpClient = (fake: FakeHetzner) => {
  const calls: Array<{ at: number; method: string; path: string; location?: string; serverType?: string }> = []
  const client = HttpClient.make((request, url) =>
    Effect.gen(function* () {
      const body = request.body._tag === "Uint8Array" ? new TextDecoder().decode(request.body.body) : ""
      const path = url.pathname.replace(/^\/v1/, "")
      const sent = body === "" ? {} : (JSON.parse(body) as { location?: string; server_type?: string })
      calls.push({
        at: yield* Clock.currentTimeMillis,
        method: request.method,
        path,
        ...(sent.location === undefined ? {} : { location: sent.location }),
        ...(sent.server_type === undefined ? {} : { serverType: sent.server_type })
      })
      const answer = fake.handle({
        method: request.method,
        path,
        query: url.searchParams,
        headers: request.headers,
        body
      })
      if (answer.drop)
        return yield* new HttpClientError.RequestError({
          request,
          reason: "Transport",
          description: "connection reset"
        })
      return HttpClientResponse.fromWeb(
        request,
        new Response(JSON.stringify(answer.body), { status: answer.status, headers: answer.headers })
      )
    })
  )
  return { client, calls }
}
