import { randomBytes } from "node:crypto"
import { PassThrough, type Writable } from "node:stream"
import type Docker from "dockerode"
import { Effect } from "effect"
import { RuntimeFailure, type WorkspaceProcess } from "../WorkspaceRuntime.js"

const dockerFailure = (what: string) => (cause: unknown) =>
  new RuntimeFailure({ reason: "docker", message: `${what}: ${cause instanceof Error ? cause.message : cause}`, cause })

/** Runs a short command of ours in the container, as root (it signals groups of any user there), for its stdout. */
export const smallExec = async (container: Docker.Container, argv: ReadonlyArray<string>) => {
  const exec = await container.exec({ Cmd: [...argv], User: "0:0", AttachStdout: true, AttachStderr: true })
  const stream = await exec.start({ hijack: true, stdin: false })
  const stdout = new PassThrough()
  const chunks: Array<Buffer> = []
  stdout.on("data", (chunk: Buffer) => chunks.push(Buffer.from(chunk)))
  container.modem.demuxStream(stream, stdout, new PassThrough().resume())
  await new Promise<void>((done) => {
    stream.once("end", done)
    stream.once("close", done)
    stream.once("error", () => done())
  })
  return Buffer.concat(chunks).toString("utf8")
}

/**
 * `docker exec` with stdin attached. The process is a session and group leader inside the container;
 * a small shell wrapper records its pid so that `kill` can signal the whole group with another exec.
 */
export const startExec = (
  docker: Docker,
  container: Docker.Container,
  argv: ReadonlyArray<string>,
  options: {
    readonly cwd: string
    readonly env?: Readonly<Record<string, string>> | undefined
    /** default: the container's user (the workspace's); our own provisioning steps pass root */
    readonly user?: string
  }
) =>
  Effect.gen(function* () {
    const pidFile = `/tmp/.sam-exec-${randomBytes(8).toString("hex")}.pid`
    const exec = yield* Effect.tryPromise({
      try: () =>
        container.exec({
          Cmd: ["/bin/sh", "-c", 'echo $$ > "$0"; exec "$@"', pidFile, ...argv],
          Env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
          ...(options.user === undefined ? {} : { User: options.user }),
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
    // The pid file may lag the start by a moment.
    const waitPid = 'for i in 1 2 3 4 5 6 7 8 9 10; do [ -s "$0" ] && break; sleep 0.05; done; pg=$(cat "$0")'
    const signalGroup = (signal: NodeJS.Signals) =>
      Effect.tryPromise({
        try: () =>
          smallExec(container, [
            "/bin/sh",
            "-c",
            `${waitPid}; kill -s "$1" -- "-$pg" 2>/dev/null; true`,
            pidFile,
            signal.replace(/^SIG/, "")
          ]),
        catch: dockerFailure("docker exec kill")
      }).pipe(Effect.ignore)
    let pgid: Promise<number> | undefined
    const readPgid = () => {
      pgid ??= smallExec(container, ["/bin/sh", "-c", `${waitPid}; echo "$pg"`, pidFile]).then((out) => {
        const pid = Number(out.trim())
        if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid for the exec (${out.trim()})`)
        return pid
      })
      return pgid
    }
    // Counts the group's processes that are not zombies, from the container's /proc.
    const countLive =
      'pg="$0"; n=0; for f in /proc/[0-9]*/stat; do { read -r s < "$f"; } 2>/dev/null || continue; ' +
      `s=\${s##*) }; set -- $s; if [ "$3" = "$pg" ] && [ "$1" != Z ] && [ "$1" != X ]; then n=$((n+1)); fi; done; echo $n`
    // Signals (or, with "-", counts) the group's processes but the leader that started at or after a clock tick
    // and are not zombies; the container's /proc is the same kernel's, so its start times are on the host's clock.
    const sinceScript =
      `${waitPid}; since="$1"; sig="$2"; n=0; for f in /proc/[0-9]*/stat; do { read -r s < "$f"; } 2>/dev/null || continue; ` +
      `p=\${f#/proc/}; p=\${p%/stat}; s=\${s##*) }; set -- $s; ` +
      `if [ "$3" = "$pg" ] && [ "$p" != "$pg" ] && [ "$1" != Z ] && [ "$1" != X ] && [ "\${20}" -ge "$since" ] 2>/dev/null; ` +
      `then n=$((n+1)); [ "$sig" = - ] || kill -s "$sig" "$p" 2>/dev/null; fi; done; echo $n`
    const since = (ticks: number, signal: string) =>
      smallExec(container, ["/bin/sh", "-c", sinceScript, pidFile, String(ticks), signal]).then((out) =>
        Number(out.trim())
      )
    const proc: WorkspaceProcess = {
      stdin: stream as unknown as Writable,
      stdout,
      stderr,
      exitCode: Effect.promise(() => exit),
      kill: (signal = "SIGTERM") => (ended ? Effect.void : signalGroup(signal)),
      pgid: Effect.tryPromise({ try: readPgid, catch: dockerFailure("docker exec pid") }).pipe(Effect.orDie),
      killGroup: signalGroup,
      // an engine that does not answer any more (the container is gone) leaves no process to count
      groupAlive: Effect.tryPromise(async () => {
        const pid = await readPgid()
        return Number((await smallExec(container, ["/bin/sh", "-c", countLive, String(pid)])).trim()) > 0
      }).pipe(Effect.orElseSucceed(() => false)),
      killSince: (ticks, signal) =>
        Effect.tryPromise({
          try: () => since(ticks, signal.replace(/^SIG/, "")),
          catch: dockerFailure("docker exec kill")
        }).pipe(Effect.ignore),
      aliveSince: (ticks) =>
        Effect.tryPromise(() => since(ticks, "-")).pipe(
          Effect.map((n) => n > 0),
          // unknown counts as alive: the caller then stops the whole group
          Effect.orElseSucceed(() => true)
        )
    }
    return proc
  })
