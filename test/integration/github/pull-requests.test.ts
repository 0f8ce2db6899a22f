import { execFileSync, spawn } from "node:child_process"
import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { lstat, readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { NatsAccounts } from "@sam/actors"
import { type Api, Domain, makeId, Nats, natsLayer, Subjects } from "@sam/bus"
import { GitHubRepoAccess } from "@sam/gateway"
import { FeedClient } from "@sam/gateway/client"
import { Effect, Redacted } from "effect"
import { afterAll, expect } from "vitest"
import { LocalNodes } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { cookieOf, GatewayUrl, http, makeGatewayEnv, startFakeGitHub } from "../../src/index.js"

process.env.SAM_MASTER_KEY ??= Buffer.alloc(32, 7).toString("base64")

const keys = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs1", format: "pem" }
})
const client = { id: "Iv1.prclient", secret: "pr-client-secret-value" }
const webhookSecret = "whsec-pull-requests-0123456789"
const github = await startFakeGitHub(client, { id: "5151", publicKey: keys.publicKey })
afterAll(() => github.close())

const acme = github.install({
  id: 7001,
  account: { login: "acme", id: 9701, type: "Organization" },
  repositories: [
    { id: 771, name: "widgets", private: true, defaultBranch: "main" },
    { id: 772, name: "gadgets", private: true, defaultBranch: "main" }
  ],
  access: new Set(["ada", "bob"]),
  // bob may read acme's repositories on GitHub, not push to them; carol has nothing there
  readOnly: new Set(["bob"])
})
github.createRepository(acme, acme.repositories[0]!, { "README.md": "widgets\n" })
github.createRepository(acme, acme.repositories[1]!, { "README.md": "gadgets\n" })

const app = {
  appId: "5151",
  privateKey: Redacted.make(keys.privateKey),
  webhookSecret: Redacted.make(webhookSecret),
  apiUrl: github.url,
  webUrl: github.url
}
const env = makeGatewayEnv({
  github: {
    clientId: client.id,
    clientSecret: Redacted.make(client.secret),
    webUrl: github.url,
    apiUrl: github.url,
    allowAny: true
  },
  githubApp: app
})

/** Everything this process writes to stdout and stderr while the file runs (the gateway and control plane log there). */
const output: Array<string> = []
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream)
  stream.write = ((chunk: unknown, ...rest: Array<never>) => {
    output.push(String(chunk))
    return write(chunk as never, ...rest)
  }) as typeof stream.write
}

const signIn = (user: { id: number; login: string; name: string | null }) =>
  Effect.gen(function* () {
    const start = yield* http("GET", "/api/v1/auth/github")
    const authorize = new URL(start.headers.get("location") ?? "")
    const redirectUri = authorize.searchParams.get("redirect_uri") ?? ""
    const code = github.authorize(user, redirectUri, "read:user read:org")
    const done = yield* http(
      "GET",
      `${new URL(redirectUri).pathname}?code=${code}&state=${authorize.searchParams.get("state")}`,
      { headers: { cookie: `sam_oauth_state=${cookieOf(start.headers, "sam_oauth_state")}` } }
    )
    expect(done.status, JSON.stringify(done.body)).toBe(302)
    const session = cookieOf(done.headers, "sam_session") ?? ""
    return { session, headers: { cookie: `sam_session=${session}` } }
  })

/** `installation.created` sent by ada: she installed the app on acme, so she may use it. */
const installedBy = (sender: { id: number; login: string }) => {
  const raw = JSON.stringify({
    action: "created",
    installation: { id: acme.id, account: acme.account, app_id: 1, target_type: "Organization" },
    sender,
    repositories: []
  })
  return http("POST", "/api/v1/github/webhook", {
    raw,
    headers: {
      "content-type": "application/json",
      "x-github-event": "installation",
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": `sha256=${createHmac("sha256", webhookSecret).update(raw).digest("hex")}`
    }
  })
}

/** Every regular file under `dir` (a node's data: its log, records, workspaces and their checkouts). */
const filesUnder = async (dir: string): Promise<Array<string>> => {
  const out: Array<string> = []
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await filesUnder(path)))
    else if (entry.isFile() && (await lstat(path)).size < 50_000_000) out.push(path)
  }
  return out
}

const tasksDone = (taskIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    waitUntil(
      "the tasks to end",
      Effect.map(
        sql<{ id: string; status: string; errorReason: string | null; sessionId: string; workspaceId: string }>`
          SELECT id, status, error_reason, session_id, workspace_id FROM tasks WHERE id IN ${sql.in(taskIds)}`,
        (rows) =>
          rows.length === taskIds.length && rows.every((r) => ["completed", "failed", "cancelled"].includes(r.status))
            ? rows
            : undefined
      ),
      { timeout: "90 seconds", every: "250 millis" }
    )
  )

