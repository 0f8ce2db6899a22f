import { describe, expect, it } from "@effect/vitest"
import { Hetzner } from "@sam/infra"
import { Effect, Exit, Fiber, Redacted, TestClock } from "effect"
import {
  capacityError,
  inMemoryHttpClient,
  makeFakeHetzner,
  placementError,
  unsupportedLocation
} from "../../src/FakeHetzner.js"

const { CreateServer, Client } = Hetzner
const TOKEN = "hcloud-token-for-tests-0123456789"

const setup = () => {
  const fake = makeFakeHetzner({ tokens: [TOKEN] })
  const { client, calls } = inMemoryHttpClient(fake)
  const api = Client.make(client, { baseUrl: "http://hetzner.test/v1" }).forToken(Redacted.make(TOKEN))
  return { fake, calls, api, attempt: CreateServer.plainAttempt(api) }
}

const spec = {
  name: "node-abc",
  image: "docker-ce",
  location: "nbg1",
  userData: "#cloud-config\n",
  labels: { "sam-node": "node_abc" }
}
const policy = {
  ...CreateServer.retryPolicy(),
  initialDelayMs: 15_000,
  maxDelayMs: 120_000,
  maxAttempts: 10,
  budgetMs: 300_000
}

/** Run on the test clock, one second at a time, until the effect is done (or `limitMs` passed). */
const onTestClock = <A, E>(effect: Effect.Effect<A, E>, limitMs = 3_600_000) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    for (let t = 0; t < limitMs; t += 1000) {
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      if (fiber.unsafePoll() !== null) break
      yield* TestClock.adjust(1000)
    }
    return yield* Fiber.await(fiber)
  })

const creates = (calls: ReturnType<typeof setup>["calls"]) =>
  calls.filter((c) => c.method === "POST" && c.path === "/servers")

