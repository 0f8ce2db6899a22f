import type { Readable } from "node:stream"
import { MAX_WARM_START_BYTES, WARM_START_ENV, WarmStart } from "../runtime/internal/warmStart.js"
import { rehearse } from "./Rehearsal.js"

/** The longest a rehearsal may take before the start line is read anyway. */
const REHEARSAL_MS = 5_000

/** The first line of `stream`, what follows it put back; undefined at its end before a line. */
const firstLine = (stream: Readable) =>
  new Promise<string | undefined>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const done = (line: string | undefined, error?: Error) => {
      stream.off("data", onData)
      stream.off("end", onEnd)
      stream.off("error", onError)
      stream.pause()
      if (error !== undefined) reject(error)
      else resolve(line)
    }
    const onData = (chunk: Buffer) => {
      const newline = chunk.indexOf(10)
      if (newline === -1) {
        chunks.push(chunk)
        size += chunk.length
        if (size > MAX_WARM_START_BYTES) done(undefined, new Error("warm start line too long"))
        return
      }
      chunks.push(chunk.subarray(0, newline))
      const rest = chunk.subarray(newline + 1)
      done(Buffer.concat(chunks).toString("utf8"))
      if (rest.length > 0) stream.unshift(rest)
    }
    const onEnd = () => done(undefined)
    const onError = (error: Error) => done(undefined, error)
    stream.on("data", onData)
    stream.once("end", onEnd)
    stream.once("error", onError)
  })

/**
 * Started warm (ADR 0055, `SAM_WARM_START=1`): waits for the line that says where the agent runs and with what
 * environment, and takes them on, before anything reads them. Started otherwise, returns at once. Its stdin's end
 * before the line (the vm-agent that started it is gone) ends the process.
 */
export const takeWarmStart = async (stdin: Readable = process.stdin) => {
  if (process.env[WARM_START_ENV] !== "1") return
  // what arrives on stdin meanwhile waits in its buffer; a rehearsal that never ended would keep it from being read
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    rehearse().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, REHEARSAL_MS)
    })
  ])
  clearTimeout(timer)
  const line = await firstLine(stdin)
  if (line === undefined) process.exit(0)
  const start = WarmStart.parse(JSON.parse(line))
  process.chdir(start.cwd)
  for (const name of Object.keys(process.env)) delete process.env[name]
  Object.assign(process.env, start.env)
}
