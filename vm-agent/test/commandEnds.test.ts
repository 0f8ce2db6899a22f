import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { makeCommandEnds } from "../src/node/CommandEnds.js"

const dirs: Array<string> = []
afterAll(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))))
const file = async () => {
  const dir = await mkdtemp(join(tmpdir(), "sam-ends-"))
  dirs.push(dir)
  return join(dir, "node", "command-ends.json")
}

describe("the ends of workspaces and sessions a node keeps across restarts", () => {
  it("a command published before its key's last end is stale, also for the vm-agent that starts again", async () => {
    const path = await file()
    const ends = await Effect.runPromise(makeCommandEnds(path))
    expect(ends.staleBefore("ws:a", "workspace.create", 100)).toBeUndefined()
    await Effect.runPromise(ends.ended("ws:a", "stop", 200))
    expect(ends.staleBefore("ws:a", "workspace.create", 150)).toBe(200)
    // the end itself delivered again, and what comes after it, run
    expect(ends.staleBefore("ws:a", "workspace.stop", 200)).toBeUndefined()
    expect(ends.staleBefore("ws:a", "workspace.create", 250)).toBeUndefined()
    expect(ends.staleBefore("ws:b", "workspace.create", 150)).toBeUndefined()
    // an older end never moves it back
    await Effect.runPromise(ends.ended("ws:a", "stop", 120))
    const again = await Effect.runPromise(makeCommandEnds(path))
    expect(again.staleBefore("ws:a", "workspace.create", 150)).toBe(200)
  })

  it("a delete runs after a later stop (a stop does not do what it does), not after a later delete", async () => {
    const ends = await Effect.runPromise(makeCommandEnds(await file()))
    await Effect.runPromise(ends.ended("ws:c", "stop", 300))
    expect(ends.staleBefore("ws:c", "workspace.delete", 250)).toBeUndefined()
    expect(ends.staleBefore("ws:c", "workspace.stop", 250)).toBe(300)
    await Effect.runPromise(ends.ended("ws:c", "delete", 400))
    expect(ends.staleBefore("ws:c", "workspace.delete", 350)).toBe(400)
    expect(ends.staleBefore("ws:c", "workspace.create", 350)).toBe(400)
  })

  it("reads the first version's file, which kept a stop's time alone", async () => {
    const path = await file()
    await Effect.runPromise(makeCommandEnds(path).pipe(Effect.flatMap((ends) => ends.ended("ws:old", "stop", 1))))
    await writeFile(path, JSON.stringify({ "ws:old": 500 }))
    const ends = await Effect.runPromise(makeCommandEnds(path))
    expect(ends.staleBefore("ws:old", "workspace.create", 400)).toBe(500)
    expect(ends.staleBefore("ws:old", "workspace.delete", 400)).toBeUndefined()
  })

  it("an unreadable file is said and ignored: nothing is refused for it", async () => {
    const path = await file()
    await Effect.runPromise(makeCommandEnds(path).pipe(Effect.flatMap((ends) => ends.ended("sess:x", "stop", 5))))
    await writeFile(path, "{not json")
    const ends = await Effect.runPromise(makeCommandEnds(path))
    expect(ends.staleBefore("sess:x", "session.start", 1)).toBeUndefined()
  })

  it("keeps a day of them, and at most as many as it is told", async () => {
    const day = 86_400_000
    const ends = await Effect.runPromise(makeCommandEnds(await file(), { kept: 50 }))
    for (let i = 1; i <= 51; i++) await Effect.runPromise(ends.ended(`sess:${i}`, "stop", i * 10))
    expect(ends.staleBefore("sess:1", "session.start", 5)).toBeUndefined()
    expect(ends.staleBefore("sess:2", "session.start", 5)).toBe(20)
    await Effect.runPromise(ends.ended("sess:new", "stop", 30 + day))
    expect(ends.staleBefore("sess:2", "session.start", 5)).toBeUndefined()
    expect(ends.staleBefore("sess:3", "session.start", 5)).toBe(30)
  })
})