layer(env, { excludeTestServices: true, timeout: 180_000 })("GitHub: repository access and pull requests", (it) => {
  it.effect(
    "a task on a private repository clones with a minted token, pushes sam/<task> and opens a pull request; the default branch is refused; the token stays out of the ledger, logs, API and other workspaces",
    () =>
      Effect.gen(function* () {
        const ada = yield* signIn({ id: 2201, login: "ada", name: "Ada" })
        expect((yield* installedBy({ id: 2201, login: "ada" })).body).toEqual({ fresh: true, handled: true })

        // a project from a repository of the installation: URL and default branch from GitHub
        const created = yield* http("POST", "/api/v1/projects", {
          headers: ada.headers,
          body: { name: "widgets", github: { installationId: acme.id, repository: "acme/widgets" } }
        })
        expect(created.status, JSON.stringify(created.body)).toBe(201)
        expect(created.body).toMatchObject({
          repoUrl: `${github.url}/acme/widgets.git`,
          defaultBranch: "main",
          githubRepository: "acme/widgets"
        })
        const projectId = created.body.id as string
        // a repository the installation does not give is refused, and nothing is made
        const outside = yield* http("POST", "/api/v1/projects", {
          headers: ada.headers,
          body: { name: "nope", github: { installationId: acme.id, repository: "acme/secret" } }
        })
        expect(outside.status).toBe(404)
        const both = yield* http("POST", "/api/v1/projects", {
          headers: ada.headers,
          body: { name: "x", repoUrl: "https://example.com/x.git", github: { installationId: 1, repository: "a/b" } }
        })
        expect(both.status).toBe(400)

        // the feed, as the web app follows a project
        const frames: Array<Api.ServerFrame> = []
        const feed = new FeedClient({
          baseUrl: yield* GatewayUrl,
          token: ada.session,
          projects: [projectId],
          onFrame: (f) => frames.push(f)
        })

        // The agent writes a file and tries to push to the default branch itself (GitHub's protection refuses it).
        const prompt = [
          "run echo 'made by the agent' > NOTES.md",
          "run git -c user.name=agent -c user.email=a@x commit -q --allow-empty -m direct && git push origin HEAD:main 2>&1; echo push-exit=$?"
        ].join("\n")
        const submitted = yield* http("POST", `/api/v1/projects/${projectId}/tasks`, {
          headers: ada.headers,
          body: { prompt, agent: "demo", mode: "task" }
        })
        expect(submitted.status, JSON.stringify(submitted.body)).toBe(201)
        const taskId = submitted.body.id as string
        const [task] = yield* tasksDone([taskId])
        expect(task, JSON.stringify(task)).toMatchObject({ status: "completed" })

        // the clone asked GitHub with a token: the repository is private
        expect(github.gitRequests.filter((r) => r.repo === "acme/widgets" && r.status === 200).length).toBeGreaterThan(
          0
        )
        // the branch is on GitHub, the default branch is as it was
        const bare = join(github.gitRoot, "acme", "widgets.git")
        const heads = yield* Effect.promise(async () => {
          const { execFileSync } = await import("node:child_process")
          return execFileSync("git", ["--git-dir", bare, "for-each-ref", "--format=%(refname) %(subject)"], {
            encoding: "utf8"
          })
        })
        expect(heads).toContain(`refs/heads/sam/${taskId} SAM task ${taskId}`)
        expect(heads).toContain("refs/heads/main initial")
        expect(heads).not.toContain("direct")

        // the agent's own push to main was refused by the repository's protection
        const sql = yield* SqlClient.SqlClient
        const transcript = (yield* sql<{ payload: string }>`
          SELECT payload::text AS payload FROM session_events WHERE session_id = ${task!.sessionId}`)
          .map((r) => r.payload)
          .join("\n")
        expect(transcript).toContain("GH006")
        expect(transcript).not.toContain("push-exit=0")

        // the pull request: on GitHub, on the task and session, in the feed, as a notification
        const pr = yield* waitUntil(
          "the pull request on the task",
          Effect.map(
            sql<{
              prUrl: string | null
              prNumber: number | null
            }>`SELECT pr_url, pr_number FROM tasks WHERE id = ${taskId}`,
            (rows) => (rows[0]?.prUrl ? rows[0] : undefined)
          ),
          { timeout: "30 seconds", every: "200 millis" }
        )
        const opened = github.pullRequests.get("acme/widgets") ?? []
        expect(opened).toHaveLength(1)
        expect(opened[0]).toMatchObject({ head: `sam/${taskId}`, base: "main", html_url: pr.prUrl })
        expect(opened[0]?.title).toMatch(/^SAM: /)
        expect(opened[0]?.body).toContain(`/projects/${projectId}/chat/${task!.sessionId}`)
        const api = yield* http("GET", `/api/v1/tasks/${taskId}`, { headers: ada.headers })
        expect(api.body.prUrl).toBe(pr.prUrl)
        const session = yield* http("GET", `/api/v1/sessions/${task!.sessionId}`, { headers: ada.headers })
        expect(session.body.prUrl).toBe(pr.prUrl)
        yield* waitUntil(
          "the pull request in the feed",
          Effect.sync(() => frames.find((f) => f.type === "event" && JSON.stringify(f).includes("task.pull-request"))),
          { timeout: "15 seconds", every: "100 millis" }
        ).pipe(Effect.tap((frame) => Effect.sync(() => expect(JSON.stringify(frame)).toContain(pr.prUrl!))))
        const notification = yield* waitUntil(
          "a pr_created notification",
          Effect.map(http("GET", "/api/v1/notifications", { headers: ada.headers }), (r) =>
            (r.body.notifications as Array<{ type: string; body: string | null }>).find((n) => n.type === "pr_created")
          ),
          { timeout: "15 seconds", every: "200 millis" }
        )
        expect(notification.body).toBe(pr.prUrl)

        // A second workspace, of another project on the same node: its socket answers with its own
        // repository's token only, so the first repository is out of its reach; the first's socket refuses it.
        const other = yield* http("POST", "/api/v1/projects", {
          headers: ada.headers,
          body: { name: "gadgets", github: { installationId: acme.id, repository: "acme/gadgets" } }
        })
        expect(other.status, JSON.stringify(other.body)).toBe(201)
        const firstWs = task!.workspaceId
        const nodes = yield* LocalNodes
        const firstDir = (yield* Effect.promise(() => filesUnder(nodes.dir))).find((f) =>
          f.endsWith(join(firstWs, "git-credential-sam.cjs"))
        )
        expect(firstDir).toBeDefined()
        const firstSocket = join(firstDir!, "..", "git.sock")
        const probe = [
          `run git ls-remote ${github.url}/acme/widgets.git 2>&1; echo widgets-exit=$?`,
          `run git ls-remote ${github.url}/acme/gadgets.git >/dev/null 2>&1; echo gadgets-exit=$?`,
          `run printf 'protocol=http\\nhost=${new URL(github.url).host}\\n' | node ${firstDir} ${firstSocket} get; echo; echo stolen-exit=$?`,
          // its own token (the agent can ask its own helper) reaches code only: no pull requests with it
          `run T=$(printf 'protocol=http\\nhost=${new URL(github.url).host}\\n\\n' | git credential fill | sed -n 's/^password=//p'); ` +
            `curl -s -o /dev/null -w 'pr-status=%{http_code}\\n' -X POST -H "authorization: token $T" ` +
            `-d '{"title":"x","head":"main","base":"main"}' ${github.url}/repos/acme/gadgets/pulls`
        ].join("\n")
        const second = yield* http("POST", `/api/v1/projects/${other.body.id}/tasks`, {
          headers: ada.headers,
          body: { prompt: probe, agent: "demo", mode: "conversation" }
        })
        expect(second.status, JSON.stringify(second.body)).toBe(201)
        const secondSession = yield* waitUntil(
          "the probe to run",
          Effect.map(
            sql<{ sessionId: string | null }>`SELECT session_id FROM tasks WHERE id = ${second.body.id}`,
            (rows) => rows[0]?.sessionId ?? undefined
          ),
          { timeout: "60 seconds", every: "200 millis" }
        )
        const probed = yield* waitUntil(
          "the probe's output",
          Effect.map(
            sql<{
              payload: string
            }>`SELECT payload::text AS payload FROM session_events WHERE session_id = ${secondSession}`,
            (rows) => {
              const text = rows.map((r) => r.payload).join("\n")
              // the prompt itself says `pr-status=%{http_code}`: wait for the number
              return /pr-status=\d/.test(text) ? text : undefined
            }
          ),
          { timeout: "60 seconds", every: "250 millis" }
        )
        expect(probed).toContain("gadgets-exit=0")
        expect(probed).not.toContain("widgets-exit=0")
        expect(probed).not.toMatch(/password=ghs_/)
        expect(probed).toContain("pr-status=403")

        // The control plane answers a node only for its own workspaces: another node asking for the first
        // workspace's token (on its own subject, with its own credentials) is refused.
        const accounts = yield* NatsAccounts.NatsAccounts
        const strangerId = makeId("node")
        const stranger = yield* accounts.nodeCredentials(strangerId, 300)
        const audits = (yield* Nats).nc.subscribe(`sam.evt.system.node.${strangerId}.report.dropped`, { max: 1 })
        const reply = yield* Effect.scoped(
          Effect.gen(function* () {
            const { nc } = yield* Nats
            const msg = yield* Effect.promise(() =>
              nc.request(Domain.GitAccess.gitAccessSubject(strangerId), JSON.stringify({ workspaceId: firstWs }), {
                timeout: 5000
              })
            )
            return msg.json() as Domain.GitAccess.GitAccessReply
          }).pipe(
            Effect.provide(
              natsLayer({
                servers: nodes.natsUrl,
                creds: stranger.creds,
                name: "stranger",
                inboxPrefix: Subjects.nodeInboxPrefix(strangerId)
              })
            )
          )
        )
        expect(reply).toMatchObject({ ok: false, code: "forbidden" })
        // and audited as a dropped report of that node
        const audit = yield* Effect.promise(async () => {
          for await (const msg of audits) return msg.json() as { body: Record<string, string> }
          return undefined
        }).pipe(Effect.timeout("10 seconds"))
        expect(audit?.body).toMatchObject({ nodeId: strangerId, entityId: firstWs, reportType: "git.access" })
        const direct = yield* GitHubRepoAccess.gitAccess(app, strangerId, firstWs)
        expect(direct.ok).toBe(false)
        // and its own node gets nothing for it either once its task completed (its work was pushed before)
        const [first] = yield* sql<{ nodeId: string }>`SELECT node_id FROM workspaces WHERE id = ${firstWs}`
        expect(yield* GitHubRepoAccess.gitAccess(app, first!.nodeId, firstWs)).toMatchObject({
          ok: false,
          code: "forbidden",
          error: "the workspace's task is completed: it needs the repository no more"
        })
        // nor does whatever still runs in it, through its own helper: the node dropped the token it kept when the
        // task's result went out, and asks again (before, it served the kept one until it neared its expiry)
        expect(existsSync(firstSocket)).toBe(true)
        // asked without blocking this process, which answers the node for the control plane
        const answered = yield* Effect.promise(
          () =>
            new Promise<string>((resolve, reject) => {
              const child = spawn(process.execPath, [firstDir!, firstSocket, "get"], {
                stdio: ["pipe", "pipe", "ignore"]
              })
              let out = ""
              child.stdout.on("data", (d) => {
                out += d
              })
              child.on("error", reject)
              child.on("close", () => resolve(out))
              child.stdin.end(`protocol=http\nhost=${new URL(github.url).host}\n\n`)
            })
        )
        expect(answered).not.toContain("password=")
        // and it was the control plane's refusal, not a lost answer
        const log = join(nodes.dir, first!.nodeId, "vm-agent.log")
        yield* waitUntil(
          "the node's log of the refusal",
          Effect.sync(() =>
            readFileSync(log, "utf8").includes(
              `workspace ${firstWs}: no repository token (the workspace's task is completed`
            )
              ? true
              : undefined
          ),
          { timeout: "10 seconds" }
        )

        // No minted token anywhere: the ledger, the nodes' files (logs, records, checkouts), this process's
        // output, the API's answers.
        const minted = [...github.installationTokens.keys()]
        expect(minted.length).toBeGreaterThan(1)
        const tables = yield* sql<{ tablename: string }>`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`
        for (const { tablename } of tables) {
          const dump = (yield* sql.unsafe<{ row: string }>(`SELECT t::text AS row FROM "${tablename}" t`))
            .map((r) => r.row)
            .join("\n")
          for (const token of minted) expect(dump.includes(token), `a token in ${tablename}`).toBe(false)
        }
        for (const file of yield* Effect.promise(() => filesUnder(nodes.dir))) {
          const text = yield* Effect.promise(() => readFile(file, "latin1"))
          for (const token of minted) expect(text.includes(token), `a token in ${file}`).toBe(false)
        }
        const answers = [
          api.body,
          session.body,
          (yield* http("GET", `/api/v1/projects/${projectId}/tasks`, { headers: ada.headers })).body,
          (yield* http("GET", `/api/v1/sessions/${task!.sessionId}/events`, { headers: ada.headers })).body,
          (yield* http("GET", `/api/v1/notifications`, { headers: ada.headers })).body,
          frames
        ]
        feed.close()
        const seen = `${output.join("")}\n${JSON.stringify(answers)}`
        for (const token of minted) expect(seen.includes(token)).toBe(false)
      }),
    180_000
  )
  it.effect(
    "a member reaches the repository with their own GitHub access: read-only means a chat whose token cannot push, and no task; no access means nothing",
    () =>
      Effect.gen(function* () {
        const ada = yield* signIn({ id: 2201, login: "ada", name: "Ada" })
        yield* installedBy({ id: 2201, login: "ada" })
        const created = yield* http("POST", "/api/v1/projects", {
          headers: ada.headers,
          body: { name: "gadgets", github: { installationId: acme.id, repository: "acme/gadgets" } }
        })
        expect(created.status, JSON.stringify(created.body)).toBe(201)
        const projectId = created.body.id as string
        const bob = yield* signIn({ id: 2202, login: "bob", name: "Bob" })
        const carol = yield* signIn({ id: 2203, login: "carol", name: "Carol" })
        for (const who of [bob, carol]) {
          const me = yield* http("GET", "/api/v1/me", { headers: who.headers })
          const added = yield* http("POST", `/api/v1/projects/${projectId}/members`, {
            headers: ada.headers,
            body: { userId: me.body.userId }
          })
          expect(added.status, JSON.stringify(added.body)).toBe(201)
        }
        const submit = (who: { headers: Record<string, string> }, prompt: string, mode: "task" | "conversation") =>
          http("POST", `/api/v1/projects/${projectId}/tasks`, { headers: who.headers, body: { prompt, mode } })

        // a task ends in a pushed branch: refused at once to a member GitHub lets only read the repository
        const task = yield* submit(bob, "say hi", "task")
        expect(task.status, JSON.stringify(task.body)).toBe(403)
        expect(task.body.message).toContain("you can read acme/gadgets on GitHub but not push to it")
        // nothing at all to a member GitHub gives nothing
        const none = yield* submit(carol, "say hi", "conversation")
        expect(none.status, JSON.stringify(none.body)).toBe(403)
        expect(none.body.message).toContain("GitHub does not give you this repository")

        // a chat clones with a token that reads; the agent's own push is refused by GitHub
        const before = github.gitRequests.length
        const chat = yield* submit(
          bob,
          "run git -c user.name=b -c user.email=b@x commit -q --allow-empty -m by-bob && git push origin HEAD:refs/heads/bob-was-here 2>&1; echo push-exit=$?",
          "conversation"
        )
        expect(chat.status, JSON.stringify(chat.body)).toBe(201)
        const sql = yield* SqlClient.SqlClient
        const transcript = yield* waitUntil(
          "the push's exit in bob's chat",
          Effect.map(
            sql<{ payload: string }>`
              SELECT e.payload::text AS payload FROM session_events e JOIN tasks t ON t.session_id = e.session_id
              WHERE t.id = ${chat.body.id}`,
            (rows) => {
              const all = rows.map((r) => r.payload).join("\n")
              return /push-exit=\d/.test(all) ? all : undefined
            }
          ),
          { timeout: "90 seconds" }
        )
        expect(transcript).not.toContain("push-exit=0")
        expect(transcript).toContain("Write access to repository not granted")
        const gadgets = github.gitRequests.slice(before).filter((r) => r.repo === "acme/gadgets")
        expect(gadgets.some((r) => r.service === "git-upload-pack" && r.status === 200)).toBe(true)
        expect(gadgets.some((r) => r.service === "git-receive-pack" && r.status === 403)).toBe(true)
        const heads = execFileSync("git", ["--git-dir", join(github.gitRoot, "acme", "gadgets.git"), "for-each-ref"], {
          encoding: "utf8"
        })
        expect(heads).not.toContain("bob-was-here")

        // removed from the project, bob's workspace gets no token any more, however much GitHub lets him
        const [placed] = yield* sql<{ nodeId: string; workspaceId: string }>`
          SELECT node_id, workspace_id FROM tasks WHERE id = ${chat.body.id}`
        const reading = yield* GitHubRepoAccess.gitAccess(app, placed!.nodeId, placed!.workspaceId)
        expect(reading).toMatchObject({ ok: true })
        const bobId = (yield* http("GET", "/api/v1/me", { headers: bob.headers })).body.userId as string
        expect(
          (yield* http("DELETE", `/api/v1/projects/${projectId}/members/${bobId}`, { headers: ada.headers })).status
        ).toBe(200)
        expect(yield* GitHubRepoAccess.gitAccess(app, placed!.nodeId, placed!.workspaceId)).toMatchObject({
          ok: false,
          code: "forbidden",
          error: "the task's submitter is no longer a member of its project"
        })
      })
  )
})
