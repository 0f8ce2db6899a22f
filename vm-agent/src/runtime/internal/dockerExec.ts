import { randomBytes } from "node:crypto"
import { PassThrough, type Writable } from "node:stream"
import type Docker from "dockerode"
import { Effect } from "effect"
import { RuntimeFailure, type WorkspaceProcess } from "../WorkspaceRuntime.js"

const dockerFailure = (what: string) => (cause: unknown) =>
  new RuntimeFailure({ reason: "docker", message: `${what}: ${cause instanceof Error ? cause.message : cause}`, cause })

/**
 * `docker exec` with stdin attached. The process is a session and group leader inside the container;
 * a small shell wrapper records its pid so that `kill` can signal the whole group with another exec.
 */
export const startExec = (
  docker: Docker,
  container: Docker.Container,
  argv: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Readonly<Record<string, string>> | undefined }
) =>
  Effect.gen(function* () {
    const pidFile = `/tmp/.sam-exec-${randomBytes(8).toString("hex")}.pid`
    const exec = yield* Effect.tryPromise({
      try: () =>
        container.exec({
          Cmd: ["/bin/sh", "-c", 'echo $$ > "$0"; exec "$@"', pidFile, ...argv],
          Env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
          WorkingDir: options.cwd,
          AttachStdin: true,
          AttachStdout: true,
          AttachStderr: true,
          Tty: false
        }),
      catch: dockerFailure("docker exec")
    })
    const stream = yield* Effect.tryPromise({
      try: () => exec.start({ hijack: true, stdin: true }),
      catch: dockerFailure("docker exec start")
    })
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    docker.modem.demuxStream(stream, stdout, stderr)
    let ended = false
    const finished = new Promise<void>((done) => {
      const end = () => {
        if (ended) return
        ended = true
        stdout.end()
        stderr.end()
        done()
      }
      stream.once("end", end)
      stream.once("close", end)
      stream.once("error", end)
    })
    const exit = finished.then(async () => {
      for (let i = 0; i < 100; i++) {
        const info = await exec.inspect().catch(() => undefined)
        if (info === undefined) return 255
        if (!info.Running) return info.ExitCode ?? 255
        await new Promise((r) => setTimeout(r, 20))
      }
      return 255
    })
    stream.on("error", () => {})
    const signalGroup = (signal: NodeJS.Signals) =>
      Effect.tryPromise({
        try: async () => {
          const killer = await container.exec({
            Cmd: [
              "/bin/sh",
              "-c",
              // the pid file may lag the start by a moment
              'for i in 1 2 3 4 5 6 7 8 9 10; do [ -s "$0" ] && break; sleep 0.05; done; kill -s "$1" -- "-$(cat "$0")" 2>/dev/null; true',
              pidFile,
              signal.replace(/^SIG/, "")
            ],
            AttachStdout: true,
            AttachStderr: true
          })
          const out = await killer.start({ hijack: true, stdin: false })
          await new Promise<void>((done) => {
            out.once("end", done)
            out.once("close", done)
            out.once("error", () => done())
            out.resume()
          })
        },
        catch: dockerFailure("docker exec kill")
      }).pipe(Effect.ignore)
    const proc: WorkspaceProcess = {
      stdin: stream as unknown as Writable,
      stdout,
      stderr,
      exitCode: Effect.promise(() => exit),
      kill: (signal = "SIGTERM") => (ended ? Effect.void : signalGroup(signal))
    }
    return proc
  })
