import * as Api from "@sam/bus/api"
import { Effect } from "effect"
import { out, usage } from "./ApiCli.js"
import * as LocalClient from "./LocalClient.js"
import { StackError } from "./StackError.js"
import { CLOUD_USAGE_LINES as USAGE_LINES } from "./Usage.js"

export { USAGE_LINES }

const readStdin = Effect.tryPromise({
  try: async () => {
    const chunks: Array<Buffer> = []
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks).toString("utf8").trim()
  },
  catch: (cause) => new StackError({ step: "cloud", message: `cannot read the token from stdin: ${cause}`, cause })
})

const describe = (s: Api.CloudCredentialStatus) =>
  s.configured ? `hetzner: token set (checked with Hetzner ${s.validatedAt})\n` : "hetzner: no token set\n"

/** `sam cloud hetzner set-token|status|remove` (ADR 0026). The token goes to the gateway only, over stdin. */
export const cloud = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const [provider, verb] = args
    if (provider !== "hetzner" || !["set-token", "status", "remove"].includes(verb ?? ""))
      return yield* usage("cloud", "sam cloud hetzner set-token|status|remove")
    const api = yield* LocalClient.api()
    const E = Api.CloudEndpoints
    if (verb === "status") {
      const { credentials } = yield* api.call(E.listCloudCredentials)
      return yield* out(credentials.map(describe).join(""))
    }
    if (verb === "remove") return yield* out(describe(yield* api.call(E.deleteHetznerToken)))
    if (process.stdin.isTTY) yield* out("Paste your Hetzner Cloud API token (Read & Write), then Ctrl-D:\n")
    const token = yield* readStdin
    return yield* out(describe(yield* api.call(E.setHetznerToken, { body: { token } })))
  })
