import { rm } from "node:fs/promises"
import { Accounts, Credentials, Nats, natsLayer, Provision } from "@sam/bus"
import { NatsServer } from "@sam/infra"
import { Effect } from "effect"
import { freePort, PORT_ATTEMPTS, portTaken, tempDir } from "./TestStack.js"

/**
 * A nats-server of this test file's own, provisioned with the topology: for tests whose durable
 * consumers (the control plane's) must not see another file's streams.
 */
export const startPrivateNats = Effect.gen(function* () {
  const dir = yield* Effect.promise(() => tempDir("sam-nats-"))
  // JetStream's files (about 6 MB a server) go when the file's scope ends, after the server has stopped
  yield* Effect.addFinalizer(() => Effect.promise(() => rm(dir, { recursive: true, force: true })))
  // fresh ports at each try: one picked may be taken by another process before nats-server binds it
  const server = yield* Effect.gen(function* () {
    return yield* NatsServer.start({
      dir: `${dir}/nats`,
      host: "127.0.0.1",
      port: yield* Effect.promise(freePort),
      // NATS over WebSocket, which a gateway serves to remote nodes at /nats (ADR 0027)
      websocketPort: yield* Effect.promise(freePort)
    })
  }).pipe(Effect.retry({ times: PORT_ATTEMPTS - 1, while: portTaken }))
  const admin = yield* Credentials.mintUser(server.auth.signing, "admin", Credentials.adminPermissions)
  const layer = natsLayer({ servers: server.url, creds: admin.creds, name: "private-admin" })
  yield* Effect.gen(function* () {
    yield* Nats
    yield* Provision.provision()
  }).pipe(Effect.provide(layer), Effect.scoped)
  const system = yield* Credentials.mintUser(server.auth.systemSigning, "accounts", Accounts.systemUserPermissions)
  return {
    url: server.url,
    websocket: server.websocket,
    signing: server.auth.signing,
    authority: server.auth.authority,
    systemCreds: system.creds,
    /** the control plane's credentials on it (the same permissions as the shared stack's) */
    adminCreds: admin.creds,
    dir,
    layer
  }
})

export type PrivateNats = Effect.Effect.Success<typeof startPrivateNats>
