import { execFile, spawn } from "node:child_process"
import { readFile, rm, stat } from "node:fs/promises"
import { connect as tcpConnect } from "node:net"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { type SamUp, startSamUp } from "../../faults/SamUp.js"
import { freePort, tempDir } from "../../src/TestStack.js"

const root = resolve(import.meta.dirname, "../../..")
const sam = join(root, "sam")

const portOpen = (port: number) =>
  new Promise<boolean>((done) => {
    const socket = tcpConnect(port, "127.0.0.1")
    socket.once("connect", () => done(socket.destroy() === undefined || true))
    socket.once("error", () => done(false))
  })

describe("./sam up, its gateway, and the CLI", async () => {
  const dataDir = await tempDir("sam-up-")
  const natsPort = await freePort()
  const pgPort = await freePort()
  const gatewayPort = await freePort()
  const gateway = `http://127.0.0.1:${gatewayPort}`
  const env = {
    SAM_DATA_DIR: dataDir,
    SAM_NATS_PORT: String(natsPort),
    SAM_PG_PORT: String(pgPort),
    SAM_GATEWAY_PORT: String(gatewayPort),
    SAM_NODE_RUNTIME: "host"
  }
  const run = (...args: Array<string>) =>
    promisify(execFile)(sam, args, { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 })
  const login = (password: string) =>
    fetch(`${gateway}/api/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ login: "owner", password })
    }).then((response) => response.status)
  const running: Array<SamUp> = []
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

  it("starts NATS, Postgres and the gateway with progress, stops cleanly on Ctrl-C, reuses its data the second time, and the CLI works through the API", async () => {
    const first = await startSamUp(env)
    running.push(first)
    const lines = first.output()
    expect(lines).toContain(`nats-server on nats://127.0.0.1:${natsPort} (JetStream, operator mode; keys created`)
    expect(lines).toContain(`postgres on postgres://sam@127.0.0.1:${pgPort}/sam (cluster created)`)
    expect(lines).toContain("migrations applied: 0001_ledger")
    expect(lines).toMatch(/bus topology: \d+ streams and buckets \(created SAM_CMD, SAM_EVT, SAM_NODE, SAM_AGENT/)
    expect(lines).toContain(`gateway on ${gateway} (HTTP API ${gateway}/api/v1`)
    expect(lines).toContain(`SAM is up: ${gateway} · NATS nats://127.0.0.1:${natsPort}`)
    expect(lines).not.toMatch(/postgres:\/\/sam:[^@]+@/) // the password is never printed
    expect(await portOpen(natsPort)).toBe(true)
    expect(await portOpen(pgPort)).toBe(true)
    // The owner's password: this output is not a terminal (it may be a log), so it is not printed
    // but written to a file only its user can read; it signs in.
    const passwordFile = join(dataDir, "owner-password")
    expect(lines).toContain(`owner account created: login owner, password in ${passwordFile} (mode 0600`)
    expect((await stat(passwordFile)).mode & 0o777).toBe(0o600)
    const password = (await readFile(passwordFile, "utf8")).trim()
    expect(password.length).toBeGreaterThanOrEqual(20)
    expect(lines).not.toContain(password)
    expect(await login(password as string)).toBe(200)
    expect(await login(`${password}x`)).toBe(401)

    first.child.kill("SIGINT")
    expect(await first.exited).toBe(0)
    expect(first.output()).toContain("SAM stopped.")
    // a stop is no outage: the gateway's connections close after it, without a warning that they went down
    expect(first.output()).not.toContain("unavailable")
    expect(await portOpen(natsPort)).toBe(false)
    expect(await portOpen(pgPort)).toBe(false)
    expect(await portOpen(gatewayPort)).toBe(false)

    const second = await startSamUp(env)
    running.push(second)
    expect(second.output()).toContain("keys reused")
    expect(second.output()).toContain("(cluster reused)")
    expect(second.output()).toContain("migrations up to date")
    expect(second.output()).toMatch(/\(\d+ unchanged\)/)
    expect(second.output()).toContain("owner account: login owner")
    expect(second.output()).not.toContain(password as string)
    expect(second.output()).not.toMatch(/password \S/)
    expect(await login(password as string)).toBe(200)

    // A new owner password, to the file again (not a terminal); the old one stops working.
    const reset = await run("owner", "password")
    expect(reset.stdout).toContain(`new password for login owner written to ${passwordFile} (mode 0600)`)
    const newPassword = (await readFile(passwordFile, "utf8")).trim()
    expect(newPassword).not.toBe(password)
    expect(reset.stdout).not.toContain(newPassword)
    expect(await login(newPassword)).toBe(200)
    expect(await login(password as string)).toBe(401)
    // On a terminal it is shown once instead, and the stale file goes.
    const onTerminal = await promisify(execFile)("script", ["-qec", `${sam} owner password`, "/dev/null"], {
      cwd: root,
      env: { ...process.env, ...env }
    })
    const shown = /new password for login owner: (\S+)/.exec(onTerminal.stdout)?.[1]
    expect(shown).toBeDefined()
    expect(await login(shown as string)).toBe(200)
    await expect(stat(passwordFile)).rejects.toThrow()

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

    // A task from the CLI, through the gateway alone (its NATS and Postgres ports are wrong on purpose):
    // it streams the agent's output from the feed and completes.
    const viaGateway = (...args: Array<string>) =>
      promisify(execFile)(sam, args, {
        cwd: root,
        env: { ...process.env, ...env, SAM_NATS_PORT: "1", SAM_PG_PORT: "1" },
        timeout: 60_000
      })
    const repo = join(dataDir, "repo")
    await promisify(execFile)("sh", [
      "-c",
      `mkdir -p ${repo} && cd ${repo} && git init -q -b main && echo hi > README.md && git add -A && git -c user.name=t -c user.email=t@t commit -qm init`
    ])
    // a mistyped path is refused at once, said once
    const typo = await viaGateway("project", "create", "--repo", `${repo}-typo`, "--name", "demo").then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error
    )
    expect(typo?.code).toBe(1)
    expect(typo?.stderr?.match(/no git repository at this path/g)).toHaveLength(1)
    const project = (await viaGateway("project", "create", "--repo", repo, "--name", "demo")).stdout.trim()
    expect(project).toMatch(/^proj_[0-9a-z]+$/)
    expect((await viaGateway("project", "list")).stdout).toContain(`${project}  demo  owner`)
    const task = await viaGateway(
      "task",
      "create",
      "--project",
      project,
      "--prompt",
      "say from the cli\nrun echo x > X.txt\nthink pondering\nsay all done"
    )
    // The agent's output, then only how the task ended: the steps before its end that reach the feed after the
    // output (they come by another actor) are old news, not printed.
    const output = task.stdout.slice(task.stdout.indexOf("from "))
    expect(output).toContain("from the cli")
    expect(output.match(/▸ task [^\n]*/g)).toEqual([expect.stringMatching(/^▸ task completed · branch sam\/task_/)])
    // a thought, and the message after it, each on lines of their own
    expect(task.stdout).toContain("\x1b[2mpondering\x1b[0m\nall done")
    // an ended task's line says how it ended, not the step it was in ("completed · running")
    expect(task.stdout).toMatch(/▸ task completed · branch sam\/task_/)
    // and it comes after what the agent wrote in the task, its turn's end included (it often reaches the feed first)
    expect(task.stdout.indexOf("▸ task completed")).toBeGreaterThan(task.stdout.indexOf("· turn ended"))
    expect(task.stdout.indexOf("· turn ended")).toBeGreaterThan(task.stdout.indexOf("from the cli"))
    // a completed task's session sleeps and refuses a prompt: no hint to send one
    expect(task.stdout).not.toContain("follow up with")
    const taskId = /task (task_[0-9a-z]+) submitted/.exec(task.stdout)?.[1] as string
    const got = (await viaGateway("task", "get", taskId)).stdout
    expect(got).toMatch(/status +completed/)
    // the step it was in no longer holds: none is shown for an ended task, in `get` and in `list`
    expect(got).toMatch(/\nstep +-\n/)
    const listed = (await viaGateway("task", "list", "--project", project)).stdout
    expect(listed.split("\n").find((line) => line.startsWith(taskId))).toMatch(
      new RegExp(`^${taskId} +${project} +completed +- +task `)
    )
    // --project takes the project's name too, as `project list` shows it
    expect((await viaGateway("task", "list", "--project", "demo")).stdout).toBe(listed)
    const bad = await viaGateway("task", "create", "--project", "proj_nosuchproject", "--prompt", "x").catch((e) => e)
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("✗ not_found: no project proj_nosuchproject")
    const unnamed = await viaGateway("task", "create", "--project", "nosuch", "--prompt", "x").catch((e) => e)
    expect(unnamed.code).toBe(1)
    expect(unnamed.stderr).toContain('no project of yours is named "nosuch" (sam project list shows them')

    // A task whose agent asks for permission says so, with the command that answers it; that command does.
    const asking = spawn(
      sam,
      ["task", "create", "--project", project, "--prompt", "ask-permission edit X.txt\nsay allowed"],
      {
        cwd: root,
        env: { ...process.env, ...env, SAM_NATS_PORT: "1", SAM_PG_PORT: "1" }
      }
    )
    let asked = ""
    asking.stdout.on("data", (chunk) => {
      asked += chunk
    })
    const exited = new Promise<number | null>((done) => asking.on("exit", done))
    const answer = await expect
      .poll(
        () => /answer: \.\/sam (session answer sess_[0-9a-z]+ perm_\S+) allow\|reject\|cancelled/.exec(asked)?.[1],
        {
          timeout: 60_000
        }
      )
      .toBeTruthy()
      .then(() => /answer: \.\/sam (session answer sess_[0-9a-z]+ perm_\S+) /.exec(asked)![1]!)
    expect(asked).toContain("? the agent asks: edit X.txt")
    expect((await viaGateway(...answer.split(" "), "allow")).stdout).toContain("answered: allow")
    expect(await exited).toBe(0)
    expect(asked).toContain("· answered Allow")
    expect(asked.replace(/\n▸ [^\n]*\n/g, "")).toContain("allowed")

    // A cancel says whether it stopped anything: a session between turns has nothing to cancel (it said "cancel
    // sent" either way, so a cancel that came before its prompt's turn had begun looked like one that failed).
    const talk = await viaGateway(
      "task",
      "create",
      "--project",
      project,
      "--mode",
      "conversation",
      "--prompt",
      "say hi"
    )
    const talking = /follow up with \.\/sam session prompt (sess_[0-9a-z]+)/.exec(talk.stdout)?.[1] as string
    expect((await viaGateway("session", "cancel", talking)).stdout).toBe(
      `nothing to cancel: ${talking} has no turn running (it is idle)\n`
    )
    const long = viaGateway("session", "prompt", talking, "say before\nsleep 30000\nsay after")
    // once the turn runs, a cancel waits for it to end and shows how it ended (it said "its turn ends cancelled" before
    // the node had said so, also for a turn that ended on its own meanwhile)
    let cancelling = ""
    await expect
      .poll(async () => (cancelling = (await viaGateway("session", "cancel", talking)).stdout), { timeout: 20_000 })
      .toContain(`cancel sent to ${talking}; its turn ends:\n`)
    expect(cancelling).toContain("· turn ended (cancelled)")
    expect(cancelling).not.toContain("on its own")
    const cancelled = (await long).stdout
    expect(cancelled).toContain("· turn ended (cancelled)")
    expect(cancelled).not.toContain("after")
    // A turn the agent answers with an error (as one whose provider refuses its key) says why, and the command fails
    // (it printed nothing of it and waited for ever: only a turn-ended, failed or crashed ended it)
    const failing = await viaGateway(
      "session",
      "prompt",
      talking,
      "say trying\nfail the provider refused the key"
    ).then(
      () => undefined,
      (error: { code?: number; stdout?: string; stderr?: string }) => error
    )
    expect(failing?.code).toBe(1)
    expect(failing?.stdout).toContain("trying\n✗ the turn failed: Internal error: the provider refused the key\n")
    expect(failing?.stderr).toContain("the turn ended turn-failed")
    // in task mode the task fails with it, saying that its turn failed (it said the work "could not be kept")
    const broken = await viaGateway("task", "create", "--project", project, "--prompt", "fail no key").then(
      () => undefined,
      (error: { code?: number; stdout?: string }) => error
    )
    expect(broken?.code).toBe(1)
    expect(broken?.stdout).toContain("✗ the turn failed: Internal error: no key\n")
    expect(broken?.stdout).toContain("▸ task failed · the agent's turn failed: Internal error: no key\n")

    // An agent credential read from an empty stdin is refused here, saying how to give one (the API's "too small")
    const emptyKey = viaGateway("agents", "credential", "set", "claude-code")
    emptyKey.child.stdin?.end()
    const refusedKey = await emptyKey.then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error
    )
    expect(refusedKey?.code).toBe(1)
    expect(refusedKey?.stderr).toContain("no api-key given: pipe it on stdin")

    // API tokens: the value is printed once, never listed.
    const token = (await viaGateway("token", "create", "ci", "--days", "1")).stdout.trim()
    expect(token).toMatch(/^sam_pat_[0-9a-z]+$/)
    const tokens = (await viaGateway("token", "list")).stdout
    expect(tokens).toContain(" ci ")
    expect(tokens).not.toContain(token)

    // NATS credentials for the CLI's token, and the request the printed usage describes.
    const userCreds = join(dataDir, "user.creds")
    const creds = await viaGateway("creds", "user", "--out", userCreds)
    expect((await stat(userCreds)).mode & 0o777).toBe(0o600)
    const usage = /--inbox-prefix (\S+) req (\S+)\.task\.create/.exec(creds.stdout)
    expect(usage).not.toBeNull()
    const user = await connect({
      servers: `nats://127.0.0.1:${natsPort}`,
      authenticator: credsAuthenticator(await readFile(userCreds)),
      inboxPrefix: usage?.[1] as string
    })
    try {
      const reply = await user.request(
        `${usage?.[2]}.task.create`,
        JSON.stringify({ projectId: project, prompt: "say over nats" }),
        { timeout: 10_000 }
      )
      expect(reply.json()).toMatchObject({ ok: true, result: { projectId: project } })
    } finally {
      await user.close()
    }

    // With a node running: every actor shard hands its lease back at once and the node is stopped
    // with SIGTERM, not SIGKILL 10 s later (an idle mailbox once counted as a pending message).
    const stopping = Date.now()
    second.child.kill("SIGINT")
    expect(await second.exited).toBe(0)
    expect(Date.now() - stopping).toBeLessThan(8_000)
  }, 240_000)

  it("says clearly what is wrong when a port is taken", async () => {
    const blocker = await startSamUp(env)
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

    // Only the gateway's port taken: NATS and Postgres start, then stop again when the gateway cannot.
    const others = { nats: await freePort(), pg: await freePort() }
    const gatewayClash = spawn(sam, ["up"], {
      cwd: root,
      env: {
        ...process.env,
        ...env,
        SAM_DATA_DIR: join(dataDir, "other-gateway"),
        SAM_NATS_PORT: String(others.nats),
        SAM_PG_PORT: String(others.pg)
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let gatewayOutput = ""
    gatewayClash.stdout.on("data", (c: Buffer) => (gatewayOutput += c))
    gatewayClash.stderr.on("data", (c: Buffer) => (gatewayOutput += c))
    expect(await new Promise<number | null>((done) => gatewayClash.once("exit", done))).not.toBe(0)
    expect(gatewayOutput).toContain(`✗ gateway: cannot listen on 127.0.0.1:${gatewayPort}: address already in use`)
    expect(gatewayOutput).toContain("SAM stopped.")
    expect(await portOpen(others.nats)).toBe(false)
    expect(await portOpen(others.pg)).toBe(false)

    blocker.child.kill("SIGINT")
    expect(await blocker.exited).toBe(0)
  }, 180_000)
})
