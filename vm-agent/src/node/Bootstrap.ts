import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Api } from "@sam/bus"
import { Data, Effect } from "effect"
import { z } from "zod"

export class BootstrapError extends Data.TaggedError("BootstrapError")<{ readonly message: string }> {}

/** What a node keeps after its exchange, beside `node.creds`: who it is and where NATS is. */
const NodeState = z.object({ nodeId: z.string(), natsUrl: z.string(), controlPlane: z.string() })

const fail = (message: string) => new BootstrapError({ message })

/** The boot script's step lines (`at \t step \t status \t message`), the boot log reported with the exchange. */
export const readBootLog = (text: string): Array<Api.BootLogEntry> =>
  text
    .split("\n")
    .map((line) => line.split("\t"))
    .flatMap(([at, step, status, ...message]) => {
      const date = new Date(at ?? "")
      const entry = Api.BootLogEntry.safeParse({
        at: Number.isNaN(date.getTime()) ? undefined : date.toISOString(),
        step,
        status,
        message: message.join("\t").slice(0, 2000)
      })
      return entry.success ? [entry.data] : []
    })
    .slice(-190)

const exists = (path: string) =>
  readFile(path, "utf8").then(
    (text) => text,
    () => undefined
  )

/**
 * Before a node's vm-agent starts (ADR 0027): with `SAM_NATS_CREDS` set it is a local node and nothing
 * happens. Else it is a remote node with a state directory (`SAM_NODE_STATE_DIR`): if it exchanged
 * before, its id, NATS URL and renewed credentials are there; if not, it trades its bootstrap token
 * (`SAM_BOOTSTRAP_TOKEN_FILE` or `SAM_BOOTSTRAP_TOKEN`) at `SAM_BOOTSTRAP_URL` once, with the boot log
 * so far (`SAM_BOOT_LOG`), keeps what it got (0600) and deletes the used token. Returns the
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
      const state = NodeState.safeParse(
        (() => {
          try {
            return JSON.parse(kept)
          } catch {
            return undefined
          }
        })()
      )
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
    const bootLog =
      env.SAM_BOOT_LOG === undefined ? [] : readBootLog((yield* Effect.promise(() => exists(env.SAM_BOOT_LOG!))) ?? "")
    bootLog.push({
      at: new Date().toISOString(),
      step: "vm-agent",
      status: "started",
      message: `vm-agent on Node ${process.version} exchanging its bootstrap token`
    })
    const body = { token, ...(env.SAM_NODE_ID === undefined ? {} : { nodeId: env.SAM_NODE_ID }), bootLog }
    const response = yield* Effect.tryPromise({
      try: async () => {
        const r = await fetch(`${url}/api/v1/node-boot/exchange`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(30_000)
        })
        return { status: r.status, json: (await r.json().catch(() => undefined)) as unknown }
      },
      catch: (e) => fail(`cannot reach ${url} for the bootstrap exchange: ${e instanceof Error ? e.message : e}`)
    })
    if (response.status !== 200) {
      const error = Api.ApiErrorBody.safeParse(response.json)
      return yield* fail(
        `the bootstrap exchange at ${url} failed (HTTP ${response.status}): ${error.success ? error.data.message : "no error body"}`
      )
    }
    const got = Api.BootCredentials.safeParse(response.json)
    if (!got.success) return yield* fail(`the bootstrap exchange at ${url} answered something else than credentials`)
    const state = { nodeId: got.data.nodeId, natsUrl: got.data.natsUrl, controlPlane: url }
    yield* Effect.tryPromise({
      try: async () => {
        await mkdir(stateDir, { recursive: true, mode: 0o700 })
        await chmod(stateDir, 0o700)
        await writeFile(`${credsFile}.partial`, got.data.creds, { mode: 0o600 })
        await rename(`${credsFile}.partial`, credsFile)
        await writeFile(stateFile, `${JSON.stringify(state)}\n`, { mode: 0o600 })
        if (tokenFile !== undefined) await rm(tokenFile, { force: true })
      },
      catch: (e) => fail(`cannot keep the node's credentials in ${stateDir}: ${e}`)
    })
    yield* Effect.logInfo(`bootstrap: this machine is node ${state.nodeId}; NATS ${state.natsUrl}`)
    return settled(state)
  })
