import { execFileSync } from "node:child_process"
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Option, Scope } from "effect"
import { expect, it } from "vitest"
import { tracked } from "../../test/src/TempDirs.js"
import type {
  BootLogEntry,
  ExecResult,
  WorkspaceProcess,
  WorkspaceRuntimeService,
  WorkspaceSpecInput
} from "../src/runtime/WorkspaceRuntime.js"

export const tempDir = (prefix: string) => mkdtemp(join(tmpdir(), prefix)).then(tracked)

/** A real git repository: `main` with README.md, and a branch `feature` with FEATURE.md. */
export const makeRepo = async (dir: string) => {
  await mkdir(dir, { recursive: true })
  const git = (...args: Array<string>) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { cwd: dir })
  git("init", "-q", "-b", "main")
  await writeFile(join(dir, "README.md"), "hello from the repo\n")
  git("add", ".")
  git("commit", "-qm", "first")
  git("checkout", "-qb", "feature")
  await writeFile(join(dir, "FEATURE.md"), "feature work\n")
  git("add", ".")
  git("commit", "-qm", "feature")
  git("checkout", "-q", "main")
  return dir
}

export const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

export const SECRET = "s3cr3t-value-never-logged"

export const spec = (workspaceId: string, repoUrl: string, extra: Partial<WorkspaceSpecInput> = {}) => ({
  workspaceId,
  repoUrl,
  env: [
    { name: "SAM_TOKEN", value: SECRET, secret: true },
    { name: "GREETING", value: "hi" }
  ],
  files: [
    { path: ".sam/config.json", content: '{"agent":"demo"}\n' },
    { path: "~/.config/agent/key", content: "key-file\n", mode: 0o600 }
  ],
  ...extra
})

export const collecting = () => {
  const lines: Array<BootLogEntry> = []
  return { lines, onLog: (entry: BootLogEntry) => Effect.sync(() => void lines.push(entry)) }
}

export interface ContractContext {
  readonly runtime: () => WorkspaceRuntimeService
  /** a second instance on the same storage, as after a daemon restart */
  readonly restarted: () => WorkspaceRuntimeService
  readonly repo: () => string
}

const id = () => `ws_${Math.random().toString(36).slice(2, 10)}`

/**
 * The behaviour both runtimes share. The tests run in order on one workspace (a Docker container
 * costs seconds where the engine has only vfs); the returned id names it for the runtime's own tests, which run before the last one.
 */
