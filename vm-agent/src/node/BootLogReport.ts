import { readFile } from "node:fs/promises"
import { Api, Nats } from "@sam/bus"
import { Duration, Effect } from "effect"
import { readBootLog } from "./Bootstrap.js"

/** How long after it starts the vm-agent keeps sending what its boot log file gains, and how often it looks. */
export const REPORT_FOR = Duration.minutes(10)
export const LOOK_EVERY = Duration.seconds(5)

/**
 * After its exchange a node's bootstrap token is spent, yet the boot log file may still gain lines (the boot
 * script's last step under systemd, written once the service is started). Connected, the vm-agent sends them
 * on its own subject (`sam.agent.<nodeId>.bootlog`), 50 numbered lines at a time; a line stored already is
 * not stored again, so starting from the first line costs one request. It looks every 5 s for 10 minutes.
 */
export const run = Effect.fn("VmAgent.reportBootLog")(function* (
  nodeId: string,
  file: string | undefined,
  options: { readonly for?: Duration.DurationInput; readonly every?: Duration.DurationInput } = {}
) {
  if (file === undefined) return
  const { nc } = yield* Nats
  const until = Date.now() + Duration.toMillis(options.for ?? REPORT_FOR)
  let sent = 0
  while (Date.now() < until) {
    const text = yield* Effect.promise(() => readFile(file, "utf8").catch(() => ""))
    const fresh = readBootLog(text).filter((e) => (e.seq ?? 0) > sent)
    if (fresh.length > 0) {
      const entries = fresh.slice(0, 50)
      const reply = yield* Effect.tryPromise(async () => {
        const msg = await nc.request(Api.bootLogSubject(nodeId), JSON.stringify({ entries }), { timeout: 5000 })
        return Api.NodeBootLogReply.safeParse(JSON.parse(msg.string()))
      }).pipe(Effect.orElseSucceed(() => undefined))
      if (reply?.success && reply.data.ok) {
        sent = Math.max(...entries.map((e) => e.seq ?? 0))
        if (fresh.length > entries.length) continue
      } else if (reply?.success && !reply.data.ok) {
        yield* Effect.logWarning(`the boot log report was refused: ${reply.data.error}`)
        return
      }
    }
    yield* Effect.sleep(options.every ?? LOOK_EVERY)
  }
})
