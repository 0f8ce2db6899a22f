// Runs a CommonJS bundle of dist/ with V8's code cache: `node infra/run-cached.cjs dist/client.cjs ARGS…`
// behaves as `node dist/client.cjs ARGS…`, but compiles nothing V8 compiled for an earlier run of the same
// bundle (issue 12: `sam task list`). Node 22 does this itself (module.enableCompileCache); Node 20 does not.
//
// The cache, `<bundle>.v8cache`, starts with a SHA-256 of the bundle's text and of this Node's version: V8
// checks only the text's length, so a rebuilt bundle of the same length must not reuse an older cache. It is
// written when a run found none it could use, when that run exits, so it holds the functions the run compiled.
// A run that cannot write it (a read-only checkout) runs as well, only without it. Plain JavaScript: it is run
// as it is, not bundled.
"use strict"
const { createHash } = require("node:crypto")
const { readFileSync, renameSync, rmSync, writeFileSync } = require("node:fs")
const Module = require("node:module")
const { dirname, resolve } = require("node:path")
const { Script } = require("node:vm")

if (!process.argv[2]) {
  process.stderr.write("usage: node infra/run-cached.cjs BUNDLE.cjs [ARGS…]\n")
  process.exit(2)
}
const file = resolve(process.argv[2])
const cacheFile = `${file}.v8cache`
const source = readFileSync(file, "utf8")
const key = createHash("sha256").update(process.version).update(source).digest()

let cachedData
try {
  const data = readFileSync(cacheFile)
  if (data.subarray(0, key.length).equals(key)) cachedData = data.subarray(key.length)
} catch {
  // no cache yet
}
const script = new Script(Module.wrap(source), { filename: file, cachedData })
if (cachedData === undefined || script.cachedDataRejected) {
  process.once("exit", () => {
    const partial = `${cacheFile}.${process.pid}`
    try {
      writeFileSync(partial, Buffer.concat([key, script.createCachedData()]))
      renameSync(partial, cacheFile)
    } catch {
      rmSync(partial, { force: true })
    }
  })
}

// The bundle sees the command line it would see when run by node itself.
process.argv.splice(1, 1)
const bundle = new Module(file, module)
bundle.filename = file
script.runInThisContext()(bundle.exports, Module.createRequire(file), bundle, file, dirname(file))
