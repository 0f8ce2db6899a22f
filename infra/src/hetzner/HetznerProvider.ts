import { FetchHttpClient } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { ControlPlane } from "@sam/actors"
import { SecretBox } from "@sam/sql"
import { Data, Effect, Fiber, Layer, Redacted } from "effect"
import { NodeBoot } from "../cloud/NodeBoot.js"
import * as CreateServer from "./CreateServer.js"
import { type HetznerApi, HetznerClient, layer as HetznerClientLayer } from "./HetznerClient.js"
import type { HetznerError } from "./HetznerError.js"
import type * as S from "./HetznerSchemas.js"

type Shape = ControlPlane.NodeProvider["Type"]

/** Labels on every server (ADR 0026), so the reconciler finds this installation's servers and their nodes. */
export const LABEL = {
  node: "sam-node",
  owner: "sam-owner",
  installation: "sam-installation",
  managed: "managed"
} as const

/** Hetzner's limit on `user_data` (sam-ui-agents §5). */
export const USER_DATA_MAX_BYTES = 32 * 1024

export class HetznerProviderError extends Data.TaggedError("HetznerProviderError")<{
  readonly reason: "no-token" | "no-node" | "api" | "boot"
  readonly message: string
}> {}

export interface HetznerProviderOptions {
  /** capacity retry policy (default: the seed's, `CreateServer.retryPolicy()`) */
  readonly policy?: CreateServer.RetryPolicy
}

/** Hetzner server names are unique per project: the node's name is its id, so a second create of it is refused. */
export const serverName = (nodeId: string) => `sam-${nodeId.toLowerCase().replace(/_/g, "-")}`

interface MachineRow {
  readonly ownerId: string | null
  readonly status: string
  readonly size: CreateServer.Size | null
  readonly sizeExplicit: boolean | null
  readonly location: string | null
  readonly image: string | null
  readonly serverId: string | null
}

/**
 * The Hetzner node provider (ADR 0026): a node is a server in its owner's Hetzner project, created with
 * that user's token (sealed at rest), labelled with the node, owner and installation, booted by the
 * cloud-init `NodeBoot` renders. Every create and delete is written to `provider_requests` before it is
 * sent and answered after; before creating, the node's server is looked up by its labels, so a request
 * whose answer was lost (a crash, a reset) is not repeated into a second server. `provision` returns at
 * once and creates in the background (capacity retries take minutes); one creation per node at a time.
 */
