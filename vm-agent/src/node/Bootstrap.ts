import { appendFile, chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Api, Credentials, safeParseJson } from "@sam/bus"
import { Data, Duration, Effect, Redacted } from "effect"
import { z } from "zod"

export class BootstrapError extends Data.TaggedError("BootstrapError")<{ readonly message: string }> {}

/** What a node keeps after its exchange, beside `node.creds`: who it is and where NATS is. */
const NodeState = z.object({ nodeId: z.string(), natsUrl: z.string(), controlPlane: z.string() })

const fail = (message: string) => new BootstrapError({ message })

/**
 * The boot script's step lines (`at \t step \t status \t message`), each numbered by its line in the file,
 * the boot log reported with the exchange (a line the script already sent live is not stored twice).
 */
export const readBootLog = (text: string): Array<Api.BootLogEntry> =>
  text
    .split("\n")
    .map((line, index) => ({ seq: index + 1, fields: line.split("\t") }))
    .flatMap(({ seq, fields: [at, step, status, ...message] }) => {
      const date = new Date(at ?? "")
      const entry = Api.BootLogEntry.safeParse({
        seq,
        at: Number.isNaN(date.getTime()) ? undefined : date.toISOString(),
        step,
        status,
        message: message.join("\t").slice(0, 2000)
      })
      return entry.success ? [entry.data] : []
    })
    .slice(-190)

/** Waits before exchange attempt `n + 1`: the server's Retry-After, else 2, 4, 8 … s, at most 30 s. */
const backoff = (n: number, retryAfter: string | null | undefined) =>
  Effect.sleep(Duration.seconds(Math.min(30, Number(retryAfter) || 2 ** n)))

const exists = (path: string) =>
  readFile(path, "utf8").then(
    (text) => text,
    () => undefined
  )

/**
 * Before a node's vm-agent starts (ADR 0027): with `SAM_NATS_CREDS` set it is a local node and nothing
 * happens. Else it is a remote node with a state directory (`SAM_NODE_STATE_DIR`): if it exchanged
 * before, its id, NATS URL and renewed credentials are there; if not, it trades its bootstrap token
 * (`SAM_BOOTSTRAP_TOKEN_FILE` or `SAM_BOOTSTRAP_TOKEN`) at `SAM_BOOTSTRAP_URL` with the boot log so far
 * (`SAM_BOOT_LOG`) and the public key of a NATS user key pair it made and kept first (`node.seed`, 0600);
 * it joins the JWT it gets to that seed in `node.creds` (0600) and deletes the used token. Returns the
 * environment the vm-agent reads its settings from.
 */
