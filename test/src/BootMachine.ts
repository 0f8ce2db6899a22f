import { execFile } from "node:child_process"
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { promisify } from "node:util"
import { Effect, type Scope } from "effect"
import { parse } from "yaml"
import { tempDir } from "./TestStack.js"

const exec = promisify(execFile)

/**
 * A "machine" for boot tests: a container on the test's own dockerd, on the host network (it reaches
 * the gateway and NATS on loopback), from the locally built workspace image (Debian bookworm with git;
 * the host's node binary is mounted at /usr/local/bin/node, so the boot script finds Node >= 20 and
 * skips its `apt-get install nodejs`). Closing the scope removes it.
 *
 * What stands in for what, and nothing more:
 * - cloud-init: this runs a cloud-config's `write_files`, `bootcmd` and `runcmd` in cloud-init's order
 *   (the document was checked with Debian's `cloud-init schema` in infra/test/CloudInit.test.ts);
 * - systemd: the container has none, so the boot script itself runs the unit's ExecStart with its
 *   EnvironmentFile in the foreground (boot.sh says so in the boot log);
 * - the firewall: the script runs with `SAM_FIREWALL_DRY_RUN=1` (it prints its iptables rules instead
 *   of applying them to the shared host's network namespace).
 */
export interface MachineOptions {
  readonly socketPath: string
  readonly image: string
  /** host paths the machine sees at the same path, read-only (a project's local repository) */
  readonly shared?: ReadonlyArray<string>
  /** false: no Node on the machine (the boot script installs the control plane's runtime); default true */
  readonly node?: boolean
  /** extra environment of the machine (e.g. `SAM_FIREWALL_SIMULATE_NO_IP6TABLES=1`) */
  readonly env?: Readonly<Record<string, string>>
}

export interface Machine {
  readonly name: string
  /** `docker logs` of the machine (its console) */
  readonly console: () => Promise<string>
  /** a file of the machine, read with `docker cp` (also once it has stopped) */
  readonly file: (path: string) => Promise<string>
  /** undefined while it runs */
  readonly exitCode: () => Promise<number | undefined>
  /** stop it (SIGTERM to its processes, then SIGKILL after 10 s), as a server being powered off */
  readonly stop: () => Promise<void>
}

const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`
const command = (entry: unknown) =>
  Array.isArray(entry) ? entry.map((a) => quote(String(a))).join(" ") : `sh -c ${quote(String(entry))}`

/** The cloud-init stand-in's script for a `#cloud-config` document; its files go in `dir/files/`. */
export const cloudInitRunner = async (userData: string, dir: string) => {
  if (!userData.startsWith("#cloud-config\n")) throw new Error("user data is not a #cloud-config document")
  const config = parse(userData) as {
    write_files?: Array<{ path: string; permissions?: string; content?: string; owner?: string }>
    bootcmd?: Array<unknown>
    runcmd?: Array<unknown>
  }
  await mkdir(join(dir, "files"), { recursive: true })
  const lines = ["#!/bin/bash", "set -e", "echo '[cloud-init stand-in] write_files'"]
  for (const [i, file] of (config.write_files ?? []).entries()) {
    await writeFile(join(dir, "files", String(i)), file.content ?? "")
    lines.push(`install -D -m ${file.permissions ?? "0644"} /cloud-init/files/${i} ${quote(file.path)}`)
  }
  lines.push("echo '[cloud-init stand-in] bootcmd'")
  for (const entry of config.bootcmd ?? []) lines.push(command(entry))
  lines.push("echo '[cloud-init stand-in] runcmd'")
  const runcmd = config.runcmd ?? []
  // The last runcmd is exec'd: its process (the vm-agent, once the boot script execs it) gets the stop signal.
  for (const [i, entry] of runcmd.entries()) lines.push(`${i === runcmd.length - 1 ? "exec " : ""}${command(entry)}`)
  return `${lines.join("\n")}\n`
}

let counter = 0

/** A machine that runs `script` (bash) as its boot, from `dir/files` mounted at /cloud-init. */
const start = (options: MachineOptions, script: (dir: string) => Promise<string>) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const dir = await tempDir("sam-machine-")
      await writeFile(join(dir, "run.sh"), await script(dir), { mode: 0o755 })
      const name = `sam-machine-${process.pid}-${++counter}-${Date.now().toString(36)}`
      const docker = (...args: Array<string>) =>
        exec("docker", ["-H", `unix://${options.socketPath}`, ...args], { maxBuffer: 64 * 1024 * 1024 })
      const env = { SAM_FIREWALL_DRY_RUN: "1", ...options.env }
      await docker(
        "run",
        "-d",
        "--init",
        "--name",
        name,
        "--network",
        "host",
        "-v",
        `${dir}:/cloud-init:ro`,
        ...(options.node === false ? [] : ["-v", `${process.execPath}:/usr/local/bin/node:ro`]),
        ...(options.shared ?? []).flatMap((path) => ["-v", `${path}:${path}:ro`]),
        ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
        options.image,
        "bash",
        "/cloud-init/run.sh"
      )
      const machine: Machine = {
        name,
        console: () => docker("logs", name).then(({ stdout, stderr }) => `${stdout}${stderr}`),
        file: (path) =>
          exec(
            "bash",
            ["-c", `docker -H ${quote(`unix://${options.socketPath}`)} cp ${quote(`${name}:${path}`)} - | tar -xO`],
            {
              maxBuffer: 64 * 1024 * 1024
            }
          ).then(({ stdout }) => stdout),
        exitCode: () =>
          docker("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name).then(({ stdout }) => {
            const [running, code] = stdout.trim().split(" ")
            return running === "true" ? undefined : Number(code)
          }),
        stop: () => docker("stop", "-t", "10", name).then(() => undefined)
      }
      return { machine, remove: () => docker("rm", "-f", name).catch(() => undefined) }
    }),
    ({ remove }) => Effect.promise(remove)
  ).pipe(Effect.map(({ machine }) => machine))

/** Boots a machine from cloud-init user data (a Hetzner server's, for instance). */
export const bootCloudInit = (userData: string, options: MachineOptions): Effect.Effect<Machine, never, Scope.Scope> =>
  start(options, (dir) => cloudInitRunner(userData, dir))

/** Boots a machine that runs `script` (bash) as root: a person at a fresh machine's shell. */
export const bootShell = (script: string, options: MachineOptions): Effect.Effect<Machine, never, Scope.Scope> =>
  start(options, async () => `#!/bin/bash\nset -euo pipefail\n${script}\n`)
