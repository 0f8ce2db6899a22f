import { readFile, rm } from "node:fs/promises"
import { join } from "node:path"
import Docker from "dockerode"
import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as DockerApi from "../../infra/src/DockerApi.js"
import * as DockerEngine from "../../infra/src/DockerEngine.js"
import * as WorkspaceImage from "../../infra/src/WorkspaceImage.js"
import { makeDockerRuntime, probeDocker } from "../src/runtime/DockerRuntime.js"
import type { WorkspaceRuntimeService } from "../src/runtime/WorkspaceRuntime.js"
import { collecting, makeRepo, run, runtimeContract, spec, tempDir } from "./runtimeFixtures.js"

/**
 * A dockerd of our own on a socket in a temporary directory, with the workspace image imported from
 * the cached rootfs. When no engine can be had here the suite is skipped with the reason, unless
 * `sam test` prepared one (SAM_DOCKER_READY=1): then a failure to start it fails the run.
 */
const dir = await tempDir("sam-docker-")
const scope = Effect.runSync(Scope.make())
const started = Date.now()
const engine = await Effect.runPromise(
  Effect.gen(function* () {
    const engine = yield* DockerEngine.start({ dir: join(dir, "engine"), onProgress: () => {} })
    const image = yield* WorkspaceImage.ensure(engine, {
      onProgress: (line) => process.stdout.write(`[docker runtime test] ${line}\n`)
    })
    return { socketPath: engine.socketPath, image }
  }).pipe(Scope.extend(scope), Effect.either)
)
const skipReason = engine._tag === "Left" ? `no Docker engine: ${engine.left.message}` : undefined
if (skipReason && process.env.SAM_DOCKER_READY === "1")
  throw new Error(`the prepared Docker engine failed: ${skipReason}`)
if (skipReason) console.warn(`[docker runtime test] SKIPPED: ${skipReason}`)
else process.stdout.write(`[docker runtime test] engine and image ready in ${Date.now() - started} ms\n`)

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  // the engine stopped leaves nothing mounted under its directory (containers' overlays, netns)
  const mounted = await DockerEngine.mountsUnder(dir)
  await rm(dir, { recursive: true, force: true }).catch((e) => console.warn(`[docker runtime test] ${e}`))
  expect(mounted).toEqual([])
})

