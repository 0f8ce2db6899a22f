import { execFileSync, spawn } from "node:child_process"
import { createPublicKey, createVerify, randomBytes } from "node:crypto"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface FakeGitHubUser {
  readonly id: number
  readonly login: string
  readonly name: string | null
}

export interface FakeRepository {
  readonly id: number
  readonly name: string
  readonly private: boolean
  readonly defaultBranch: string
}

/** A pull request the fake holds, as GitHub's REST API shows it (the fields SAM reads and a few more). */
export interface FakePullRequest {
  readonly number: number
  readonly title: string
  readonly body: string
  readonly head: string
  readonly base: string
  readonly html_url: string
}

export interface FakeInstallation {
  readonly id: number
  readonly account: { readonly login: string; readonly id: number; readonly type: "User" | "Organization" }
  readonly repositories: FakeRepository[]
  /** lower-case logins that may see it */
  readonly access: Set<string>
  /** lower-case logins among them that may read its repositories but not push to them (GitHub's `pull` role) */
  readonly readOnly?: Set<string>
  failWith?: number
}

const installationJson = (i: FakeInstallation, origin: string) => ({
  id: i.id,
  account: { ...i.account, url: `${origin}/users/${i.account.login}` },
  app_id: 1,
  app_slug: "sam",
  target_id: i.account.id,
  target_type: i.account.type,
  repository_selection: "selected",
  permissions: { contents: "write", metadata: "read", pull_requests: "write" },
  events: [],
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z"
})

/**
 * A repository as GitHub answers it; listed to a user (a user access token), with what that user may do with it, as
 * GitHub's `permissions` object.
 */
const repoJson = (r: FakeRepository, i: FakeInstallation, origin: string, login?: string) => ({
  ...(login === undefined
    ? {}
    : {
        permissions: {
          admin: false,
          maintain: false,
          push: !(i.readOnly?.has(login.toLowerCase()) ?? false),
          triage: false,
          pull: true
        }
      }),
  id: r.id,
  node_id: `R_${r.id}`,
  name: r.name,
  full_name: `${i.account.login}/${r.name}`,
  private: r.private,
  owner: { login: i.account.login, id: i.account.id, type: i.account.type },
  html_url: `${origin}/${i.account.login}/${r.name}`,
  clone_url: `${origin}/${i.account.login}/${r.name}.git`,
  default_branch: r.defaultBranch
})

/**
 * A stand-in for github.com's OAuth endpoints and api.github.com's `GET /user`, `GET /user/orgs` and
 * `GET /user/memberships/orgs/{org}`, with the shapes and errors GitHub documents: the token exchange
 * answers 200 with `{error, error_description}` for a bad code or client secret; the API answers 401
 * `{"message": "Bad credentials"}` for a bad token; a membership is 404 `Not Found` for an
 * organization the user is not in, and the organization endpoints need the `read:org` scope (403
 * without it). Codes are single use, as on GitHub; a token has the scopes its authorization asked for.
 * The GitHub App's side: `GET /user/installations` and `/user/installations/{id}/repositories` as the
 * user (404 for an installation the user cannot see), and `POST /app/installations/{id}/access_tokens`
 * with an app JWT it verifies under the app's public key (401 with GitHub's messages otherwise; 404 for
 * an unknown installation, 422 for a repository outside it). Lists are paged (`per_page`, `page`).
 */
