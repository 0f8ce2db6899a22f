import { describe, expect, it } from "@effect/vitest"
import { Hetzner } from "@sam/infra"
import { Effect, Redacted } from "effect"
import { inMemoryHttpClient, makeFakeHetzner, matchesSelector } from "../../src/FakeHetzner.js"

const TOKEN = "hcloud-token-for-client-tests-0123456789"

const setup = () => {
  const fake = makeFakeHetzner({ tokens: [TOKEN] })
  const { client, calls } = inMemoryHttpClient(fake)
  const api = Hetzner.Client.make(client, { baseUrl: "http://hetzner.test/v1" }).forToken(Redacted.make(TOKEN))
  return { fake, calls, api }
}

describe("Hetzner client against the fake's documented shapes", () => {
  it.effect("lists every page of a label selector (meta.pagination.next_page), 50 a page", () =>
    Effect.gen(function* () {
      const { fake, calls, api } = setup()
      for (let i = 0; i < 120; i++)
        fake.putServer(TOKEN, { name: `s${i}`, labels: { "sam-installation": i % 2 === 0 ? "a" : "b", n: String(i) } })
      const ours = yield* api.listServers("sam-installation=a")
      expect(ours).toHaveLength(60)
      expect(calls.filter((c) => c.path === "/servers")).toHaveLength(2)
      expect(new Set(ours.map((s) => s.labels.n)).size).toBe(60)
    })
  )

  it.effect("a server's create answer, its action, get (404 is null) and delete (404 is null)", () =>
    Effect.gen(function* () {
      const { api } = setup()
      const created = yield* api.createServer({
        name: "sam-node-x",
        server_type: "cx23",
        image: "ubuntu-24.04",
        location: "fsn1",
        user_data: "#cloud-config\n",
        labels: { "sam-node": "node_x" },
        start_after_create: true
      })
      expect(created.server).toMatchObject({
        name: "sam-node-x",
        status: "initializing",
        labels: { "sam-node": "node_x" }
      })
      expect(created.action).toMatchObject({ command: "create_server", status: "running" })
      expect(yield* api.getAction(created.action.id)).toMatchObject({ status: "success", progress: 100 })
      expect((yield* api.getServer(created.server.id))?.datacenter.location.name).toBe("fsn1")
      expect(yield* api.deleteServer(created.server.id)).toMatchObject({ command: "delete_server" })
      expect(yield* api.getServer(created.server.id)).toBeNull()
      expect(yield* api.deleteServer(created.server.id)).toBeNull()
    })
  )

  it.effect("server types, locations and images as documented; bad input is Hetzner's invalid_input", () =>
    Effect.gen(function* () {
      const { api } = setup()
      expect((yield* api.serverTypes()).map((t) => t.name)).toEqual(expect.arrayContaining(["cx23", "cx33", "cx43"]))
      expect((yield* api.locations()).map((l) => l.name)).toEqual(["fsn1", "nbg1", "hel1", "ash", "hil"])
      expect((yield* api.images({ name: "docker-ce" })).map((i) => i.type)).toEqual(["app"])
      const bad = yield* Effect.flip(
        api.createServer({
          name: "bad name!",
          server_type: "cx33",
          image: "docker-ce",
          location: "nbg1",
          user_data: "",
          labels: {},
          start_after_create: true
        })
      )
      expect(bad._tag === "HetznerApiError" && [bad.status, bad.code, bad.category]).toEqual([
        422,
        "invalid_input",
        "invalid_config"
      ])
      const big = yield* Effect.flip(
        api.createServer({
          name: "big",
          server_type: "cx33",
          image: "docker-ce",
          location: "nbg1",
          user_data: "x".repeat(32 * 1024 + 1),
          labels: {},
          start_after_create: true
        })
      )
      expect(big._tag === "HetznerApiError" && big.message).toContain("user_data")
    })
  )

  it("label selectors: =, ==, !=, presence, absence, in, notin, all terms must hold", () => {
    const labels = { "sam-node": "node_a", env: "prod", role: "web" }
    expect(matchesSelector(labels, "sam-node=node_a")).toBe(true)
    expect(matchesSelector(labels, "sam-node==node_a,env=prod")).toBe(true)
    expect(matchesSelector(labels, "sam-node=node_a,env=dev")).toBe(false)
    expect(matchesSelector(labels, "env!=dev")).toBe(true)
    expect(matchesSelector(labels, "role")).toBe(true)
    expect(matchesSelector(labels, "!role")).toBe(false)
    expect(matchesSelector(labels, "env in (dev,prod)")).toBe(true)
    expect(matchesSelector(labels, "env notin (dev,prod),role")).toBe(false)
  })

  it("classifies as the seed does: the exact unsupported-location message only; 412 is never capacity", () => {
    const { classify } = Hetzner.Errors
    expect(classify(422, "invalid_input", "unsupported location for server type")).toBe("transient_capacity")
    expect(classify(422, "invalid_input", "Unsupported Location For Server Type")).toBe("transient_capacity")
    expect(classify(422, "invalid_input", "unsupported location for server type (fsn1)")).toBe("invalid_config")
    expect(classify(422, "resource_unavailable", "anything")).toBe("transient_capacity")
    expect(classify(412, "placement_error", "resources unavailable")).toBe("placement")
    expect(classify(403, "server_limit_exceeded", "server limit exceeded")).toBe("quota_exceeded")
    expect(classify(401, "unauthorized", "unable to authenticate")).toBe("auth_error")
    expect(classify(429, "rate_limit_exceeded", "limit reached")).toBe("rate_limited")
    expect(classify(422, "http_422", "no capacity in this location")).toBe("transient_capacity")
    expect(classify(500, "http_500", "oops")).toBe("unknown")
  })

  it("429 waits for one more request of the refill: (reset - now) / (limit - remaining), 1 s to 60 s", () => {
    const { rateLimitWaitMs } = Hetzner.Client
    expect(rateLimitWaitMs({ limit: 3600, remaining: 0, reset: 3600 }, 0)).toBe(1_000)
    expect(rateLimitWaitMs({ limit: 10, remaining: 0, reset: 50 }, 0)).toBe(5_000)
    expect(rateLimitWaitMs({ limit: 1, remaining: 0, reset: 600 }, 0)).toBe(60_000)
    expect(rateLimitWaitMs(undefined, 0)).toBe(1_000)
  })
})
