import { rename, writeFile } from "node:fs/promises"
import { Accounts, Nats, safeParseJson } from "@sam/bus"
import { Duration, Effect, Redacted } from "effect"
import { z } from "zod"
import type { NodeSettings } from "./NodeConfig.js"

/**
 * The node's NATS credentials live hours (ADR 0016). At half their life the vm-agent asks the control
 * plane for a fresh JWT for the user key it already holds (`sam.agent.<nodeId>.creds`, its own
 * subject), keeps it for the next (re)connect and writes it to its creds file for a restart. When
 * the JWT expires the server drops the connection and the client reconnects with the new one. A node
 * that was deleted gets no renewal: its credentials end with their JWT.
 */
export class RenewableCreds {
  #creds: Redacted.Redacted<string>
  constructor(creds: Redacted.Redacted<string>) {
    this.#creds = creds
  }
  readonly current = () => this.#creds
  replaceJwt(jwt: string) {
    this.#creds = Redacted.make(Redacted.value(this.#creds).replace(JWT_BLOCK, `$1${jwt}$3`))
  }
}

const JWT_BLOCK = /(-----BEGIN NATS USER JWT-----\s*\n)([^\n]+)(\n)/

const Claims = z.object({ sub: z.string(), iat: z.number(), exp: z.number().optional() })

/** The claims of the JWT inside a `.creds` text (it is signed by the control plane; here only read). */
export const claimsOf = (creds: Redacted.Redacted<string>) => {
  const jwt = JWT_BLOCK.exec(Redacted.value(creds))?.[2]
  const payload = jwt?.split(".")[1]
  if (payload === undefined) return undefined
  const parsed = safeParseJson(Claims, Buffer.from(payload, "base64url").toString("utf8"))
  return parsed.success ? parsed.data : undefined
}

/** NATS refusing the node's credentials (not a network failure): the server's authorization errors. */
export const isCredentialRefusal = (error: string) =>
  /Authorization Violation|AuthorizationError|user authentication (expired|revoked)/i.test(error)

const REJOIN =
  "a machine you joined joins again with a new token: `sam node token`, then `sam node join <url> <token>` after " +
  "removing its state directory (/var/lib/sam-node as root, else ~/.sam-node, or --dir)"

export const CREDENTIALS_REFUSED =
  "[nats] the control plane refuses this node's credentials: the node was deleted (its NATS account is " +
  `revoked) or its credentials expired unrenewed. It tries once more, then stops; ${REJOIN}`

/** The NATS client gave up the connection (it does so only after the server refused the credentials twice). */
export class ConnectionGivenUp extends Error {
  readonly _tag = "ConnectionGivenUp"
}

/** EX_CONFIG: the vm-agent's service does not restart on it (boot.sh's `RestartPreventExitStatus`). */
export const GIVEN_UP_EXIT_CODE = 78

export const GIVEN_UP =
  "the server refused this node's credentials again and closed its connection: the vm-agent stopped its agents " +
  `and exits (status ${GIVEN_UP_EXIT_CODE}). The node was deleted, or its credentials expired unrenewed; ${REJOIN}`

export const run = Effect.fn("VmAgent.renewCredentials")(function* (settings: NodeSettings, creds: RenewableCreds) {
  const { nc } = yield* Nats
  const subject = `sam.agent.${settings.nodeId}.creds`
  // The connection's own story: a JWT that expires drops it, and it comes back with the renewed one.
  yield* Effect.forkScoped(
    Effect.promise(async () => {
      let refused = false
      for await (const s of nc.status()) {
        if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error") {
          const error = "error" in s && s.error ? String(s.error) : ""
          console.error(`[nats] ${s.type}${error ? `: ${error}` : ""}`)
          // Said once per run of refusals: what a refusal of the node's own credentials means, and what to do.
          if (!refused && isCredentialRefusal(error)) console.error(CREDENTIALS_REFUSED)
          if (s.type === "reconnect") refused = false
          else if (isCredentialRefusal(error)) refused = true
        }
      }
    })
  )
  for (;;) {
    const claims = claimsOf(creds.current())
    if (claims?.exp === undefined) {
      yield* Effect.logWarning("the node's NATS credentials do not expire; nothing to renew")
      return
    }
    const nowS = Date.now() / 1000
    const renewAt = claims.iat + (claims.exp - claims.iat) / 2
    if (renewAt > nowS) yield* Effect.sleep(Duration.seconds(renewAt - nowS))
    const retryEvery = Duration.seconds(Math.max(1, Math.min(10, (claims.exp - claims.iat) / 10)))
    // A request sent while the connection drops (its JWT expiring: at half life that is when the JWT the
    // connection was made with runs out) is lost with its reply. Waiting 5 s for it could outlast the
    // credentials themselves; then the server refuses them and nothing can renew them any more. So the
    // wait is at most a quarter of what is left, and the next try comes well before the end.
    const leftMs = claims.exp * 1000 - Date.now()
    const timeout = Math.max(500, Math.min(5000, Math.floor(leftMs / 4)))
    const renewed = yield* Effect.tryPromise(() =>
      nc.request(subject, JSON.stringify({ publicKey: claims.sub }), { timeout })
    ).pipe(
      Effect.map((msg) =>
        Accounts.NodeRenewReply.safeParse(
          (() => {
            try {
              return msg.json()
            } catch {
              return undefined
            }
          })()
        )
      ),
      Effect.either
    )
    if (renewed._tag === "Left" || !renewed.right.success) {
      yield* Effect.logWarning(
        `NATS credential renewal failed (${renewed._tag === "Left" ? String(renewed.left.error) : "unexpected reply"}); retrying`
      )
      yield* Effect.sleep(retryEvery)
      continue
    }
    const reply = renewed.right.data
    if (!reply.ok) {
      yield* Effect.logError(`NATS credential renewal refused: ${reply.error}; the credentials end when they expire`)
      return
    }
    creds.replaceJwt(reply.jwt)
    // Written aside and renamed over: a crash mid-write never leaves a torn creds file.
    yield* Effect.tryPromise(async () => {
      const aside = `${settings.credsFile}.renewing`
      await writeFile(aside, Redacted.value(creds.current()), { mode: 0o600 })
      await rename(aside, settings.credsFile)
    }).pipe(
      Effect.catchAll((e) => Effect.logWarning(`cannot write the renewed credentials to ${settings.credsFile}: ${e}`))
    )
    yield* Effect.logInfo(`NATS credentials renewed until ${reply.expiresAt}`)
  }
})
