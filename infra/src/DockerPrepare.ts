import { Effect } from "effect"
import * as DockerEngine from "./DockerEngine.js"
import * as WorkspaceImage from "./WorkspaceImage.js"

/**
 * Run by `sam test` before the tests: dockerd installed and the workspace rootfs cached, so each test
 * file can start its own engine and import the image in seconds. Exits 0 when all is ready, 2 (with the
 * reason) when no engine can be had here: the Docker tests then report themselves skipped.
 */
const program = Effect.gen(function* () {
  yield* DockerEngine.ensureInstalled()
  const tarball = yield* WorkspaceImage.ensureRootfs()
  process.stdout.write(`  ✓ docker engine available; workspace rootfs cached at ${tarball}\n`)
})

Effect.runPromiseExit(program).then((exit) => {
  if (exit._tag === "Success") process.exit(0)
  const reason = exit.cause._tag === "Fail" ? exit.cause.error.message : String(exit.cause)
  process.stdout.write(`  ✗ no Docker engine for the tests (they will be skipped): ${reason}\n`)
  process.exit(2)
})