export const make = (options: HetznerProviderOptions = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const client = yield* HetznerClient
    const boot = yield* NodeBoot
    const scope = yield* Effect.scope
    const policy = options.policy ?? CreateServer.retryPolicy()
    const installation = (yield* sql<{ id: string }>`SELECT id FROM sam_installation`.pipe(Effect.orDie))[0]!.id
    const creating = new Map<string, Fiber.RuntimeFiber<void, never>>()
    /** from the last `list`: a node's server and owner, for destroying an orphan that has no ledger row */
    const seen = new Map<string, { ownerId: string; serverId: number }>()

    const tokenOf = (ownerId: string) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ sealed: string }>`
          SELECT sealed FROM cloud_credentials WHERE user_id = ${ownerId} AND provider = 'hetzner'`.pipe(Effect.orDie)
        if (rows[0] === undefined)
          return yield* new HetznerProviderError({
            reason: "no-token",
            message: `user ${ownerId} has no Hetzner API token (sam cloud hetzner set-token)`
          })
        const plain = yield* SecretBox.open(rows[0].sealed).pipe(
          Effect.mapError((e) => new HetznerProviderError({ reason: "no-token", message: e.message }))
        )
        return client.forToken(Redacted.make(plain))
      })

    const apiError = (e: HetznerError | { readonly message: string }) =>
      new HetznerProviderError({ reason: "api", message: e.message })

    const selector = (nodeId?: string) =>
      `${LABEL.installation}=${installation}${nodeId === undefined ? "" : `,${LABEL.node}=${nodeId}`}`

    const findServer = (api: HetznerApi, nodeId: string) =>
      api.listServers(selector(nodeId)).pipe(Effect.map((servers) => servers[0]))

    const markFailed = (nodeId: string, message: string) =>
      Effect.all([
        sql`UPDATE node_machines SET error = ${message}, updated_at = now() WHERE node_id = ${nodeId}`,
        sql`UPDATE nodes SET error_reason = ${message} WHERE id = ${nodeId}`
      ]).pipe(Effect.orDie, Effect.asVoid)

    const stored = (nodeId: string, server: S.Server, size?: CreateServer.Size) =>
      Effect.all([
        sql`
          UPDATE node_machines SET server_id = ${server.id}, server_type = ${server.server_type.name},
            server_location = ${server.datacenter.location.name}, ipv4 = ${server.public_net.ipv4?.ip ?? null},
            size = COALESCE(${size ?? null}, size), error = NULL, updated_at = now()
          WHERE node_id = ${nodeId}`,
        sql`UPDATE nodes SET error_reason = NULL WHERE id = ${nodeId} AND error_reason IS NOT NULL`
      ]).pipe(Effect.orDie, Effect.asVoid)

    /**
     * One `POST /servers`, recorded before and after. A lost answer or a refused duplicate name is
     * looked up by the node's labels: the server it may have created is adopted, never created twice.
     */
    const recordedAttempt =
      (api: HetznerApi, nodeId: string): CreateServer.Attempt =>
      (request) =>
        Effect.gen(function* () {
          const key = `${nodeId}:create:${crypto.randomUUID()}`
          yield* sql`
            INSERT INTO provider_requests (node_id, provider, kind, idempotency_key, server_type, location)
            VALUES (${nodeId}, 'hetzner', 'create', ${key}, ${request.server_type}, ${request.location})`.pipe(
            Effect.orDie
          )
          const answer = yield* Effect.either(api.createServer(request))
          if (answer._tag === "Right") {
            yield* sql`
              UPDATE provider_requests SET status = 'succeeded', server_id = ${answer.right.server.id},
                action_id = ${answer.right.action.id}, answered_at = now()
              WHERE idempotency_key = ${key}`.pipe(Effect.orDie)
            return answer.right
          }
          const e = answer.left
          const lost = e._tag !== "HetznerApiError" || e.code === "uniqueness_error"
          yield* sql`
            UPDATE provider_requests SET status = ${lost ? "unknown" : "failed"},
              error_code = ${e._tag === "HetznerApiError" ? e.code : e._tag}, error_message = ${e.message.slice(0, 1000)},
              answered_at = now()
            WHERE idempotency_key = ${key}`.pipe(Effect.orDie)
          if (!lost) return yield* Effect.fail(e)
          const found = yield* findServer(api, nodeId)
          if (found === undefined) return yield* Effect.fail(e)
          yield* Effect.logWarning(
            `hetzner: node ${nodeId}: the create's answer was lost; its server ${found.id} exists`
          )
          yield* sql`
            UPDATE provider_requests SET server_id = ${found.id} WHERE idempotency_key = ${key}`.pipe(Effect.orDie)
          return { server: found }
        })

    /** Create the node's server unless it has one; the whole of a provision, awaited. */
    const provisionNow = (nodeId: string) =>
      Effect.gen(function* () {
        const rows = yield* sql<MachineRow>`
          SELECT n.owner_id, n.status, m.size, m.size_explicit, m.location, m.image, m.server_id::text AS server_id
          FROM nodes n LEFT JOIN node_machines m ON m.node_id = n.id WHERE n.id = ${nodeId}`.pipe(Effect.orDie)
        const row = rows[0]
        if (row === undefined || row.ownerId === null)
          return yield* new HetznerProviderError({ reason: "no-node", message: `node ${nodeId} is not in the ledger` })
        if (!["provisioning", "running", "warm"].includes(row.status)) return `node ${nodeId} is ${row.status}`
        if (row.size === null) {
          yield* sql`
            INSERT INTO node_machines (node_id, provider, size, size_explicit, location, image)
            VALUES (${nodeId}, 'hetzner', ${CreateServer.DEFAULT_SIZE}, false, ${CreateServer.DEFAULT_LOCATION},
              ${CreateServer.DEFAULT_IMAGE})
            ON CONFLICT (node_id) DO NOTHING`.pipe(Effect.orDie)
        }
        const api = yield* tokenOf(row.ownerId)
        // First look: a server of this node may exist (a create whose answer was never stored).
        const existing = yield* findServer(api, nodeId).pipe(Effect.mapError(apiError))
        if (existing !== undefined) {
          yield* stored(nodeId, existing)
          return `server ${existing.id} exists`
        }
        if (row.serverId !== null) {
          yield* markFailed(nodeId, `its Hetzner server ${row.serverId} is gone`)
          return `server ${row.serverId} is gone`
        }
        const userData = yield* boot
          .userData({ nodeId, ownerId: row.ownerId, provider: "hetzner" })
          .pipe(Effect.mapError((e) => new HetznerProviderError({ reason: "boot", message: e.message })))
        if (Buffer.byteLength(userData) > USER_DATA_MAX_BYTES)
          return yield* new HetznerProviderError({
            reason: "boot",
            message: `the node's user data is ${Buffer.byteLength(userData)} bytes; Hetzner takes at most ${USER_DATA_MAX_BYTES}`
          })
        const created = yield* CreateServer.createServer(
          recordedAttempt(api, nodeId),
          row.size ?? CreateServer.DEFAULT_SIZE,
          row.sizeExplicit ?? false,
          {
            name: serverName(nodeId),
            image: row.image ?? CreateServer.DEFAULT_IMAGE,
            location: row.location ?? CreateServer.DEFAULT_LOCATION,
            userData,
            labels: {
              [LABEL.node]: nodeId,
              [LABEL.owner]: row.ownerId,
              [LABEL.installation]: installation,
              [LABEL.managed]: "sam"
            }
          },
          policy
        ).pipe(Effect.mapError(apiError))
        yield* stored(nodeId, created.server, created.size)
        yield* Effect.logInfo(
          `hetzner: node ${nodeId}: server ${created.server.id} (${created.server.server_type.name} in ${created.server.datacenter.location.name}) created`
        )
        return `server ${created.server.id} created`
      }).pipe(
        Effect.tapError((e) =>
          e.reason === "no-node"
            ? Effect.void
            : markFailed(nodeId, e.message).pipe(
                Effect.zipRight(Effect.logError(`hetzner: node ${nodeId}: ${e.message}`))
              )
        ),
        Effect.withSpan("HetznerProvider.provision", { attributes: { nodeId } })
      )

    const provision: Shape["provision"] = (nodeId) =>
      Effect.gen(function* () {
        const running = creating.get(nodeId)
        if (running !== undefined && running.unsafePoll() === null) return
        const fiber = yield* Effect.forkIn(
          provisionNow(nodeId).pipe(Effect.ignore, Effect.ensuring(Effect.sync(() => creating.delete(nodeId)))),
          scope
        )
        creating.set(nodeId, fiber)
      })

    const destroy = (nodeId: string) =>
      Effect.gen(function* () {
        const running = creating.get(nodeId)
        if (running !== undefined) yield* Fiber.interrupt(running)
        const rows = yield* sql<{ ownerId: string | null }>`SELECT owner_id FROM nodes WHERE id = ${nodeId}`.pipe(
          Effect.orDie
        )
        const ownerId = rows[0]?.ownerId ?? seen.get(nodeId)?.ownerId
        if (ownerId === undefined || ownerId === null) return "no server of it is known"
        const token = yield* Effect.either(tokenOf(ownerId))
        // The owner took SAM's access away: nothing SAM can delete; say so rather than retry for ever.
        if (token._tag === "Left")
          return `its server cannot be deleted by SAM (${token.left.message}); delete it in the Hetzner project`
        const api = token.right
        const servers = yield* api.listServers(selector(nodeId)).pipe(Effect.mapError(apiError))
        const gone: number[] = []
        for (const server of servers) {
          const key = `${nodeId}:delete:${server.id}:${crypto.randomUUID()}`
          yield* sql`
            INSERT INTO provider_requests (node_id, provider, kind, idempotency_key, server_id)
            VALUES (${nodeId}, 'hetzner', 'delete', ${key}, ${server.id})`.pipe(Effect.orDie)
          const answer = yield* Effect.either(api.deleteServer(server.id))
          yield* sql`
            UPDATE provider_requests SET status = ${answer._tag === "Right" ? "succeeded" : "failed"},
              action_id = ${answer._tag === "Right" ? (answer.right?.id ?? null) : null},
              error_message = ${answer._tag === "Left" ? answer.left.message.slice(0, 1000) : null}, answered_at = now()
            WHERE idempotency_key = ${key}`.pipe(Effect.orDie)
          if (answer._tag === "Left") return yield* Effect.fail(apiError(answer.left))
          gone.push(server.id)
        }
        seen.delete(nodeId)
        return gone.length === 0 ? "no server of it exists" : `Hetzner server ${gone.join(", ")} deleted`
      })

    /**
     * This installation's servers in every project SAM holds a token for. Any failure fails the whole
     * list (fail-closed): the reconciler then does nothing this run.
     */
    const list = () =>
      Effect.gen(function* () {
        const owners = yield* sql<{ userId: string }>`
          SELECT user_id FROM cloud_credentials WHERE provider = 'hetzner' ORDER BY user_id`.pipe(Effect.orDie)
        const nodes: string[] = []
        for (const { userId } of owners) {
          const api = yield* tokenOf(userId)
          const servers = yield* api.listServers(selector()).pipe(Effect.mapError(apiError))
          for (const server of servers) {
            const nodeId = server.labels[LABEL.node]
            // Only servers with a well-formed node label and this owner's (labels are the owner's to edit).
            if (nodeId === undefined || !/^node_[0-9a-z]+$/.test(nodeId) || server.labels[LABEL.owner] !== userId)
              continue
            seen.set(nodeId, { ownerId: userId, serverId: server.id })
            nodes.push(nodeId)
          }
        }
        return nodes
      })

    return { provision, destroy, list, provisionNow, installation }
  })

export type HetznerProvider = Effect.Effect.Success<ReturnType<typeof make>>

export interface LayerOptions extends HetznerProviderOptions {
  /** the API root (default `SAM_HETZNER_API_URL`, else Hetzner's); tests give their fake's */
  readonly apiUrl?: string
}

/**
 * The provider as a `NodeProvider` layer, with its Hetzner client over fetch. It needs `SqlClient` and
 * the boot's `NodeBoot` (the user data of a node).
 */
export const layer = (options: LayerOptions = {}) =>
  Layer.scoped(
    ControlPlane.NodeProvider,
    Effect.map(make(options), ({ provision, destroy, list }) => ({ provision, destroy, list }))
  ).pipe(
    Layer.provide(
      HetznerClientLayer(options.apiUrl === undefined ? {} : { baseUrl: options.apiUrl }).pipe(
        Layer.provide(FetchHttpClient.layer)
      )
    )
  )
