import { spawn } from "node:child_process"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type GitCredentials, makeGitCredentials, REFRESH_MARGIN_MS } from "../src/node/GitCredentials.js"
import { pushBranch } from "../src/node/TaskCommit.js"
import { HELPER_SCRIPT } from "../src/runtime/internal/gitHelper.js"
import type { WorkspaceRuntimeService } from "../src/runtime/WorkspaceRuntime.js"

type Answer = { readonly json: unknown } | { readonly error: string }

/** Stands in for the node's NATS connection: answers `sam.agent.<node>.git` as the control plane would. */
const fakeNats = (answer: (subject: string, body: unknown) => Answer) => {
  const asked: Array<{ subject: string; body: unknown }> = []
  const nc = {
    request: async (subject: string, data: string) => {
      const body = JSON.parse(data) as unknown
      asked.push({ subject, body })
      const a = answer(subject, body)
      if ("error" in a) throw new Error(a.error)
      return { json: () => a.json }
    }
  }
  return { nc: nc as never, asked }
}

const granted = (token: string, expiresAt: Date) => ({
  json: { ok: true, username: "x-access-token", token, expiresAt: expiresAt.toISOString(), defaultBranch: "main" }
})

/** git's side of a credential helper: the real helper script, given `request` on stdin. */
const askHelper = (helper: string, socket: string, action: string, request: string) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [helper, socket, action], { stdio: ["pipe", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (d) => {
      out += d
    })
    child.on("error", reject)
    child.on("close", () => resolve(out))
    child.stdin.end(request)
  })

