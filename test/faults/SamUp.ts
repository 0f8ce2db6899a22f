import { type ChildProcess, execFile, spawn } from "node:child_process"
import { readFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { freePort, tempDir } from "../src/TestStack.js"

export const root = resolve(import.meta.dirname, "../..")
const sam = join(root, "sam")
export const exec = promisify(execFile)

export interface SamUp {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}

/**
 * The last resort for a `sam up` that did not stop: SIGKILL to its whole process group, its servers and vm-agents
 * with it (a Postgres a test left frozen once outlived the run when only `sam up` itself was killed).
 */
const killGroup = (child: ChildProcess) => {
  try {
    process.kill(-(child.pid as number), "SIGKILL")
  } catch {
    child.kill("SIGKILL")
  }
}

/** `./sam up` with `env`, resolved once it says it is up (or rejected with its output, and stopped, after `readyMs`). */
export const startSamUp = async (env: NodeJS.ProcessEnv, readyMs = 60_000): Promise<SamUp> => {
  // A process group of its own, which `killGroup` ends whole. Its Ctrl-C (SIGINT) still goes to `sam up` alone.
  const child = spawn(sam, ["up"], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true
  })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => (output += chunk))
  child.stderr.on("data", (chunk: Buffer) => (output += chunk))
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => {
      // Not left running behind a test that gave up on it.
      killGroup(child)
      fail(new Error(`sam up not ready in ${readyMs / 1000} s:\n${output}`))
    }, readyMs)
    child.stdout.on("data", () => {
      if (output.includes("Press Ctrl-C to stop.")) {
        clearTimeout(timer)
        ready()
      }
    })
    void exited.then((code) => {
      clearTimeout(timer)
      fail(new Error(`sam up exited with ${code}:\n${output}`))
    })
  })
  return { child, output: () => output, exited }
}

/** Ctrl-C, then wait (SIGKILL after `ms`); how long it took. */
export const stopSamUp = async (up: SamUp, ms = 15_000) => {
  if (up.child.exitCode !== null || up.child.signalCode !== null) return 0
  const started = Date.now()
  up.child.kill("SIGINT")
  const timer = setTimeout(() => killGroup(up.child), ms)
  await up.exited
  clearTimeout(timer)
  return Date.now() - started
}

/** A data directory, free ports, and a git repository to give tasks. */
export const makeEnv = async () => {
  const dataDir = await tempDir("sam-faults-")
  const gatewayPort = await freePort()
  const repo = join(dataDir, "repo")
  await exec("sh", [
    "-c",
    `mkdir -p ${repo} && cd ${repo} && git init -q -b main && echo hi > README.md && git add -A && git -c user.name=t -c user.email=t@t commit -qm init`
  ])
  return {
    dataDir,
    repo,
    gateway: `http://127.0.0.1:${gatewayPort}`,
    env: {
      SAM_DATA_DIR: dataDir,
      SAM_NATS_PORT: String(await freePort()),
      SAM_PG_PORT: String(await freePort()),
      SAM_GATEWAY_PORT: String(gatewayPort),
      SAM_NODE_RUNTIME: "host"
    }
  }
}

export interface Api {
  // biome-ignore lint/suspicious/noExplicitAny: a response body is arbitrary JSON; tests assert it field by field
  readonly call: (method: string, path: string, body?: unknown) => Promise<{ status: number; body: any; ms: number }>
  readonly token: string
}

/** The API with the CLI's token of that data directory. */
export const api = async (gateway: string, dataDir: string): Promise<Api> => {
  const token = (await readFile(join(dataDir, "cli.token"), "utf8")).trim()
  return {
    token,
    call: async (method, path, body) => {
      const started = Date.now()
      const response = await fetch(`${gateway}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" })
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(40_000)
      })
      const text = await response.text()
      let parsed: unknown = text
      try {
        parsed = JSON.parse(text)
      } catch {}
      return { status: response.status, body: parsed, ms: Date.now() - started }
    }
  }
}

/** Thrown by a `waitFor` check: what it waits for cannot happen any more. */
export class Stop extends Error {}

/** Poll `check` until it returns a value (not undefined/false), or fail after `ms`. */
export const waitFor = async <A>(what: string, check: () => Promise<A | undefined | false>, ms = 30_000) => {
  const deadline = Date.now() + ms
  for (;;) {
    // A check that throws a Stop gives up at once (the awaited state can no longer come); other errors are retried.
    const value = await check().catch((error) => {
      if (error instanceof Stop) throw error
      return undefined
    })
    if (value !== undefined && value !== false) return value as A
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((done) => setTimeout(done, 100))
  }
}

/** Submit a task; returns its id. */
export const submitTask = async (client: Api, projectId: string, prompt: string) => {
  const created = await client.call("POST", `/projects/${projectId}/tasks`, { prompt })
  if (created.status !== 201 && created.status !== 200) throw new Error(`task create: ${JSON.stringify(created)}`)
  return created.body.id as string
}

/** Wait until the task ends; fails unless it completed. Returns the task. */
export const awaitTask = async (client: Api, taskId: string, ms = 30_000) => {
  const task = await waitFor(
    `task ${taskId} to end`,
    async () => {
      const task = await client.call("GET", `/tasks/${taskId}`)
      return ["completed", "failed", "cancelled"].includes(task.body.status) ? task.body : undefined
    },
    ms
  )
  if (task.status !== "completed") throw new Error(`task ${task.id} ${task.status}: ${JSON.stringify(task)}`)
  return task
}

/** Submit a task and wait until it completes; returns the task. */
export const runTask = async (client: Api, projectId: string, prompt: string, ms = 30_000) =>
  awaitTask(client, await submitTask(client, projectId, prompt), ms)

export const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