export const runtimeContract = (ctx: ContractContext) => {
  const ws = id()
  const sh = (script: string) => run(ctx.runtime().exec(ws, ["sh", "-c", script]))

  it("creates a workspace: repository cloned, runtime files and env present, boot log streamed", async () => {
    const log = collecting()
    const started = Date.now()
    const info = await run(ctx.runtime().create(spec(ws, ctx.repo()), { onLog: log.onLog }))
    process.stdout.write(`[${ctx.runtime().kind} runtime test] create in ${Date.now() - started} ms\n`)
    expect(info.status, info.reason).toBe("running")
    expect((await sh("cat README.md")).stdout).toBe("hello from the repo\n")
    expect((await sh("git rev-parse --abbrev-ref HEAD")).stdout.trim()).toBe("main")
    expect((await sh("cat .sam/config.json")).stdout).toBe('{"agent":"demo"}\n')
    expect((await sh('cat "$HOME/.config/agent/key"; stat -c %a "$HOME/.config/agent/key"')).stdout).toBe(
      "key-file\n600\n"
    )
    // the home and the directories made for its files are the user's to write
    expect((await sh('touch "$HOME/new" "$HOME/.config/new" "$HOME/.config/agent/new" && echo ok')).stdout).toBe("ok\n")
    expect((await sh('echo "$SAM_TOKEN $GREETING"')).stdout).toBe(`${SECRET} hi\n`)
    const steps = log.lines.map((l) => `${l.step}:${l.status}`)
    expect(steps).toContain("clone:started")
    expect(steps).toContain("clone:completed")
    expect(steps.at(-1)).toBe("create:completed")
    expect(log.lines.some((l) => l.message.includes("SAM_TOKEN"))).toBe(true)
    expect(JSON.stringify(log.lines)).not.toContain(SECRET)
  })

  it("takes processes while the repository is cloned (ADR 0037): with the env and home files, and nothing of the checkout theirs to write until the create ends", async () => {
    const early = id()
    let during: ExecResult | undefined
    const info = await run(
      ctx.runtime().create(spec(early, ctx.repo()), {
        // the create waits for this: what runs here sees the workspace as an agent started then does
        onSpawnable: ctx
          .runtime()
          .exec(early, ["sh", "-c", 'echo "$GREETING"; cat ~/.config/agent/key; ls -A; touch x 2>&1; true'])
          .pipe(
            Effect.tap((result) => {
              during = result
            }),
            Effect.orDie
          )
      })
    )
    expect(info.status, info.reason).toBe("running")
    const lines = during!.stdout.trim().split("\n")
    expect(lines.slice(0, 2)).toEqual(["hi", "key-file"])
    // the checkout is empty (the clone comes after), and not the user's to write (where it has a user of its own:
    // a container, or a host vm-agent that is root)
    if (ctx.runtime().kind === "docker" || process.getuid?.() === 0) {
      expect(lines.slice(2)).toHaveLength(1)
      expect(lines[2]).toMatch(/Permission denied/)
    }
    const after = await run(ctx.runtime().exec(early, ["sh", "-c", "cat README.md .sam/config.json; touch x"]))
    expect(after.exitCode, after.stderr).toBe(0)
    expect(after.stdout).toBe('hello from the repo\n{"agent":"demo"}\n')
    await run(ctx.runtime().delete(early))
  })

  it("a create that fails after its workspace took processes ends them (ADR 0037)", async () => {
    const failing = id()
    const notARepo = await tempDir("sam-not-a-repo-")
    const outcome = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const scope = yield* Effect.scope
          let started: WorkspaceProcess | undefined
          const info = yield* ctx.runtime().create(spec(failing, notARepo), {
            onSpawnable: ctx
              .runtime()
              .spawn(failing, ["sleep", "60"])
              .pipe(
                Scope.extend(scope),
                Effect.tap((proc) => {
                  started = proc
                }),
                Effect.asVoid,
                Effect.orDie
              )
          })
          const exit = yield* started!.exitCode.pipe(Effect.timeout("20 seconds"), Effect.option)
          return { info, exit }
        })
      )
    )
    expect(outcome.info.status).toBe("error")
    expect(outcome.info.reason).toMatch(/^clone: /)
    expect(Option.isSome(outcome.exit)).toBe(true)
    await run(ctx.runtime().delete(failing))
    await rm(notARepo, { recursive: true, force: true })
  })

  it("exec: cwd, extra env, exit codes, stdin", async () => {
    const result = await run(
      ctx.runtime().exec(ws, ["sh", "-c", 'pwd; echo "$EXTRA"; cat; exit 3'], {
        cwd: ".sam",
        env: { EXTRA: "more" },
        stdin: "from stdin\n"
      })
    )
    expect(result.exitCode).toBe(3)
    expect(result.stdout.split("\n").slice(1)).toEqual(["more", "from stdin", ""])
    expect(result.stdout.split("\n")[0]).toMatch(/\/\.sam$/)
    const err = await run(ctx.runtime().exec(ws, ["sh", "-c", "echo oops >&2"]))
    expect(err).toEqual({ exitCode: 0, stdout: "", stderr: "oops\n" })
    const missing = await run(ctx.runtime().exec(ws, ["sh", "-c", "exec no-such-command"]))
    expect(missing.exitCode).toBe(127)
  })

  it("kill ends a spawned process's whole group", async () => {
    const started = Date.now()
    const code = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const proc = yield* ctx.runtime().spawn(ws, ["sh", "-c", "sleep 29.71 & sleep 29.71; echo MARKER"])
          yield* proc.kill("SIGTERM")
          return yield* proc.exitCode
        })
      )
    )
    expect(code).toBeGreaterThan(128)
    expect(Date.now() - started).toBeLessThan(10_000)
    expect((await sh("ps -eo args | grep -c '^sleep 29.71' || true")).stdout.trim()).toBe("0")
  })

  it("endProcesses (a vm-agent started again) ends every process of the workspace, one in a session of its own too, and leaves it running", async () => {
    const marker = `sleep 29.${Math.floor(1000 + Math.random() * 8999)}`
    const count = async () => Number((await sh(`ps -eo args | grep -c '^${marker}$' || true`)).stdout.trim())
    const until = async (n: number) => {
      const deadline = Date.now() + 10_000
      let seen = await count()
      while (seen !== n && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100))
        seen = await count()
      }
      return seen
    }
    // left by a command that ended, in a session of its own: no process group the runtime knows of holds it
    await sh(`setsid ${marker} < /dev/null > /dev/null 2>&1 &`)
    expect(await until(1)).toBe(1)
    const after = ctx.restarted()
    await run(after.endProcesses(ws))
    // the host can tell a workspace's processes from the machine's only by the workspace's own uid (root's vm-agent)
    if (after.kind === "docker" || process.getuid?.() === 0) expect(await until(0)).toBe(0)
    const still = await run(after.get(ws))
    expect(still._tag === "Some" && still.value.status).toBe("running")
    expect((await sh("echo still")).stdout).toBe("still\n")
  })

  it("a repeated create with the same parameters is a no-op, also after a restart; other parameters conflict", async () => {
    const first = await run(ctx.runtime().get(ws))
    await sh("echo mine > marker")
    const log = collecting()
    const again = await run(ctx.runtime().create(spec(ws, ctx.repo()), { onLog: log.onLog }))
    expect(Option.some(again)).toEqual(first)
    expect(log.lines.map((l) => l.status)).toEqual(["info"])
    const afterRestart = await run(ctx.restarted().create(spec(ws, ctx.repo())))
    expect(afterRestart).toEqual(again)
    expect((await run(ctx.restarted().exec(ws, ["cat", "marker"]))).stdout).toBe("mine\n")

    const conflict = await run(
      Effect.flip(ctx.runtime().create(spec(ws, ctx.repo(), { env: [{ name: "SAM_TOKEN", value: "other" }] })))
    )
    expect(conflict._tag).toBe("WorkspaceConflict")
    const branchConflict = await run(Effect.flip(ctx.restarted().create(spec(ws, ctx.repo(), { branch: "feature" }))))
    expect(branchConflict._tag).toBe("WorkspaceConflict")
    expect((await sh("cat marker")).stdout).toBe("mine\n")
  })

  it("a repository that cannot be reached ends in error with a clear reason", async () => {
    const bad = id()
    const log = collecting()
    const missing = join(tmpdir(), "no-such-repo-here")
    const info = await run(ctx.runtime().create(spec(bad, `file://${missing}`), { onLog: log.onLog }))
    expect(info.status).toBe("error")
    expect(info.reason).toContain(`repository not found: ${missing}`)
    expect(log.lines.at(-1)?.status).toBe("failed")
    const exec = await run(Effect.flip(ctx.runtime().exec(bad, ["true"])))
    expect(exec._tag).toBe("WorkspaceUnavailable")

    const notGit = await tempDir("sam-not-git-")
    const bad2 = id()
    const info2 = await run(ctx.runtime().create(spec(bad2, notGit)))
    expect(info2.status).toBe("error")
    expect(info2.reason).toMatch(/^clone: git exited with 128: .*(not a git repository|does not exist)/)
    await run(ctx.runtime().delete(bad))
    await run(ctx.runtime().delete(bad2))
    await rm(notGit, { recursive: true, force: true })
  })

  return {
    workspaceId: ws,
    /** register after the runtime's own tests: stop, start, delete, then a fresh create of the same id */
    lifecycleTests: () =>
      it("stop, start, delete; after a delete the same id can be created anew (on another branch)", async () => {
        expect((await run(ctx.runtime().stop(ws))).status).toBe("stopped")
        expect((await run(Effect.flip(ctx.runtime().exec(ws, ["true"]))))._tag).toBe("WorkspaceUnavailable")
        expect((await run(ctx.runtime().start(ws))).status).toBe("running")
        expect((await sh("cat marker")).stdout).toBe("mine\n")
        await run(ctx.runtime().delete(ws))
        expect(Option.isNone(await run(ctx.runtime().get(ws)))).toBe(true)
        expect((await run(Effect.flip(ctx.runtime().exec(ws, ["true"]))))._tag).toBe("WorkspaceNotFound")
        await run(ctx.runtime().delete(ws))
        const again = await run(ctx.runtime().create(spec(ws, ctx.repo(), { branch: "feature" })))
        expect(again.status, again.reason).toBe("running")
        expect((await run(ctx.runtime().exec(ws, ["cat", "FEATURE.md"]))).stdout).toBe("feature work\n")
        expect((await sh("git rev-parse --abbrev-ref HEAD")).stdout.trim()).toBe("feature")
        await run(ctx.runtime().delete(ws))
      })
  }
}