describe.skipIf(skipReason)(`Docker runtime${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`, () => {
  const socketPath = engine._tag === "Right" ? engine.right.socketPath : ""
  const image = engine._tag === "Right" ? engine.right.image : ""
  const make = () => makeDockerRuntime({ dataDir: join(dir, "node"), socketPath, image })
  const runtime: WorkspaceRuntimeService = make()
  let repo = ""
  const ready = makeRepo(join(dir, "repo")).then((path) => {
    repo = path
  })

  it("reports Docker as available with the workspace image", async () => {
    await ready
    expect(await run(probeDocker({ socketPath }))).toEqual({
      docker: true,
      hostRuntime: true,
      image: WorkspaceImage.TAG
    })
    expect((await run(probeDocker({ socketPath: join(dir, "nothing.sock") }))).docker).toBe(false)
    // overlay2 where the kernel has overlay (as on any installation): vfs would copy the image for every container
    const overlay = (await readFile("/proc/filesystems", "utf8")).includes("\toverlay")
    if (overlay) expect(await run(DockerApi.storageDriver({ socketPath }))).toBe("overlay2")
  })

  const contract = runtimeContract({ runtime: () => runtime, restarted: make, repo: () => repo })
  const ws = contract.workspaceId

  it("the container has no network, and node runs inside through the read-only mount", async () => {
    const exec = (argv: Array<string>) => run(runtime.exec(ws, argv))
    expect((await exec(["ls", "/sys/class/net"])).stdout.trim()).toBe("lo")
    expect((await exec(["node", "--version"])).stdout.trim()).toBe(process.version)
    const dial = "require('net').connect(53, '8.8.8.8').on('error', (e) => console.log(e.code))"
    expect((await exec(["node", "-e", dial])).stdout.trim()).toBe("ENETUNREACH")
    // of our code, the demo agent's bundle only: never the checkout, with its .sam and .git (ADR 0049)
    expect((await exec(["ls", "-A", "/opt/sam/app"])).stdout).toBe("demo-agent.mjs\n")
    for (const file of ["/opt/sam/app/x", "/opt/sam/app/demo-agent.mjs", "/opt/sam/bin/node"]) {
      const write = await exec(["sh", "-c", `touch ${file} 2>&1`])
      expect(write.stdout, file).toMatch(/Read-only file system|Permission denied/)
      expect(write.exitCode, file).not.toBe(0)
    }
  })

  it("a workspace container stopped or removed behind the runtime's back comes back on a repeated create", async () => {
    const docker = new Docker({ socketPath })
    await docker.getContainer(`sam-ws-${ws}`).stop({ t: 1 })
    const log = collecting()
    const info = await run(runtime.create(spec(ws, repo), { onLog: log.onLog }))
    expect(info.status).toBe("running")
    expect(log.lines[0]?.message).toMatch(/was not running; starting it/)
    expect((await run(runtime.exec(ws, ["cat", "marker"]))).stdout).toBe("mine\n")

    const other = "ws_removed"
    await run(runtime.create(spec(other, repo)))
    await docker.getContainer(`sam-ws-${other}`).remove({ force: true })
    const log2 = collecting()
    const again = await run(runtime.create(spec(other, repo), { onLog: log2.onLog }))
    expect(again.status, again.reason).toBe("running")
    expect(log2.lines[0]?.message).toMatch(/gone from the runtime; creating it anew/)
    expect((await run(runtime.exec(other, ["cat", "README.md"]))).exitCode).toBe(0)
    await run(runtime.delete(other))
  })

  it("a container from before ADR 0049, with our whole checkout at /opt/sam/app, is made again on a repeated create", async () => {
    const docker = new Docker({ socketPath })
    const old = "ws_old_app_mount"
    await run(runtime.create(spec(old, repo)))
    const name = `sam-ws-${old}`
    const made = await docker.getContainer(name).inspect()
    await docker.getContainer(name).remove({ force: true })
    const before = await docker.createContainer({
      name,
      Image: image,
      Cmd: ["sleep", "infinity"],
      User: made.Config.User,
      Labels: made.Config.Labels,
      HostConfig: { NetworkMode: "none", Binds: [`${dir}:/opt/sam/app:ro`] }
    })
    await before.start()
    const log = collecting()
    const again = await run(runtime.create(spec(old, repo), { onLog: log.onLog }))
    expect(again.status, again.reason).toBe("running")
    expect(log.lines[0]?.message).toMatch(/gone from the runtime; creating it anew/)
    expect((await run(runtime.exec(old, ["ls", "-A", "/opt/sam/app"]))).stdout).toBe("demo-agent.mjs\n")
    await run(runtime.delete(old))
  })

  it("a create that fails leaves nothing of its workspace running on the node, nor its container", async () => {
    const docker = new Docker({ socketPath })
    const containersOf = (id: string, all: boolean) =>
      docker.listContainers({ all, filters: { label: [`sam.workspace=${id}`] } })
    // fails after its container started, before it takes processes: its home cannot be made (a file is there)
    const early = await run(
      runtime.create(spec("ws_failed_early", repo, { files: [{ path: "/home/sam", content: "not a directory\n" }] }))
    )
    expect(early.status).toBe("error")
    expect(early.reason).toMatch(/^user: /)
    // fails in the container after it took processes (ADR 0037): the clone
    const notGit = await tempDir("sam-not-git-")
    const late = await run(runtime.create(spec("ws_failed_clone", notGit)))
    expect(late.status).toBe("error")
    expect(late.reason).toMatch(/^clone: /)
    for (const id of ["ws_failed_early", "ws_failed_clone"]) {
      expect((await containersOf(id, false)).map((c) => `${c.Names.join(",")} ${c.State}`)).toEqual([])
      expect((await containersOf(id, true)).map((c) => `${c.Names.join(",")} ${c.State}`)).toEqual([])
      await run(runtime.delete(id))
    }
  })

  contract.lifecycleTests()
})
