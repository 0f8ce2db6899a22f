import { execFile, execFileSync, spawn } from "node:child_process"
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { createServer as createTcpServer } from "node:net"
import { join } from "node:path"
import { promisify } from "node:util"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeHostRuntime } from "../src/runtime/HostRuntime.js"
import type { WorkspaceRuntimeService } from "../src/runtime/WorkspaceRuntime.js"
import { collecting, makeRepo, run, spec, tempDir } from "./runtimeFixtures.js"

const OPERATOR = { username: "operator", password: "operator-secret" }
const SAM_TOKEN = { username: "x-access-token", password: "sam-issued-token" }

/**
 * A private repository on a loopback git server (git's smart HTTP through `git http-backend`): every request
 * needs Basic credentials, the operator's or a SAM token; without them a 401 challenge, as GitHub answers.
 */
const serveGit = (root: string, admitted: Array<string>) => {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1")
    const basic = /^Basic (\S+)$/.exec(req.headers.authorization ?? "")?.[1]
    const [user = "", password = ""] = Buffer.from(basic ?? "", "base64")
      .toString("utf8")
      .split(":")
    const known = [OPERATOR, SAM_TOKEN].find((c) => c.username === user && c.password === password)
    if (known === undefined) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="private"', "content-type": "text/plain" })
      return void res.end("Authentication required.\n")
    }
    admitted.push(known.username)
    const child = spawn("git", ["http-backend"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: url.pathname,
        REQUEST_METHOD: req.method ?? "GET",
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_USER: user,
        REMOTE_ADDR: "127.0.0.1",
        ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {})
      }
    })
    req.pipe(child.stdin)
    let head = Buffer.alloc(0)
    let body = false
    child.stdout.on("data", (chunk: Buffer) => {
      if (body) return void res.write(chunk)
      head = Buffer.concat([head, chunk])
      const end = head.indexOf("\r\n\r\n")
      if (end < 0) return
      body = true
      let status = 200
      const headers: Record<string, string> = {}
      for (const line of head.subarray(0, end).toString("utf8").split("\r\n")) {
        const [key = "", ...value] = line.split(":")
        if (key.toLowerCase() === "status") status = Number.parseInt(value.join(":").trim(), 10)
        else headers[key.toLowerCase()] = value.join(":").trim()
      }
      res.writeHead(status, headers)
      res.write(head.subarray(end + 4))
    })
    child.on("close", () => res.end())
  })
  return new Promise<Server>((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)))
}

/** A loopback port nothing listens on. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const probe = createTcpServer().listen(0, "127.0.0.1", () => {
      const address = probe.address()
      probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 1))
    })
  })

/**
 * The vm-agent clones on a workspace's behalf (any SAM user's project URL): with the machine's git and SSH
 * credentials it would read what the operator can (ADR 0048 says a task reaches a repository as its submitter
 * may). The vm-agent here runs with an operator's HOME whose git config holds a credential helper that answers for
 * the repository, an SSH command, and an SSH agent's socket.
 */
describe("host runtime: the vm-agent's clone uses no credentials of the machine's", () => {
  let dir = ""
  let url = ""
  let sshMarker = ""
  let server: Server | undefined
  let runtime: WorkspaceRuntimeService
  const admitted: Array<string> = []
  const saved = { HOME: process.env.HOME, SSH_AUTH_SOCK: process.env.SSH_AUTH_SOCK }

  beforeAll(async () => {
    dir = await tempDir("sam-clone-credentials-")
    const source = await makeRepo(join(dir, "source"))
    execFileSync("git", ["clone", "-q", "--bare", source, join(dir, "served", "operator-org", "private.git")])
    server = await serveGit(join(dir, "served"), admitted)
    const address = server.address()
    url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}/operator-org/private.git`

    const home = join(dir, "operator-home")
    execFileSync("mkdir", ["-p", home])
    sshMarker = join(dir, "operator-ssh-used")
    const gitconfig = join(home, ".gitconfig")
    await writeFile(gitconfig, "")
    const set = (key: string, value: string) => execFileSync("git", ["config", "--file", gitconfig, key, value])
    set(
      "credential.helper",
      `!f() { test "$1" = get && printf 'username=${OPERATOR.username}\\npassword=${OPERATOR.password}\\n'; }; f`
    )
    set("core.sshCommand", `echo "$SSH_AUTH_SOCK" > ${sshMarker}; false`)
    process.env.HOME = home
    process.env.SSH_AUTH_SOCK = join(dir, "operator-agent.sock")
    // the premise: the machine's own git reaches the repository with these (not sync: the server is ours)
    await promisify(execFile)("git", ["ls-remote", url], { env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } })
    admitted.length = 0
    // claims of its own, so its "/tmp" is its own too: a uid it claims may be another test's in the machine's claims
    const machineTmp = join(dir, "machine-tmp")
    await mkdir(machineTmp)
    await chmod(machineTmp, 0o1777)
    runtime = makeHostRuntime({ dataDir: join(dir, "node"), uidClaims: join(dir, "uids"), tmpDirs: [machineTmp] })
  })

  afterAll(async () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
    await new Promise((resolve) => server?.close(resolve))
  })

  it("a repository only the machine's credentials reach is refused, with the reason in the boot log", async () => {
    const log = collecting()
    const info = await run(runtime.create(spec("ws_operator_https", url), { onLog: log.onLog }))
    expect(info.status).toBe("error")
    expect(info.reason).toMatch(/^clone: git exited with 128: .*could not read Username/)
    expect(info.reason).toMatch(/the node's own git and SSH credentials are never used/)
    expect(log.lines.at(-1)).toMatchObject({ step: "clone", status: "failed" })
    expect(admitted).toEqual([])
    await run(runtime.delete("ws_operator_https"))
  })

  it("an ssh:// repository is reached without the machine's SSH command, config or agent", async () => {
    const info = await run(
      runtime.create(spec("ws_operator_ssh", `ssh://git@127.0.0.1:${await closedPort()}/operator-org/private.git`))
    )
    expect(info.status).toBe("error")
    expect(info.reason).toMatch(/^clone: git exited with 128: /)
    await expect(stat(sshMarker)).rejects.toThrow(/ENOENT/)
    await run(runtime.delete("ws_operator_ssh"))
  })

  it("a SAM-issued repository token still clones it, and is not left in the checkout", async () => {
    admitted.length = 0
    const credential = { username: SAM_TOKEN.username, token: Redacted.make(SAM_TOKEN.password) }
    const info = await run(
      runtime.create(spec("ws_sam_token", url), { repositoryCredential: Effect.succeed(credential) })
    )
    expect(info.status, info.reason).toBe("running")
    expect(admitted.length).toBeGreaterThan(0)
    expect(new Set(admitted)).toEqual(new Set([SAM_TOKEN.username]))
    expect((await run(runtime.exec("ws_sam_token", ["cat", "README.md"]))).stdout).toBe("hello from the repo\n")
    expect(await readFile(join(info.path, ".git", "config"), "utf8")).not.toContain(SAM_TOKEN.password)
    await run(runtime.delete("ws_sam_token"))
  })
})
