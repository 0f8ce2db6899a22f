import { randomBytes } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"

export interface FakeGitHubUser {
  readonly id: number
  readonly login: string
  readonly name: string | null
}

/**
 * A stand-in for github.com's OAuth endpoints and api.github.com's `GET /user`, with the shapes and
 * errors GitHub documents: the token exchange answers 200 with `{error, error_description}` for a
 * bad code or client secret; `/user` answers 401 `{"message": "Bad credentials"}` for a bad token.
 * Codes are single use, as on GitHub.
 */
export const startFakeGitHub = async (client: { readonly id: string; readonly secret: string }) => {
  const codes = new Map<string, { user: FakeGitHubUser; redirectUri: string }>()
  const tokens = new Map<string, FakeGitHubUser>()
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
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://github.test")
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
      const token = `gho_${randomBytes(18).toString("hex")}`
      tokens.set(token, grant.user)
      return json(res, 200, { access_token: token, token_type: "bearer", scope: "read:user" })
    }
    if (req.method === "GET" && url.pathname === "/user") {
      const token = /^(?:Bearer|token) (\S+)$/.exec(req.headers.authorization ?? "")?.[1]
      const user = token === undefined ? undefined : tokens.get(token)
      if (user === undefined) {
        return json(res, 401, { message: "Bad credentials", documentation_url: "https://docs.github.com/rest" })
      }
      return json(res, 200, { ...user, type: "User", site_admin: false, email: null })
    }
    json(res, 404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  const url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
  return {
    url,
    exchanges,
    /** What github.com does when the user clicks "Authorize": a one-time code for the redirect. */
    authorize: (user: FakeGitHubUser, redirectUri: string) => {
      const code = randomBytes(10).toString("hex")
      codes.set(code, { user, redirectUri })
      return code
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