describe("repository tokens on the node (ADR 0028)", () => {
  let dir = ""
  let helper = ""
  const closing: Array<GitCredentials> = []
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sam-gitcred-"))
    helper = join(dir, "helper.cjs")
    await writeFile(helper, HELPER_SCRIPT)
  })
  afterAll(async () => {
    for (const git of closing) await Effect.runPromise(git.close())
    await rm(dir, { recursive: true, force: true })
  })

  it("the helper gets the token for the repository's own host only, and only for `get`", async () => {
    const { nc, asked } = fakeNats(() => granted("ghs_secret1", new Date(Date.now() + 3600_000)))
    const git = makeGitCredentials(nc, "node_a")
    closing.push(git)
    const socket = join(dir, "a.sock")
    await Effect.runPromise(git.serve("ws_a", socket, "http://127.0.0.1:4000/acme/widgets.git"))
    const own = await askHelper(helper, socket, "get", "protocol=http\nhost=127.0.0.1:4000\npath=acme/widgets.git\n")
    expect(own).toBe("username=x-access-token\npassword=ghs_secret1\n")
    expect(asked).toEqual([{ subject: "sam.agent.node_a.git", body: { workspaceId: "ws_a" } }])
    // another host, another scheme, another action: nothing, and the control plane is not asked
    expect(await askHelper(helper, socket, "get", "protocol=https\nhost=evil.example\n")).toBe("")
    expect(await askHelper(helper, socket, "get", "protocol=https\nhost=127.0.0.1:4000\n")).toBe("")
    expect(await askHelper(helper, socket, "store", "protocol=http\nhost=127.0.0.1:4000\n")).toBe("")
    expect(asked).toHaveLength(1)
    // a socket nobody serves: the helper says nothing and git goes on without credentials
    expect(await askHelper(helper, join(dir, "none.sock"), "get", "protocol=http\nhost=127.0.0.1:4000\n")).toBe("")
  })

  it("a token is reused until ten minutes before it expires, then asked for again", async () => {
    let clock = Date.now()
    let minted = 0
    const { nc, asked } = fakeNats(() => granted(`ghs_t${++minted}`, new Date(clock + 60 * 60_000)))
    const git = makeGitCredentials(nc, "node_b", () => clock)
    const token = async () => {
      const access = await Effect.runPromise(git.access("ws_b"))
      return access._tag === "Granted" ? Redacted.value(access.credential.token) : access._tag
    }
    expect(await token()).toBe("ghs_t1")
    clock += 60 * 60_000 - REFRESH_MARGIN_MS - 1000
    expect(await token()).toBe("ghs_t1")
    clock += 2000
    expect(await token()).toBe("ghs_t2")
    expect(asked).toHaveLength(2)
  })

  it("a token dropped (its task ended) is not given again: the control plane is asked, and its refusal holds", async () => {
    let ended = false
    const { nc, asked } = fakeNats(() =>
      ended
        ? { json: { ok: false, code: "forbidden", error: "the workspace's task is completed" } }
        : granted("ghs_live", new Date(Date.now() + 60 * 60_000))
    )
    const git = makeGitCredentials(nc, "node_d")
    expect((await Effect.runPromise(git.access("ws_d")))._tag).toBe("Granted")
    ended = true
    // kept, it would be served until it nears its expiry, an hour later
    expect((await Effect.runPromise(git.access("ws_d")))._tag).toBe("Granted")
    await Effect.runPromise(git.dropToken("ws_d"))
    expect(await Effect.runPromise(git.access("ws_d"))).toEqual({
      _tag: "Refused",
      reason: "the workspace's task is completed"
    })
    expect(asked).toHaveLength(2)
  })

  it("a token asked for before a drop and answered after it is given to its asker, not kept", async () => {
    const waiting: Array<() => void> = []
    const { nc, asked } = fakeNats(() => granted("ghs_late", new Date(Date.now() + 60 * 60_000)))
    const slow = {
      request: async (subject: string, data: string) => {
        await new Promise<void>((resolve) => waiting.push(resolve))
        return (nc as { request: (s: string, d: string) => Promise<unknown> }).request(subject, data)
      }
    }
    const answerNext = async () => {
      const deadline = Date.now() + 5_000
      while (waiting.length === 0) {
        if (Date.now() > deadline) throw new Error("the node did not ask the control plane")
        await new Promise((r) => setTimeout(r, 5))
      }
      waiting.shift()!()
    }
    const git = makeGitCredentials(slow as never, "node_e")
    const first = Effect.runPromise(git.access("ws_e"))
    while (waiting.length === 0) await new Promise((r) => setTimeout(r, 5))
    // the task ends while the answer is on its way
    await Effect.runPromise(git.dropToken("ws_e"))
    await answerNext()
    expect((await first)._tag).toBe("Granted")
    // not kept: the next one asks again
    const second = Effect.runPromise(git.access("ws_e"))
    await answerNext()
    await second
    expect(asked).toHaveLength(2)
  })

  it("nobody serving repository access means none; a refusal or a timeout is a refusal with the reason", async () => {
    const none = makeGitCredentials(fakeNats(() => ({ error: "503: no responders: 'sam.agent.n.git'" })).nc, "n")
    expect((await Effect.runPromise(none.access("ws_c")))._tag).toBe("None")
    const timeout = makeGitCredentials(fakeNats(() => ({ error: "TIMEOUT" })).nc, "n")
    expect(await Effect.runPromise(timeout.access("ws_c"))).toMatchObject({ _tag: "Refused" })
    const refused = makeGitCredentials(
      fakeNats(() => ({ json: { ok: false, code: "forbidden", error: "workspace ws_c is not on this node" } })).nc,
      "n"
    )
    expect(await Effect.runPromise(refused.access("ws_c"))).toEqual({
      _tag: "Refused",
      reason: "workspace ws_c is not on this node"
    })
    const notOurs = makeGitCredentials(fakeNats(() => ({ json: { ok: false, code: "none", error: "x" } })).nc, "n")
    expect((await Effect.runPromise(notOurs.access("ws_c")))._tag).toBe("None")
    const garbage = makeGitCredentials(fakeNats(() => ({ json: { ok: true, token: 5 } })).nc, "n")
    expect((await Effect.runPromise(garbage.access("ws_c")))._tag).toBe("Refused")
  })

  it("SAM's push path refuses the default branch without running git", async () => {
    const ran: Array<ReadonlyArray<string>> = []
    const runtime = {
      exec: (_: string, argv: ReadonlyArray<string>) => {
        ran.push(argv)
        return Effect.succeed({ exitCode: 0, stdout: "", stderr: "" })
      }
    } as unknown as WorkspaceRuntimeService
    const refused = await Effect.runPromise(pushBranch(runtime, "ws_d", "main", "main"))
    expect(refused).toEqual({ pushed: false, reason: "SAM never pushes to the default branch (main)" })
    expect(ran).toHaveLength(0)
    const pushed = await Effect.runPromise(pushBranch(runtime, "ws_d", "sam/task_1", "main"))
    expect(pushed).toEqual({ pushed: true })
    expect(ran).toEqual([["git", "push", "--porcelain", "origin", "refs/heads/sam/task_1:refs/heads/sam/task_1"]])
  })
})
