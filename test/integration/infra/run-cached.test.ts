import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { readFile, stat, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"
import { tempDir } from "../../src/TestStack.js"

// infra/run-cached.cjs: how `./sam` runs the CLI's client commands (dist/client.cjs) with V8's code cache.
const loader = resolve(import.meta.dirname, "../../../infra/run-cached.cjs")
const run = (bundle: string, ...args: Array<string>) =>
  promisify(execFile)(process.execPath, [loader, bundle, ...args], { timeout: 30_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error
  )
const keyOf = (source: string) => createHash("sha256").update(process.version).update(source).digest()

/** A CommonJS bundle that says what it was given, and `word` (long enough for V8 to cache a function). */
const bundleText = (word: string) => `"use strict"
function say(w) { return [w, ...process.argv.slice(1).map((a) => a.replace(__dirname, "DIR"))].join(" ") }
const path = require("node:path")
module.exports = { name: path.basename(__filename) }
console.log(say(${JSON.stringify(word)}), module.exports.name)
if (process.argv[2] === "fail") process.exit(3)
if (process.argv[2] === "throw") throw new Error("the bundle threw")
`

describe("run-cached: a CommonJS bundle with V8's code cache", () => {
  it("runs the bundle as node would; its first run writes the cache and the next runs use it", async () => {
    const dir = await tempDir("sam-run-cached-")
    const bundle = join(dir, "b.cjs")
    await writeFile(bundle, bundleText("one"))
    expect(await run(bundle, "a", "b c")).toMatchObject({ code: 0, stdout: "one DIR/b.cjs a b c b.cjs\n" })

    const cache = await readFile(`${bundle}.v8cache`)
    expect(cache.subarray(0, 32).equals(keyOf(await readFile(bundle, "utf8")))).toBe(true)
    expect(cache.length).toBeGreaterThan(32)
    const written = await stat(`${bundle}.v8cache`)
    // A run that could use the cache leaves it as it was (one that could not writes a new one).
    expect(await run(bundle, "again")).toMatchObject({ code: 0, stdout: "one DIR/b.cjs again b.cjs\n" })
    expect((await stat(`${bundle}.v8cache`)).mtimeMs).toBe(written.mtimeMs)
  })

  it("never runs an older build's code: a rebuilt bundle of the same length gets a cache of its own", async () => {
    const dir = await tempDir("sam-run-cached-")
    const bundle = join(dir, "b.cjs")
    await writeFile(bundle, bundleText("one"))
    expect((await run(bundle)).stdout).toBe("one DIR/b.cjs b.cjs\n")
    // V8 itself checks only the source's length: "two" is as long as "one".
    await writeFile(bundle, bundleText("two"))
    expect((await run(bundle)).stdout).toBe("two DIR/b.cjs b.cjs\n")
    const cache = await readFile(`${bundle}.v8cache`)
    expect(cache.subarray(0, 32).equals(keyOf(bundleText("two")))).toBe(true)
    expect((await run(bundle)).stdout).toBe("two DIR/b.cjs b.cjs\n")
  })

  it("keeps the bundle's exit code and errors, and ignores a damaged cache", async () => {
    const dir = await tempDir("sam-run-cached-")
    const bundle = join(dir, "b.cjs")
    await writeFile(bundle, bundleText("one"))
    expect(await run(bundle, "fail")).toMatchObject({ code: 3, stdout: "one DIR/b.cjs fail b.cjs\n" })
    const thrown = await run(bundle, "throw")
    expect(thrown.code).toBe(1)
    expect(thrown.stderr).toContain("the bundle threw")

    // the right key, then garbage: V8 refuses the data, the run goes on and writes a good cache
    await writeFile(`${bundle}.v8cache`, Buffer.concat([keyOf(bundleText("one")), Buffer.from("not a code cache")]))
    expect(await run(bundle, "x")).toMatchObject({ code: 0, stdout: "one DIR/b.cjs x b.cjs\n" })
    expect((await stat(`${bundle}.v8cache`)).size).toBeGreaterThan(32 + 16)

    expect(await run("")).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("usage: node infra/run-cached.cjs")
    })
  })
})