describe("Hetzner create: the seed's retry rules (TestClock)", () => {
  it.effect("a capacity error (422 resource_unavailable) is retried after 15 s, then 30 s", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates(capacityError(), capacityError())
      const exit = yield* onTestClock(CreateServer.createOfType(attempt, "cx33", spec, policy))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(creates(calls).map((c) => c.at)).toEqual([0, 15_000, 45_000])
    })
  )

  it.effect("invalid_input with exactly 'unsupported location for server type' is capacity", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates(unsupportedLocation())
      const exit = yield* onTestClock(CreateServer.createOfType(attempt, "cx33", spec, policy))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(creates(calls).map((c) => c.at)).toEqual([0, 15_000])
    })
  )

  it.effect("any other invalid_input fails at once, even one containing the phrase", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates({
        status: 422,
        code: "invalid_input",
        message: "unsupported location for server type cx33 (ash)"
      })
      const exit = yield* onTestClock(CreateServer.createOfType(attempt, "cx33", spec, policy))
      expect(creates(calls)).toHaveLength(1)
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("invalid_config")
    })
  )

  it.effect(
    "capacity: 15 s, 30 s, 60 s, 120 s, then the 300 s budget ends it with the seed's message and its cause",
    () =>
      Effect.gen(function* () {
        const { fake, calls, attempt } = setup()
        fake.failCreates(...Array.from({ length: 10 }, () => capacityError()))
        const exit = yield* onTestClock(CreateServer.createOfType(attempt, "cx33", spec, policy))
        expect(creates(calls).map((c) => c.at)).toEqual([0, 15_000, 45_000, 105_000, 225_000])
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
          expect(error?._tag).toBe("CapacityExhausted")
          expect(error?.message).toBe(
            "Capacity exhausted after 5 attempts for server type cx33 in nbg1: error during placement"
          )
          expect(error?._tag === "CapacityExhausted" && error.cause.code).toBe("resource_unavailable")
        }
      })
  )

  it.effect("capacity: at most 10 attempts when the budget allows more (delays capped at 120 s)", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates(...Array.from({ length: 12 }, () => capacityError()))
      const exit = yield* onTestClock(
        CreateServer.createOfType(attempt, "cx33", spec, { ...policy, budgetMs: 10_000_000 }),
        7_200_000
      )
      const at = creates(calls).map((c) => c.at)
      expect(at).toEqual([0, 15_000, 45_000, 105_000, 225_000, 345_000, 465_000, 585_000, 705_000, 825_000])
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("Capacity exhausted after 10 attempts")
    })
  )

  it.effect("412: the primary location, the primary again after 3 s, then each other location", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates(placementError("nbg1"), placementError("nbg1"), placementError("fsn1"))
      const exit = yield* onTestClock(CreateServer.createOfType(attempt, "cx33", spec, policy))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(creates(calls).map((c) => [c.location, c.at])).toEqual([
        ["nbg1", 0],
        ["nbg1", 3_000],
        ["fsn1", 3_000],
        ["hel1", 3_000]
      ])
      if (Exit.isSuccess(exit)) expect(exit.value.server.datacenter.location.name).toBe("hel1")
    })
  )

  it.effect("a 412 walk that ends in capacity goes back to the capacity backoff", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates(placementError("nbg1"), capacityError("nbg1"))
      const exit = yield* onTestClock(CreateServer.createOfType(attempt, "cx33", spec, policy))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(creates(calls).map((c) => [c.location, c.at])).toEqual([
        ["nbg1", 0],
        ["nbg1", 3_000],
        ["nbg1", 18_000]
      ])
    })
  )

  it.effect("server_limit_exceeded is quota: no retry", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.setServerLimit(0)
      const exit = yield* onTestClock(CreateServer.createServer(attempt, "medium", false, spec, policy))
      expect(creates(calls)).toHaveLength(1)
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("quota_exceeded")
    })
  )

  it.effect("a default-derived size falls back one size smaller when capacity is exhausted", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates(...Array.from({ length: 10 }, () => ({ ...capacityError(), serverType: "cx33" })))
      const exit = yield* onTestClock(CreateServer.createServer(attempt, "medium", false, spec, policy))
      expect(Exit.isSuccess(exit)).toBe(true)
      if (Exit.isSuccess(exit)) {
        expect(exit.value.size).toBe("small")
        expect(exit.value.server.server_type.name).toBe("cx23")
      }
      expect(creates(calls).map((c) => [c.serverType, c.at])).toEqual([
        ["cx33", 0],
        ["cx33", 15_000],
        ["cx33", 45_000],
        ["cx33", 105_000],
        ["cx33", 225_000],
        ["cx23", 225_000]
      ])
    })
  )

  it.effect("an explicitly requested size fails with 'There were no <size> machines available.'", () =>
    Effect.gen(function* () {
      const { fake, calls, attempt } = setup()
      fake.failCreates(...Array.from({ length: 10 }, () => ({ ...capacityError(), serverType: "cx43" })))
      const exit = yield* onTestClock(CreateServer.createServer(attempt, "large", true, spec, policy))
      expect(creates(calls).every((c) => c.serverType === "cx43")).toBe(true)
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        expect(exit.cause.error.message).toBe("There were no large machines available.")
        expect(exit.cause.error._tag === "NoMachinesAvailable" && exit.cause.error.cause.attempts).toBe(5)
      }
    })
  )

  it.effect("429 waits as the RateLimit headers say, then the request goes through", () =>
    Effect.gen(function* () {
      const { fake, calls, api } = setup()
      // 10 requests per 50 s: one more allowed every 5 s.
      fake.rateLimit({ times: 2, limit: 10, remaining: 0, reset: 50 })
      const exit = yield* onTestClock(api.serverTypes())
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(calls.map((c) => c.at)).toEqual([0, 5_000, 10_000])
    })
  )

  it.effect("a bad token is 401 unauthorized, an auth error", () =>
    Effect.gen(function* () {
      const { client } = inMemoryHttpClient(makeFakeHetzner({ tokens: [TOKEN] }))
      const api = Client.make(client, { baseUrl: "http://hetzner.test/v1" }).forToken(Redacted.make("wrong"))
      const error = yield* Effect.flip(api.serverTypes())
      expect(error._tag === "HetznerApiError" && [error.status, error.code, error.category]).toEqual([
        401,
        "unauthorized",
        "auth_error"
      ])
    })
  )
})
