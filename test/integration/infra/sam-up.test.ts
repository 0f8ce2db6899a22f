import { type ChildProcess, execFile, spawn } from "node:child_process"
import { readFile, rm, stat } from "node:fs/promises"
import { connect as tcpConnect } from "node:net"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { freePort, tempDir } from "../../src/TestStack.js"

const root = resolve(import.meta.dirname, "../../..")
const sam = join(root, "sam")

const portOpen = (port: number) =>
  new Promise<boolean>((done) => {
    const socket = tcpConnect(port, "127.0.0.1")
    socket.once("connect", () => done(socket.destroy() === undefined || true))
    socket.once("error", () => done(false))
  })

interface Up {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}

/** `./sam up` until it says it is up (or fails, with its output in the error). */
const up = async (env: NodeJS.ProcessEnv): Promise<Up> => {
  const child = spawn(sam, ["up"], { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => (output += chunk))
  child.stderr.on("data", (chunk: Buffer) => (output += chunk))
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`sam up not ready in 60 s:\n${output}`)), 60_000)
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

describe("./sam up and ./sam creds ops", async () => {
  const dataDir = await tempDir("sam-up-")
  const natsPort = await freePort()
  const pgPort = await freePort()
  const env = {
    SAM_DATA_DIR: dataDir,
    SAM_NATS_PORT: String(natsPort),
    SAM_PG_PORT: String(pgPort),
    SAM_NODE_RUNTIME: "host"
  }
  const running: Array<Up> = []
  // A test that fails midway must not leave its `sam up` (and its servers' ports) to the next one:
  // stop it the way a user would, Ctrl-C, and wait.
  afterEach(async () => {
    for (const up of running.splice(0)) {
      if (up.child.exitCode !== null || up.child.signalCode !== null) continue
      up.child.kill("SIGINT")
      await Promise.race([up.exited, new Promise((done) => setTimeout(done, 15_000))])
    }
  })
  afterAll(async () => {
    for (const { child } of running) child.kill("SIGKILL")
    await rm(dataDir, { recursive: true, force: true })
  })

  it("starts NATS and Postgres with progress, stops cleanly on Ctrl-C, and reuses its data the second time", async () => {
    const first = await up(env)
    running.push(first)
    const lines = first.output()
    expect(lines).toContain(`nats-server on nats://127.0.0.1:${natsPort} (JetStream, operator mode; keys created`)
    expect(lines).toContain(`postgres on postgres://sam@127.0.0.1:${pgPort}/sam (cluster created)`)
    expect(lines).toContain("migrations applied: 0001_ledger")
    expect(lines).toMatch(/bus topology: \d+ streams and buckets \(created SAM_CMD, SAM_EVT, SAM_NODE, SAM_AGENT/)
    expect(lines).toContain(`SAM is up: NATS nats://127.0.0.1:${natsPort}`)
    expect(lines).not.toMatch(/postgres:\/\/sam:[^@]+@/) // the password is never printed
    expect(await portOpen(natsPort)).toBe(true)
    expect(await portOpen(pgPort)).toBe(true)

    first.child.kill("SIGINT")
    expect(await first.exited).toBe(0)
    expect(first.output()).toContain("SAM stopped.")
    expect(await portOpen(natsPort)).toBe(false)
    expect(await portOpen(pgPort)).toBe(false)

    const second = await up(env)
    running.push(second)
    expect(second.output()).toContain("keys reused")
    expect(second.output()).toContain("(cluster reused)")
    expect(second.output()).toContain("migrations up to date")
    expect(second.output()).toMatch(/\(\d+ unchanged\)/)

    // An operator's credentials: inspect streams, consumers and buckets as the NATS CLI would.
    const out = join(dataDir, "ops.creds")
    const { stdout } = await promisify(execFile)(sam, ["creds", "ops", "--out", out, "--days", "2"], {
      cwd: root,
      env: { ...process.env, ...env }
    })
    expect(stdout).toContain(`nats --server nats://127.0.0.1:${natsPort} --creds ${out} stream ls`)
    expect((await stat(out)).mode & 0o777).toBe(0o600)
    const nc = await connect({
      servers: `nats://127.0.0.1:${natsPort}`,
      authenticator: credsAuthenticator(await readFile(out))
    })
    try {
      const jsm = await jetstreamManager(nc)
      const streams: Array<string> = []
      for await (const name of jsm.streams.names()) streams.push(name)
      expect(streams).toEqual(expect.arrayContaining(["SAM_CMD", "SAM_EVT", "SAM_NODE", "SAM_AGENT"]))
      const consumers = await jsm.consumers.list("SAM_CMD").next()
      expect(Array.isArray(consumers)).toBe(true)
      const buckets: Array<string> = []
      for await (const status of new Kvm(nc).list()) buckets.push(status.bucket)
      expect(buckets).toEqual(expect.arrayContaining(["sam_session_state", "sam_leases", "sam_node_health"]))
    } finally {
      await nc.close()
    }

    // A task from the CLI: it reaches in_progress, streams the agent's output, and completes.
    const run = (...args: Array<string>) =>
      promisify(execFile)(sam, args, { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 })
    const repo = join(dataDir, "repo")
    await promisify(execFile)("sh", [
      "-c",
      `mkdir -p ${repo} && cd ${repo} && git init -q -b main && echo hi > README.md && git add -A && git -c user.name=t -c user.email=t@t commit -qm init`
    ])
    const project = (await run("project", "create", "--repo", repo, "--name", "demo")).stdout.trim()
    expect(project).toMatch(/^proj_[0-9a-z]+$/)
    const task = await run("task", "create", "--project", project, "--prompt", "say from the cli\nrun echo x > X.txt")
    // The agent's text streams in chunks; a task-status line may fall between two of them.
    expect(task.stdout.replace(/\n▸ [^\n]*\n/g, "")).toContain("from the cli")
    expect(task.stdout).toMatch(/▸ task completed .*branch sam\/task_/)
    const bad = await run("task", "create", "--project", "proj_nosuchproject", "--prompt", "x").catch((e) => e)
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("no project proj_nosuchproject")

    second.child.kill("SIGINT")
    expect(await second.exited).toBe(0)
  }, 180_000)

  it("says clearly what is wrong when a port is taken", async () => {
    const blocker = await up(env)
    running.push(blocker)
    const clash = spawn(sam, ["up"], {
      cwd: root,
      env: { ...process.env, ...env, SAM_DATA_DIR: join(dataDir, "other") },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    clash.stdout.on("data", (c: Buffer) => (output += c))
    clash.stderr.on("data", (c: Buffer) => (output += c))
    const code = await new Promise<number | null>((done) => clash.once("exit", done))
    expect(code).not.toBe(0)
    expect(output).toMatch(/✗ nats: nats-server exited .* before it was ready/)
    expect(output).toMatch(/address already in use/)
    blocker.child.kill("SIGINT")
    expect(await blocker.exited).toBe(0)
  }, 120_000)
})