export const prepare = (env: NodeJS.ProcessEnv) =>
  Effect.gen(function* () {
    if (env.SAM_NATS_CREDS !== undefined) return env
    const stateDir = env.SAM_NODE_STATE_DIR
    if (stateDir === undefined) return env
    const credsFile = join(stateDir, "node.creds")
    const stateFile = join(stateDir, "node.json")
    // The token is spent (or about to be): nothing started from here inherits it.
    const { SAM_BOOTSTRAP_TOKEN: _spent, ...rest } = env
    delete process.env.SAM_BOOTSTRAP_TOKEN
    const settled = (state: z.infer<typeof NodeState>): NodeJS.ProcessEnv => ({
      ...rest,
      SAM_NODE_ID: state.nodeId,
      SAM_NATS_URL: env.SAM_NATS_URL ?? state.natsUrl,
      SAM_NATS_CREDS: credsFile,
      SAM_NODE_DATA_DIR: env.SAM_NODE_DATA_DIR ?? join(stateDir, "data")
    })
    const kept = yield* Effect.promise(() => exists(stateFile))
    if (kept !== undefined && (yield* Effect.promise(() => exists(credsFile))) !== undefined) {
      const state = safeParseJson(NodeState, kept)
      if (state.success) return settled(state.data)
    }
    const url = env.SAM_BOOTSTRAP_URL?.replace(/\/+$/, "")
    if (url === undefined || !/^https?:\/\//.test(url))
      return yield* fail(`${stateDir} holds no node credentials and SAM_BOOTSTRAP_URL is not an http(s) URL`)
    const tokenFile = env.SAM_BOOTSTRAP_TOKEN_FILE
    const token = (
      env.SAM_BOOTSTRAP_TOKEN ?? (tokenFile === undefined ? undefined : yield* Effect.promise(() => exists(tokenFile)))
    )?.trim()
    if (token === undefined || token === "")
      return yield* fail("no bootstrap token (SAM_BOOTSTRAP_TOKEN_FILE or SAM_BOOTSTRAP_TOKEN) and no credentials kept")
    // The key pair first, kept before the exchange: when an answer is lost, this key asks again (the
    // exchange signs for the same token, node and key within minutes), and only the JWT ever travels.
    const seedFile = join(stateDir, "node.seed")
    const key = yield* Effect.tryPromise({
      try: async () => {
        await mkdir(stateDir, { recursive: true, mode: 0o700 })
        await chmod(stateDir, 0o700)
        const kept = await exists(seedFile)
        const found = kept === undefined ? undefined : Credentials.userKeyOf(Redacted.make(kept))
        if (found !== undefined) return found
        const made = Credentials.newUserKey()
        await writeFile(`${seedFile}.partial`, Redacted.value(made.seed), { mode: 0o600 })
        await rename(`${seedFile}.partial`, seedFile)
        return made
      },
      catch: (e) => fail(`cannot keep the node's key in ${stateDir}: ${e}`)
    })
    const bootLogFile = env.SAM_BOOT_LOG
    const line = `vm-agent on Node ${process.version} exchanging its bootstrap token`
    // Into the boot log file (numbered as the script's lines are), else sent unnumbered.
    const appended =
      bootLogFile !== undefined &&
      (yield* Effect.promise(() =>
        appendFile(bootLogFile, `${new Date().toISOString()}\tvm-agent\tstarted\t${line}\n`).then(
          () => true,
          () => false
        )
      ))
    const bootLog =
      bootLogFile === undefined ? [] : readBootLog((yield* Effect.promise(() => exists(bootLogFile))) ?? "")
    if (!appended) bootLog.push({ at: new Date().toISOString(), step: "vm-agent", status: "started", message: line })
    const body = {
      token,
      ...(env.SAM_NODE_ID === undefined ? {} : { nodeId: env.SAM_NODE_ID }),
      publicKey: key.publicKey,
      bootLog
    }
    const attempt = Effect.tryPromise({
      try: async () => {
        const r = await fetch(`${url}/api/v1/node-boot/exchange`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(30_000)
        })
        return {
          status: r.status,
          retryAfter: r.headers.get("retry-after"),
          json: (await r.json().catch(() => undefined)) as unknown
        }
      },
      catch: (e) => fail(`cannot reach ${url} for the bootstrap exchange: ${e instanceof Error ? e.message : e}`)
    })
    // A network failure, a 5xx or a 429 is tried again with the same key (8 attempts, about 2 minutes).
    const exchange = (n: number): Effect.Effect<{ status: number; json: unknown }, BootstrapError> =>
      attempt.pipe(
        Effect.matchEffect({
          onFailure: (e) =>
            n >= 8
              ? Effect.fail(e)
              : Effect.logWarning(`${e.message}; trying again`).pipe(
                  Effect.zipRight(backoff(n, undefined)),
                  Effect.zipRight(exchange(n + 1))
                ),
          onSuccess: (r) =>
            (r.status === 429 || r.status >= 500) && n < 8
              ? Effect.logWarning(`the bootstrap exchange at ${url} answered HTTP ${r.status}; trying again`).pipe(
                  Effect.zipRight(backoff(n, r.retryAfter)),
                  Effect.zipRight(exchange(n + 1))
                )
              : Effect.succeed(r)
        })
      )
    const response = yield* exchange(1)
    if (response.status !== 200) {
      const error = Api.ApiErrorBody.safeParse(response.json)
      return yield* fail(
        `the bootstrap exchange at ${url} failed (HTTP ${response.status}): ${error.success ? error.data.message : "no error body"}`
      )
    }
    const got = Api.BootCredentials.safeParse(response.json)
    if (!got.success) return yield* fail(`the bootstrap exchange at ${url} answered something else than credentials`)
    const state = { nodeId: got.data.nodeId, natsUrl: got.data.natsUrl, controlPlane: url }
    const creds = Credentials.credsText(got.data.jwt, key.seed)
    yield* Effect.tryPromise({
      try: async () => {
        await writeFile(`${credsFile}.partial`, Redacted.value(creds), { mode: 0o600 })
        await rename(`${credsFile}.partial`, credsFile)
        await writeFile(stateFile, `${JSON.stringify(state)}\n`, { mode: 0o600 })
        if (tokenFile !== undefined) await rm(tokenFile, { force: true })
        // The creds file holds the seed from now on.
        await rm(seedFile, { force: true })
      },
      catch: (e) => fail(`cannot keep the node's credentials in ${stateDir}: ${e}`)
    })
    yield* Effect.logInfo(`bootstrap: this machine is node ${state.nodeId}; NATS ${state.natsUrl}`)
    return settled(state)
  })
