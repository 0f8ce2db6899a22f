import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { alive, api, makeEnv, root, runTask, type SamUp, startSamUp, stopSamUp, waitFor } from "./SamUp.js"

/** Whether a process runs: it exists and is not a zombie its parent has yet to reap. */
const running = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

/** A pid that was alive a moment ago and is no more: what a crashed `sam up` leaves in its lock. */
const deadPid = async () => {
  const child = spawn("true")
  await new Promise((done) => child.once("exit", done))
  return child.pid as number
}

describe("sam up supervises its local nodes and owns its data directory", async () => {
  const setup = await makeEnv()
  let up: SamUp

  beforeAll(async () => {
    // A lock left by a `sam up` that died is taken over.
    await writeFile(join(setup.dataDir, "sam-up.lock"), `${await deadPid()}\n`)
    up = await startSamUp(setup.env)
  }, 60_000)
  afterAll(async () => {
    if (up !== undefined) await stopSamUp(up)
    await rm(setup.dataDir, { recursive: true, force: true })
  })

  it("a second sam up on the same data directory exits at once naming the holder, and touches nothing", async () => {
    expect((await readFile(join(setup.dataDir, "sam-up.lock"), "utf8")).trim()).toBe(String(up.child.pid))
    const natsLog = await readFile(join(setup.dataDir, "nats", "nats.log"), "utf8")
    // `./sam up` says so before loading the CLI; the CLI itself takes the lock (two starting at once): the compiled
    // one `./sam up` runs, or, outside `./sam test`, the one from its sources, compiled at run time first (5–8 s
    // here, more on a slowed machine). Its limit says the lock refuses before anything starts.
    const cli =
      process.env.SAM_COMPILED === "1"
        ? ([[join(root, "dist/cli.mjs"), "up"], 5_000] as const)
        : ([["--import", "tsx", join(root, "infra/src/cli.ts"), "up"], 15_000] as const)
    for (const [command, args, limit] of [
      [join(root, "sam"), ["up"], 1_500],
      [process.execPath, cli[0], cli[1]]
    ] as const) {
      const started = Date.now()
      const second = spawn(command, [...args], {
        cwd: root,
        env: { ...process.env, ...setup.env, SAM_GATEWAY_PORT: "1" },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      second.stdout.on("data", (c: Buffer) => (output += c))
      second.stderr.on("data", (c: Buffer) => (output += c))
      const code = await new Promise<number | null>((done) => second.once("exit", done))
      const took = Date.now() - started
      console.log(`${command.endsWith("/sam") ? "./sam up" : "the CLI's up"} refused in ${took} ms`)
      expect(code).toBe(1)
      expect(output).toContain(`✗ lock: another sam up (pid ${up.child.pid}) is running on ${setup.dataDir}`)
      expect(output).not.toContain("Starting SAM")
      expect(took).toBeLessThan(limit)
    }
    // The first one's server log is as it was, its lock is still its own, and it still serves.
    expect(await readFile(join(setup.dataDir, "nats", "nats.log"), "utf8")).toBe(natsLog)
    expect((await readFile(join(setup.dataDir, "sam-up.lock"), "utf8")).trim()).toBe(String(up.child.pid))
    expect(up.child.exitCode).toBeNull()
    expect((await (await api(setup.gateway, setup.dataDir)).call("GET", "/me")).status).toBe(200)
  }, 30_000)

  it("a vm-agent killed with SIGKILL is restarted with fresh credentials and runs the next task", async () => {
    const client = await api(setup.gateway, setup.dataDir)
    const project = await client.call("POST", "/projects", { name: "faults", repoUrl: setup.repo })
    expect(project.status).toBe(201)
    const first = await runTask(client, project.body.id, "say before\nrun echo 1 > ONE.txt")
    const nodeId = first.nodeId as string
    const pid = Number(new RegExp(`local node ${nodeId} started \\(pid (\\d+)`).exec(up.output())?.[1])
    expect(alive(pid)).toBe(true)
    const creds = await readFile(join(setup.dataDir, "nodes", nodeId, "node.creds"), "utf8")

    const killed = Date.now()
    process.kill(pid, "SIGKILL")
    const restarted = new RegExp(`local node ${nodeId}: vm-agent restarted \\(pid (\\d+)`)
    const newPid = await waitFor("the vm-agent to be restarted", async () => restarted.exec(up.output())?.[1], 15_000)
    const delay = Date.now() - killed
    console.log(`vm-agent restarted ${delay} ms after SIGKILL`)
    expect(up.output()).toMatch(
      new RegExp(
        `local node ${nodeId}: vm-agent \\(pid ${pid}\\) exited \\(SIGKILL\\); restarting it in 1 s \\(attempt 1\\)`
      )
    )
    expect(Number(newPid)).not.toBe(pid)
    expect(alive(Number(newPid))).toBe(true)
    expect(delay).toBeLessThan(5_000)
    // Credentials minted anew for the restart (the old JWT may have expired).
    expect(await readFile(join(setup.dataDir, "nodes", nodeId, "node.creds"), "utf8")).not.toBe(creds)

    const started = Date.now()
    const next = await runTask(client, project.body.id, "say after the restart\nrun echo 2 > TWO.txt")
    console.log(`a task on the restarted node completed ${Date.now() - started} ms after submission`)
    expect(next.nodeId).toBe(nodeId)
  }, 55_000)

  it("a sam up killed outright leaves nothing running: its servers and nodes end with it, and the next one starts", async () => {
    // what this `sam up` started, as it recorded it: its servers and its local node's vm-agent
    const pidsFile = join(setup.dataDir, "sam-up.pids")
    const recorded = (await readFile(pidsFile, "utf8"))
      .trim()
      .split("\n")
      .map((line) => line.split(" "))
    const whats = recorded.map((fields) => fields.slice(3).join(" "))
    expect(whats).toEqual(expect.arrayContaining(["nats", "postgres", expect.stringMatching(/^vm-agent of node_/)]))
    const pids = recorded.map((fields) => Number(fields[0])).filter((pid) => alive(pid))
    expect(pids.length).toBeGreaterThanOrEqual(3)

    // SIGKILL (the OOM killer does the same): nothing of `sam up` runs to stop what it started, and each of them
    // ends anyway, on the signal the kernel sends it when its parent dies (they outlived it before)
    process.kill(up.child.pid as number, "SIGKILL")
    await up.exited
    const killedAt = Date.now()
    await waitFor("what the killed sam up started to end", async () => pids.every((pid) => !running(pid)), 20_000)
    console.log(`what a sam up killed outright had started ended ${Date.now() - killedAt} ms after it`)

    // One that does not end so (started without a parent-death signal, or deaf to it) is stopped by the next
    // `sam up` on the directory before it starts its own, as its record says: a process stands in for it here.
    const deaf = spawn("sleep", ["600"], { detached: true, stdio: "ignore" })
    deaf.unref()
    const deafPid = deaf.pid as number
    const stat = readFileSync(`/proc/${deafPid}/stat`, "utf8")
    const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
    await writeFile(pidsFile, `${deafPid} ${startTime} SIGTERM nats\n`, { flag: "a" })
    try {
      const started = Date.now()
      up = await startSamUp(setup.env)
      console.log(`sam up after a SIGKILL was up in ${Date.now() - started} ms`)
      expect(up.output()).toMatch(
        new RegExp(
          `✓ stopped what the last sam up on this directory left running when it was killed: .*nats \\(pid ${deafPid}`
        )
      )
      expect(running(deafPid)).toBe(false)
      expect((await (await api(setup.gateway, setup.dataDir)).call("GET", "/me")).status).toBe(200)
    } finally {
      if (running(deafPid)) process.kill(deafPid, "SIGKILL")
    }
  }, 90_000)

  it("a sam up whose terminal closes (SIGHUP) stops as on Ctrl-C: its servers and nodes with it", async () => {
    const recorded = (await readFile(join(setup.dataDir, "sam-up.pids"), "utf8"))
      .trim()
      .split("\n")
      .map((line) => Number(line.split(" ")[0]))
    expect(recorded.filter((pid) => running(pid)).length).toBeGreaterThanOrEqual(2)
    process.kill(up.child.pid as number, "SIGHUP")
    expect(await up.exited).toBe(0)
    expect(up.output()).toContain("SAM stopped.")
    for (const pid of recorded) expect(running(pid), `pid ${pid} still runs`).toBe(false)
  }, 60_000)
})