export const startFakeGitHub = async (
  client: { readonly id: string; readonly secret: string },
  /** the GitHub App: its id and public key, to verify the app's JWTs */
  app?: { readonly id: string; readonly publicKey: string },
  /**
   * `userTokenLifetimeSeconds`: user tokens expire (as a GitHub App's do by default, eight hours) and come
   * with a single-use refresh token
   */
  options: { readonly userTokenLifetimeSeconds?: number } = {}
) => {
  /** installation tokens minted: token → what it reaches and until when */
  const installationTokens = new Map<
    string,
    { installationId: number; repositoryIds: number[]; expiresAt: Date; permissions: Record<string, string> }
  >()
  /** GitHub's checks of an app JWT: RS256 under the app's key, `iss` the app id, at most ten minutes long. */
  const appJwtError = (jwt: string | undefined) => {
    const [header, payload, sig] = (jwt ?? "").split(".")
    if (app === undefined || header === undefined || payload === undefined || sig === undefined) {
      return "A JSON web token could not be decoded"
    }
    const verifier = createVerify("RSA-SHA256")
    verifier.update(`${header}.${payload}`)
    if (!verifier.verify(createPublicKey(app.publicKey), Buffer.from(sig, "base64url"))) {
      return "A JSON web token could not be decoded"
    }
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as {
      iat: number
      exp: number
      iss: unknown
    }
    const now = Date.now() / 1000
    if (String(claims.iss) !== app.id) return "'Issuer' claim ('iss') must be an Integer"
    if (claims.exp - claims.iat > 600 || claims.exp > now + 600) {
      return "'Expiration time' claim ('exp') is too far in the future"
    }
    if (claims.exp < now)
      return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
    return undefined
  }
  const codes = new Map<string, { user: FakeGitHubUser; redirectUri: string; scope: string }>()
  const tokens = new Map<string, { user: FakeGitHubUser; scope: string; expiresAt?: number }>()
  const refreshTokens = new Map<string, { user: FakeGitHubUser; scope: string }>()
  /** the refresh grants answered, good or bad */
  const refreshes: Array<{ ok: boolean }> = []
  const issue = (grant: { user: FakeGitHubUser; scope: string }) => {
    const token = `gho_${randomBytes(18).toString("hex")}`
    const lifetime = options.userTokenLifetimeSeconds
    if (lifetime === undefined) {
      tokens.set(token, grant)
      return { access_token: token, token_type: "bearer", scope: grant.scope.replaceAll(" ", ",") }
    }
    tokens.set(token, { ...grant, expiresAt: Date.now() + lifetime * 1000 })
    const refresh = `ghr_${randomBytes(30).toString("hex")}`
    refreshTokens.set(refresh, grant)
    return {
      access_token: token,
      expires_in: lifetime,
      refresh_token: refresh,
      refresh_token_expires_in: 15897600,
      token_type: "bearer",
      scope: ""
    }
  }
  /** lower-case login → lower-case organization → membership state */
  const memberships = new Map<string, Map<string, "active" | "pending">>()
  const notFound = { message: "Not Found", documentation_url: "https://docs.github.com/rest" }
  const exchanges: Array<{ code: string; redirectUri: string }> = []
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json; charset=utf-8" })
    res.end(JSON.stringify(body))
  }
  const readBody = (req: IncomingMessage) =>
    new Promise<string>((resolve) => {
      let text = ""
      req.on("data", (chunk) => {
        text += chunk
      })
      req.on("end", () => resolve(text))
    })
  const installations = new Map<number, FakeInstallation>()
  const paged = <T>(url: URL, items: ReadonlyArray<T>) => {
    const perPage = Math.min(100, Number(url.searchParams.get("per_page") ?? 30))
    const page = Math.max(1, Number(url.searchParams.get("page") ?? 1))
    return items.slice((page - 1) * perPage, page * perPage)
  }
  /** Bare repositories served over git's smart HTTP protocol, `<gitRoot>/<owner>/<name>.git`. */
  const gitRoot = mkdtempSync(join(tmpdir(), "fake-github-git-"))
  const pullRequests = new Map<string, FakePullRequest[]>()
  /** what the git endpoint saw: the credentials it was given (for the test that no other token works) */
  const gitRequests: Array<{ repo: string; service: string; status: number }> = []
  const findRepo = (owner: string, name: string) => {
    for (const installation of installations.values()) {
      if (installation.account.login.toLowerCase() !== owner.toLowerCase()) continue
      const repo = installation.repositories.find((r) => r.name.toLowerCase() === name.toLowerCase())
      if (repo !== undefined) return { installation, repo }
    }
    return undefined
  }
  /** An installation token that is live and reaches the repository. */
  const tokenReaches = (token: string | undefined, repoId: number, permission?: string) => {
    const minted = token === undefined ? undefined : installationTokens.get(token)
    return (
      minted !== undefined &&
      minted.expiresAt.getTime() > Date.now() &&
      minted.repositoryIds.includes(repoId) &&
      (permission === undefined || minted.permissions[permission] !== undefined)
    )
  }
  const basicToken = (req: IncomingMessage) => {
    const basic = /^Basic (\S+)$/.exec(req.headers.authorization ?? "")?.[1]
    if (basic === undefined) return undefined
    const [user, ...password] = Buffer.from(basic, "base64").toString("utf8").split(":")
    return user === "x-access-token" ? password.join(":") : undefined
  }
  /**
   * github.com's git endpoint: `git http-backend` (CGI) over the bare repository. A private repository needs
   * Basic `x-access-token:<installation token>` for everything, a public one for pushes; without it the answer
   * is 401 with a Basic challenge, so git asks its credential helper, as with GitHub. The default branch is
   * protected (a ruleset, as GitHub's branch protection refuses it: `GH006`).
   */
  const serveGit = (req: IncomingMessage, res: ServerResponse, url: URL, owner: string, name: string, rest: string) => {
    const found = findRepo(owner, name)
    const service = url.searchParams.get("service") ?? rest.slice(1)
    if (found === undefined) {
      res.writeHead(404, { "content-type": "text/plain" })
      return res.end("Repository not found.\n")
    }
    const push = service === "git-receive-pack"
    const authorized = tokenReaches(basicToken(req), found.repo.id, "contents")
    // a token that only reads the repository's contents cannot push: GitHub answers 403
    if (push && authorized && installationTokens.get(basicToken(req) ?? "")?.permissions.contents !== "write") {
      gitRequests.push({ repo: `${owner}/${name}`, service, status: 403 })
      res.writeHead(403, { "content-type": "text/plain" })
      return res.end("Write access to repository not granted.\n")
    }
    if (!authorized && (push || found.repo.private)) {
      gitRequests.push({ repo: `${owner}/${name}`, service, status: 401 })
      res.writeHead(401, { "www-authenticate": 'Basic realm="GitHub"', "content-type": "text/plain" })
      return res.end("Invalid username or token.\n")
    }
    gitRequests.push({ repo: `${owner}/${name}`, service, status: 200 })
    const child = spawn("git", ["http-backend"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        GIT_PROJECT_ROOT: gitRoot,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: `/${found.installation.account.login}/${found.repo.name}.git${rest}`,
        REQUEST_METHOD: req.method ?? "GET",
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_USER: "x-access-token",
        REMOTE_ADDR: "127.0.0.1",
        ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
        ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {})
      },
      stdio: ["pipe", "pipe", "pipe"]
    })
    req.pipe(child.stdin)
    let head = Buffer.alloc(0)
    let headerDone = false
    child.stdout.on("data", (chunk: Buffer) => {
      if (headerDone) return void res.write(chunk)
      head = Buffer.concat([head, chunk])
      const end = head.indexOf("\r\n\r\n")
      if (end < 0) return
      headerDone = true
      const headers: Record<string, string> = {}
      let status = 200
      for (const line of head.subarray(0, end).toString("utf8").split("\r\n")) {
        const colon = line.indexOf(":")
        const key = line.slice(0, colon).trim().toLowerCase()
        const value = line.slice(colon + 1).trim()
        if (key === "status") status = Number(value.split(" ")[0])
        else headers[key] = value
      }
      res.writeHead(status, headers)
      res.write(head.subarray(end + 4))
    })
    child.stderr.on("data", () => {})
    child.on("close", () => res.end())
  }
  /** `POST /repos/{owner}/{repo}/pulls` and `GET …/pulls?head=owner:branch` with an installation token. */
  const servePulls = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    owner: string,
    name: string,
    bearer: string | undefined
  ) => {
    const found = findRepo(owner, name)
    if (found === undefined || !tokenReaches(bearer, found.repo.id)) return json(res, 404, notFound)
    // a token without pull requests permission: GitHub's 403 for an integration
    if (!tokenReaches(bearer, found.repo.id, "pull_requests")) {
      return json(res, 403, {
        message: "Resource not accessible by integration",
        documentation_url: "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        status: "403"
      })
    }
    const key = `${found.installation.account.login}/${found.repo.name}`
    const list = pullRequests.get(key) ?? []
    pullRequests.set(key, list)
    const asJson = (pr: FakePullRequest) => ({
      number: pr.number,
      html_url: pr.html_url,
      url: `${url.origin}/repos/${key}/pulls/${pr.number}`,
      state: "open",
      title: pr.title,
      body: pr.body,
      head: { ref: pr.head, label: `${found.installation.account.login}:${pr.head}` },
      base: { ref: pr.base, label: `${found.installation.account.login}:${pr.base}` }
    })
    if (req.method === "GET") {
      const head = url.searchParams.get("head")
      return json(
        res,
        200,
        list.filter((pr) => head === null || `${found.installation.account.login}:${pr.head}` === head).map(asJson)
      )
    }
    const body = JSON.parse((await readBody(req)) || "{}") as {
      title?: string
      head?: string
      base?: string
      body?: string
    }
    const invalid = (field: string) =>
      json(res, 422, {
        message: "Validation Failed",
        errors: [{ resource: "PullRequest", field, code: "invalid" }],
        documentation_url: "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
      })
    const exists = (ref: string) => {
      try {
        execFileSync("git", [
          "--git-dir",
          join(gitRoot, `${key}.git`),
          "rev-parse",
          "--verify",
          "-q",
          `refs/heads/${ref}`
        ])
        return true
      } catch {
        return false
      }
    }
    if (typeof body.title !== "string" || body.title === "") return invalid("title")
    if (typeof body.head !== "string" || !exists(body.head)) return invalid("head")
    if (typeof body.base !== "string" || !exists(body.base)) return invalid("base")
    if (list.some((pr) => pr.head === body.head)) {
      return json(res, 422, {
        message: "Validation Failed",
        errors: [
          {
            resource: "PullRequest",
            code: "custom",
            message: `A pull request already exists for ${found.installation.account.login}:${body.head}.`
          }
        ],
        documentation_url: "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
      })
    }
    const number = list.length + 1
    const pr: FakePullRequest = {
      number,
      title: body.title,
      body: body.body ?? "",
      head: body.head,
      base: body.base,
      html_url: `${url.origin}/${key}/pull/${number}`
    }
    list.push(pr)
    return json(res, 201, asJson(pr))
  }
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "github.test"}`)
    if (req.method === "POST" && url.pathname === "/login/oauth/access_token") {
      const text = await readBody(req)
      const body = (req.headers["content-type"] ?? "").includes("json")
        ? (JSON.parse(text) as Record<string, string>)
        : Object.fromEntries(new URLSearchParams(text))
      if (body.client_id !== client.id || body.client_secret !== client.secret) {
        return json(res, 200, {
          error: "incorrect_client_credentials",
          error_description: "The client_id and/or client_secret passed are incorrect.",
          error_uri:
            "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials"
        })
      }
      if (body.grant_type === "refresh_token") {
        const refreshed = refreshTokens.get(body.refresh_token ?? "")
        refreshTokens.delete(body.refresh_token ?? "")
        refreshes.push({ ok: refreshed !== undefined })
        if (refreshed === undefined) {
          return json(res, 200, {
            error: "bad_refresh_token",
            error_description: "The refresh token passed is incorrect or expired.",
            error_uri:
              "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-refresh-token"
          })
        }
        return json(res, 200, issue(refreshed))
      }
      const grant = codes.get(body.code ?? "")
      codes.delete(body.code ?? "")
      if (grant === undefined || (body.redirect_uri !== undefined && body.redirect_uri !== grant.redirectUri)) {
        return json(res, 200, {
          error: "bad_verification_code",
          error_description: "The code passed is incorrect or expired.",
          error_uri:
            "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"
        })
      }
      exchanges.push({ code: body.code ?? "", redirectUri: body.redirect_uri ?? "" })
      return json(res, 200, issue({ user: grant.user, scope: grant.scope }))
    }
    const bearer = /^(?:Bearer|token) (\S+)$/.exec(req.headers.authorization ?? "")?.[1]
    const mint = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(url.pathname)
    if (req.method === "POST" && mint !== null) {
      const jwtError = appJwtError(bearer)
      if (jwtError !== undefined) {
        return json(res, 401, { message: jwtError, documentation_url: "https://docs.github.com/rest" })
      }
      const installation = installations.get(Number(mint[1]))
      if (installation === undefined) return json(res, 404, notFound)
      const body = JSON.parse((await readBody(req)) || "{}") as {
        repository_ids?: number[]
        permissions?: Record<string, string>
      }
      const ids = body.repository_ids ?? installation.repositories.map((r) => r.id)
      const reached = ids.map((id) => installation.repositories.find((r) => r.id === id))
      if (reached.some((r) => r === undefined)) {
        return json(res, 422, {
          message:
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
          documentation_url: "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
        })
      }
      const token = `ghs_${randomBytes(18).toString("hex")}`
      const expiresAt = new Date(Date.now() + 3600_000)
      // GitHub grants what was asked for, within the installation's own permissions
      const granted = body.permissions ?? { contents: "write", metadata: "read", pull_requests: "write" }
      installationTokens.set(token, {
        installationId: installation.id,
        repositoryIds: ids,
        expiresAt,
        permissions: granted
      })
      return json(res, 201, {
        token,
        expires_at: expiresAt.toISOString().replace(/\.\d{3}Z$/, "Z"),
        permissions: granted,
        repository_selection: "selected",
        repositories: reached.map((r) => repoJson(r as FakeRepository, installation, url.origin))
      })
    }
    const gitPath = /^\/([^/]+)\/([^/]+?)\.git(\/.*)$/.exec(url.pathname)
    if (gitPath !== null) return serveGit(req, res, url, gitPath[1] ?? "", gitPath[2] ?? "", gitPath[3] ?? "")
    const pulls = /^\/repos\/([^/]+)\/([^/]+)\/pulls$/.exec(url.pathname)
    if (pulls !== null) return servePulls(req, res, url, pulls[1] ?? "", pulls[2] ?? "", bearer)
    const held = bearer === undefined ? undefined : tokens.get(bearer)
    // an expired user token is refused as GitHub refuses it
    const grant = held?.expiresAt !== undefined && held.expiresAt <= Date.now() ? undefined : held
    const needsToken = req.method === "GET" && (url.pathname === "/user" || url.pathname.startsWith("/user/"))
    if (needsToken && grant === undefined) {
      return json(res, 401, { message: "Bad credentials", documentation_url: "https://docs.github.com/rest" })
    }
    if (grant === undefined) return json(res, 404, notFound)
    const orgsOf = memberships.get(grant.user.login.toLowerCase()) ?? new Map<string, "active" | "pending">()
    const orgJson = (org: string) => ({
      login: org,
      id: org.length * 1000 + 7,
      url: `${url.origin}/orgs/${org}`,
      description: null
    })
    if (url.pathname === "/user") return json(res, 200, { ...grant.user, type: "User", site_admin: false, email: null })
    if (url.pathname.startsWith("/user/orgs") || url.pathname.startsWith("/user/memberships/orgs")) {
      if (!grant.scope.split(/[ ,]/).includes("read:org")) {
        return json(res, 403, {
          message: "You need at least read:org scope or user scope to list your organization memberships.",
          documentation_url: "https://docs.github.com/rest/orgs/members"
        })
      }
    }
    if (url.pathname === "/user/orgs") {
      return json(
        res,
        200,
        paged(
          url,
          [...orgsOf].filter(([, state]) => state === "active").map(([org]) => orgJson(org))
        )
      )
    }
    if (url.pathname === "/user/installations") {
      const mine = [...installations.values()].filter((i) => i.access.has(grant.user.login.toLowerCase()))
      const page = paged(url, mine)
      return json(res, 200, {
        total_count: mine.length,
        installations: page.map((i) => installationJson(i, url.origin))
      })
    }
    const repos = /^\/user\/installations\/(\d+)\/repositories$/.exec(url.pathname)
    if (repos !== null) {
      const installation = installations.get(Number(repos[1]))
      if (installation?.failWith !== undefined) {
        return json(res, installation.failWith, {
          message: installation.failWith === 403 ? "Resource not accessible by integration" : "Server Error",
          documentation_url: "https://docs.github.com/rest/apps/installations"
        })
      }
      if (installation === undefined || !installation.access.has(grant.user.login.toLowerCase())) {
        return json(res, 404, notFound)
      }
      return json(res, 200, {
        total_count: installation.repositories.length,
        repository_selection: "selected",
        repositories: paged(url, installation.repositories).map((r) =>
          repoJson(r, installation, url.origin, grant.user.login)
        )
      })
    }
    const membership = /^\/user\/memberships\/orgs\/([^/]+)$/.exec(url.pathname)
    if (membership !== null) {
      const org = decodeURIComponent(membership[1] ?? "").toLowerCase()
      const state = orgsOf.get(org)
      if (state === undefined) return json(res, 404, notFound)
      return json(res, 200, {
        url: `${url.origin}/orgs/${org}/memberships/${grant.user.login}`,
        state,
        role: "member",
        organization_url: `${url.origin}/orgs/${org}`,
        organization: orgJson(org),
        user: { login: grant.user.login, id: grant.user.id }
      })
    }
    json(res, 404, notFound)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  const url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
  return {
    url,
    exchanges,
    /**
     * What github.com does when the user clicks "Authorize": a one-time code for the redirect, whose
     * token carries the scopes asked for (`scope` of the authorize URL).
     */
    authorize: (user: FakeGitHubUser, redirectUri: string, scope = "read:user") => {
      const code = randomBytes(10).toString("hex")
      codes.set(code, { user, redirectUri, scope })
      return code
    },
    /** Make `login` a member of `org` (an invitation not yet accepted is `pending`). */
    setMembership: (login: string, org: string, state: "active" | "pending") => {
      const orgs = memberships.get(login.toLowerCase()) ?? new Map<string, "active" | "pending">()
      orgs.set(org.toLowerCase(), state)
      memberships.set(login.toLowerCase(), orgs)
    },
    /**
     * The app installed on an account: `access` lists the logins GitHub would show it to (with
     * `GET /user/installations` and its repositories), `failWith` makes its repositories answer that
     * status instead (403 as for an integration without access, 500 for an outage).
     */
    install: (installation: FakeInstallation) => {
      installations.set(installation.id, installation)
      return installation
    },
    installations,
    installationTokens,
    refreshes,
    refreshTokens,
    /** End every user token of `login` now (their refresh tokens stay good). */
    expireUserTokens: (login: string) => {
      for (const grant of tokens.values()) {
        if (grant.user.login.toLowerCase() === login.toLowerCase()) grant.expiresAt = Date.now() - 1
      }
    },
    pullRequests,
    gitRequests,
    /** where the bare repositories are: `<gitRoot>/<owner>/<name>.git` */
    gitRoot,
    /**
     * A bare repository for one of an installation's repositories, with one commit (`files`) on its default
     * branch, which is protected: a push to it is refused as GitHub's branch protection refuses it.
     */
    createRepository: (installation: FakeInstallation, repo: FakeRepository, files: Record<string, string>) => {
      const bare = join(gitRoot, installation.account.login, `${repo.name}.git`)
      mkdirSync(bare, { recursive: true })
      const git = (cwd: string, ...args: string[]) =>
        execFileSync("git", ["-c", "user.name=Fake", "-c", "user.email=fake@github.test", ...args], {
          cwd,
          stdio: "pipe"
        })
      git(bare, "init", "-q", "--bare", `--initial-branch=${repo.defaultBranch}`)
      git(bare, "config", "http.receivepack", "true")
      const work = mkdtempSync(join(tmpdir(), "fake-github-seed-"))
      git(work, "init", "-q", `--initial-branch=${repo.defaultBranch}`)
      for (const [path, content] of Object.entries(files)) writeFileSync(join(work, path), content)
      git(work, "add", "-A")
      git(work, "commit", "-q", "-m", "initial")
      git(work, "push", "-q", bare, `HEAD:refs/heads/${repo.defaultBranch}`)
      rmSync(work, { recursive: true, force: true })
      writeFileSync(
        join(bare, "hooks", "pre-receive"),
        `#!/bin/sh\nwhile read old new ref; do\n  if [ "$ref" = "refs/heads/${repo.defaultBranch}" ]; then\n` +
          `    echo "error: GH006: Protected branch update failed for $ref." >&2\n    exit 1\n  fi\ndone\n`,
        { mode: 0o755 }
      )
      return bare
    },
    close: () =>
      new Promise<void>((resolve) => server.close(() => resolve())).then(() =>
        rmSync(gitRoot, { recursive: true, force: true })
      )
  }
}
