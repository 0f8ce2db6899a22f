/**
 * Preloaded into the processes a benchmark starts (`NODE_OPTIONS=--import …`, set by `childProfiled` in
 * BenchReport.ts when `SAM_BENCH_CHILD_PROFILES=<dir>`): while `<dir>/.on` exists, V8's CPU profiler runs; when the
 * file goes, the profile is written to `<dir>/<script>-<pid>.cpuprofile`. A process that exits while profiling
 * writes nothing. Plain JavaScript: it is loaded before tsx.
 */
import { existsSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { basename, join } from "node:path"

const dir = process.env.SAM_BENCH_CHILD_PROFILES
if (dir !== undefined && dir !== "") {
  const flag = join(dir, ".on")
  const name = basename(process.argv[1] ?? "node")
  let session
  const poll = setInterval(() => {
    const on = existsSync(flag)
    if (on && session === undefined) {
      session = new Session()
      session.connect()
      session.post("Profiler.enable")
      session.post("Profiler.start")
    } else if (!on && session !== undefined) {
      const ending = session
      session = undefined
      ending.post("Profiler.stop", (error, result) => {
        if (error === null)
          writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(result.profile))
        ending.disconnect()
      })
    }
  }, 100)
  poll.unref()
}
