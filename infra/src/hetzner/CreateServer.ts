import { Clock, Effect } from "effect"
import type { HetznerApi } from "./HetznerClient.js"
import {
  CapacityExhausted,
  type HetznerApiError,
  type HetznerError,
  isCapacity,
  NoMachinesAvailable
} from "./HetznerError.js"
import type * as S from "./HetznerSchemas.js"

/** SAM's sizes (sam-ui-agents §5): small cx23 2/4 GB, medium cx33 4/8 GB (the default), large cx43 8/16 GB. */
export const SIZES = { small: "cx23", medium: "cx33", large: "cx43" } as const
export type Size = keyof typeof SIZES
export const SIZE_ORDER: ReadonlyArray<Size> = ["large", "medium", "small"]
export const DEFAULT_SIZE: Size = "medium"
export const LOCATIONS = ["fsn1", "nbg1", "hel1", "ash", "hil"] as const
export const DEFAULT_LOCATION = "nbg1"
/** Hetzner's Ubuntu 24.04 with Docker CE; `ubuntu-24.04` works too (the boot installs Docker when it is missing). */
export const DEFAULT_IMAGE = "docker-ce"

/** sam-protocols §6.2 defaults; `SAM_HETZNER_CAPACITY_*` override them. */
export interface RetryPolicy {
  readonly initialDelayMs: number
  readonly maxDelayMs: number
  readonly maxAttempts: number
  readonly budgetMs: number
  readonly placementRetryDelayMs: number
}
export const retryPolicy = (): RetryPolicy => ({
  initialDelayMs: Number(process.env.SAM_HETZNER_CAPACITY_INITIAL_DELAY_MS ?? 15_000),
  maxDelayMs: Number(process.env.SAM_HETZNER_CAPACITY_MAX_DELAY_MS ?? 120_000),
  maxAttempts: Number(process.env.SAM_HETZNER_CAPACITY_MAX_ATTEMPTS ?? 10),
  budgetMs: Number(process.env.SAM_HETZNER_CAPACITY_BUDGET_MS ?? 300_000),
  placementRetryDelayMs: 3_000
})

export interface ServerSpec {
  readonly name: string
  readonly image: string
  readonly location: string
  readonly userData: string
  readonly labels: Readonly<Record<string, string>>
}

/**
 * One `POST /servers` attempt. The provider wraps it to record the request before it is sent and its
 * answer after (the ledger), and to look for a server a lost answer may have created.
 */
export type Attempt = (request: S.CreateServerRequest) => Effect.Effect<{ readonly server: S.Server }, HetznerError>

export const plainAttempt =
  (api: HetznerApi): Attempt =>
  (request) =>
    api.createServer(request)

/**
 * The 412 walk (sam-protocols §6.2): the primary location, the primary again after 3 s, then every
 * other location. Any other error goes to the caller at once.
 */
const withPlacementFallback = (attempt: Attempt, serverType: string, spec: ServerSpec, policy: RetryPolicy) => {
  const others = LOCATIONS.filter((l) => l !== spec.location)
  const walk: ReadonlyArray<{ location: string; delayMs: number }> = [
    { location: spec.location, delayMs: 0 },
    { location: spec.location, delayMs: policy.placementRetryDelayMs },
    ...others.map((location) => ({ location, delayMs: 0 }))
  ]
  const request = (location: string): S.CreateServerRequest => ({
    name: spec.name,
    server_type: serverType,
    image: spec.image,
    location,
    user_data: spec.userData,
    labels: spec.labels,
    start_after_create: true
  })
  const step = (i: number): Effect.Effect<{ readonly server: S.Server }, HetznerError> => {
    const here = walk[i]!
    return Effect.sleep(here.delayMs).pipe(
      Effect.zipRight(attempt(request(here.location))),
      Effect.catchIf(
        (e): e is HetznerApiError => e._tag === "HetznerApiError" && e.category === "placement" && i + 1 < walk.length,
        (e) =>
          Effect.logWarning(
            `hetzner: placement error for ${serverType} in ${here.location} (${e.message}); trying ${walk[i + 1]!.location}`
          ).pipe(Effect.zipRight(step(i + 1)))
      )
    )
  }
  return step(0)
}

/**
 * Create a server of one type, retrying capacity errors (sam-protocols §6.2): 422 `resource_unavailable`
 * (or `invalid_input` with exactly "unsupported location for server type") waits 15 s, 30 s, 60 s, … at
 * most `maxDelayMs`, for at most `maxAttempts` attempts within `budgetMs`; then `CapacityExhausted`. Any
 * other error fails at once.
 */
export const createOfType = (
  attempt: Attempt,
  serverType: string,
  spec: ServerSpec,
  policy: RetryPolicy = retryPolicy()
) =>
  Effect.gen(function* () {
    const start = yield* Clock.currentTimeMillis
    const deadline = start + policy.budgetMs
    for (let n = 0; ; n++) {
      const result = yield* Effect.either(withPlacementFallback(attempt, serverType, spec, policy))
      if (result._tag === "Right") return result.right
      const error = result.left
      if (!isCapacity(error)) return yield* Effect.fail(error)
      const delay = Math.min(policy.initialDelayMs * 2 ** n, policy.maxDelayMs)
      const now = yield* Clock.currentTimeMillis
      if (n + 1 >= policy.maxAttempts || now + delay > deadline) {
        return yield* new CapacityExhausted({
          message: `Capacity exhausted after ${n + 1} attempts for server type ${serverType} in ${spec.location}: ${error.message}`,
          attempts: n + 1,
          serverType,
          location: spec.location,
          cause: error
        })
      }
      yield* Effect.logWarning(
        `hetzner transient capacity error; retrying createServer in ${delay} ms (attempt ${n + 1} of ${policy.maxAttempts}, ` +
          `${deadline - now} ms of the budget left, ${serverType} in ${spec.location}: ${error.code})`
      )
      yield* Effect.sleep(delay)
    }
  })

/**
 * Create the node's server at its size. A size that came from the defaults steps down one size at a
 * time when capacity is exhausted; an explicitly requested size fails with "There were no <size>
 * machines available."
 */
export const createServer = (
  attempt: Attempt,
  size: Size,
  explicit: boolean,
  spec: ServerSpec,
  policy: RetryPolicy = retryPolicy()
) =>
  Effect.gen(function* () {
    const sizes = explicit ? [size] : SIZE_ORDER.slice(SIZE_ORDER.indexOf(size))
    const tried: string[] = []
    for (const [i, s] of sizes.entries()) {
      const result = yield* Effect.either(createOfType(attempt, SIZES[s], spec, policy))
      if (result._tag === "Right") return { ...result.right, size: s }
      const error = result.left
      if (error._tag !== "CapacityExhausted") return yield* Effect.fail(error)
      tried.push(SIZES[s])
      if (explicit)
        return yield* new NoMachinesAvailable({
          message: `There were no ${s} machines available.`,
          tried,
          cause: error
        })
      if (i + 1 < sizes.length) {
        yield* Effect.logWarning(
          `hetzner: no ${s} (${SIZES[s]}) machines; trying ${sizes[i + 1]} (${SIZES[sizes[i + 1]!]})`
        )
        continue
      }
      return yield* new NoMachinesAvailable({
        message: `No capacity for any available VM size (tried ${tried.join(", ")})`,
        tried,
        cause: error
      })
    }
    return yield* Effect.dieMessage("no size to try")
  })
