import { appendFileSync, readFileSync } from "node:fs"
import { readFile, rm } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"

/**
 * What `sam up` starts that would outlive it if it were killed outright (SIGKILL, the kernel's OOM killer): its
 * servers and its local nodes' vm-agents. Each is recorded in `<dataDir>/sam-up.pids` as it starts (its pid, its
 * start time, the signal that stops it cleanly, what it is); the next `sam up` on the directory, once it holds the
 * lock (so the `sam up` that started them is gone), stops those still running before it starts its own: without
 * that, the old nats-server held the port and the new one could not start. A pid is only signalled while its
 * start time is the recorded one, so a pid the system gave to another process since is left alone.
 */
let file: string | undefined

export const pidsFile = (dataDir: string) => join(dataDir, "sam-up.pids")

/** From now on this process records what it starts in `dataDir` (`sam up` only; tests record nothing). */
export const recordIn = (dataDir: string) => {
  file = pidsFile(dataDir)
}

/**
 * The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may hold spaces): `[0]` the
 * state, `[19]` the start time (clock ticks after boot, field 22).
 */
const fieldsOf = (stat: string) => stat.slice(stat.lastIndexOf(")") + 2).split(" ")

/** Record a process just started; nothing when this process records nothing. */
export const track = (pid: number | undefined, what: string, signal: NodeJS.Signals = "SIGTERM") => {
  if (file === undefined || pid === undefined) return
  let started: string | undefined
  try {
    started = fieldsOf(readFileSync(`/proc/${pid}/stat`, "utf8"))[19]
  } catch {
    return
  }
  if (started === undefined) return
  // one line per process: `<pid> <start time> <signal> <what>`
  appendFileSync(file, `${pid} ${started} ${signal} ${what.replace(/\s+/g, " ")}\n`, { mode: 0o600 })
}

interface Entry {
  readonly pid: number
  readonly started: string
  readonly signal: NodeJS.Signals
  readonly what: string
}

const parse = (text: string): Array<Entry> =>
  text.split("\n").flatMap((line) => {
    const match = /^(\d+) (\d+) (SIG[A-Z]+) (.+)$/.exec(line)
    return match === null
      ? []
      : [{ pid: Number(match[1]), started: match[2]!, signal: match[3] as NodeJS.Signals, what: match[4]! }]
  })

/** Whether the recorded process still runs: the same start time, and not a zombie waiting to be reaped. */
const stillOurs = async (entry: Entry) => {
  const stat = await readFile(`/proc/${entry.pid}/stat`, "utf8").catch(() => undefined)
  const fields = stat === undefined ? [] : fieldsOf(stat)
  return fields[19] === entry.started && fields[0] !== "Z"
}

/**
 * Stop what a `sam up` on `dataDir` that did not stop (killed) left running: its clean signal first, SIGKILL to
 * what is still there after `graceMs`. Says what it stopped (nothing when the last `sam up` stopped as it should).
 */
export const stopLeftovers = (dataDir: string, graceMs = 10_000) =>
  Effect.promise(async () => {
    const recorded = parse(await readFile(pidsFile(dataDir), "utf8").catch(() => ""))
    const alive: Array<Entry> = []
    for (const entry of recorded) if (await stillOurs(entry)) alive.push(entry)
    for (const entry of alive) {
      try {
        process.kill(entry.pid, entry.signal)
      } catch {}
    }
    const deadline = Date.now() + graceMs
    let left = alive
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const next: Array<Entry> = []
      for (const entry of left) if (await stillOurs(entry)) next.push(entry)
      left = next
    }
    for (const entry of left) {
      try {
        process.kill(entry.pid, "SIGKILL")
      } catch {}
    }
    await rm(pidsFile(dataDir), { force: true })
    return alive.map((entry) => ({ pid: entry.pid, what: entry.what, killed: left.includes(entry) }))
  })
