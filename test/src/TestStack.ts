import { chmod, mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { LocalStack, Progress } from "@sam/infra"
import { Cause, Effect, Exit, Redacted, Scope } from "effect"
import { keepDirs, tracked } from "./TempDirs.js"

/** A port nobody listens on right now (the OS picks it). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject()))
    })
  })

/**
 * A port from `freePort` can be taken by another process before the server binds it (the suite's files run
 * side by side): a start that failed on "address already in use" is a candidate for another try on fresh ports.
 */
export const portTaken = (error: unknown) =>
  /address already in use/i.test(String((error as { message?: unknown } | undefined)?.message ?? error))

/** At most this many starts on fresh ports when a picked port was taken meanwhile. */
export const PORT_ATTEMPTS = 3

/**
 * A temporary directory, removed by `removeTempDirs` (test repositories and stacks' data directories were left in
 * /tmp run after run).
 */
export const tempDir = async (prefix: string) => {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  await chmod(dir, 0o755)
  return tracked(dir)
}

/**
 * A temporary directory, deleted with everything in it when the scope closes (a control plane harness's,
 * with its nodes' workspaces and logs, was about 60 MB a test run, left in /tmp). `SAM_TEST_KEEP_DIRS=1`
 * keeps them, to read a failed test's vm-agent logs.
 */
export const scopedTempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(() => tempDir(prefix)),
    (dir) =>
      keepDirs() ? Effect.void : Effect.promise(() => rm(dir, { recursive: true, force: true }).catch(() => undefined))
  )

export interface RunningStack {
  readonly stack: LocalStack.Stack
  readonly close: () => Promise<void>
}

/**
 * The full local stack (the same code `sam up` runs) on free ports in a temporary data directory,
 * so the tests never touch a running `sam up`. `close` stops the servers and deletes the directory.
 */
export const startTestStack = (): Promise<RunningStack> => startOnce(1)

const startOnce = async (attempt: number): Promise<RunningStack> => {
  const dataDir = await tempDir("sam-test-")
  const scope = Effect.runSync(Scope.make())
  const options = { dataDir, host: "127.0.0.1", natsPort: await freePort(), pgPort: await freePort(), database: "sam" }
  const started = await Effect.runPromiseExit(
    LocalStack.start(options).pipe(
      Effect.provide(Progress.silent),
      Scope.extend(scope),
      Effect.tapError(() => Scope.close(scope, Exit.void))
    )
  )
  if (Exit.isFailure(started)) {
    await rm(dataDir, { recursive: true, force: true })
    const error = Cause.squash(started.cause)
    if (attempt < PORT_ATTEMPTS && portTaken(error)) return startOnce(attempt + 1)
    throw error
  }
  const stack = started.value
  return {
    stack,
    close: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

/** What the global setup hands to every test file (serializable). */
export interface ProvidedStack {
  readonly dataDir: string
  readonly natsUrl: string
  readonly controlPlaneCreds: string
  readonly accountPublicKey: string
  readonly signingSeed: string
  /** the outside parties' account authority (ADR 0016), as plain strings */
  readonly authority: {
    readonly samAccountPublicKey: string
    readonly operatorSigningSeed: string
    readonly nodesSigningSeed: string
    readonly clientsSigningSeed: string
  }
  readonly systemCreds: string
  readonly databaseUrl: string
}

/** The NATS part of a provided stack, as plain strings: the shared stack's, or a test file's own server's. */
export const providedNats = (nats: {
  readonly url: string
  readonly controlPlaneCreds: Redacted.Redacted<string>
  readonly signing: Pick<LocalStack.Stack["signing"], "accountPublicKey" | "signingSeed">
  readonly authority: LocalStack.Stack["authority"]
  readonly systemCreds: Redacted.Redacted<string>
}) => ({
  natsUrl: nats.url,
  controlPlaneCreds: Redacted.value(nats.controlPlaneCreds),
  accountPublicKey: nats.signing.accountPublicKey,
  signingSeed: Redacted.value(nats.signing.signingSeed),
  authority: {
    samAccountPublicKey: nats.authority.samAccountPublicKey,
    operatorSigningSeed: Redacted.value(nats.authority.operatorSigningSeed),
    nodesSigningSeed: Redacted.value(nats.authority.nodesSigningSeed),
    clientsSigningSeed: Redacted.value(nats.authority.clientsSigningSeed)
  },
  systemCreds: Redacted.value(nats.systemCreds)
})

export const toProvided = (stack: LocalStack.Stack): ProvidedStack => ({
  dataDir: stack.dataDir,
  ...providedNats({ ...stack, url: stack.natsUrl }),
  databaseUrl: Redacted.value(stack.databaseUrl)
})
