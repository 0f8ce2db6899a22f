import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Credentials } from "@sam/bus"
import { Effect } from "effect"
import { describe, expect } from "vitest"
import { bootEngine, nodeReady, taskThroughFeed, tokenOf } from "../../src/BootEnv.js"
import { bootShell } from "../../src/BootMachine.js"
import { seedProject, useSettings } from "../../src/ControlPlaneHarness.js"
import { GatewayUrl, http, makeGatewayEnv } from "../../src/GatewayHarness.js"

/**
 * Any Linux machine with Node joins as a node of its user (ADR 0027): a machine-in-a-container (host
 * network, no SAM checkout) downloads the artifact, checks its sha256, and runs the `sam` in it:
 * `sam node join <url> <token>`; another, with no Node at all, runs the one-line install command (the
 * boot script, which installs the control plane's Node runtime and sam-vm-agent.service). Both trade their join token once; a task of the user runs on the
 * joined machine and its output reaches the feed.
 */
const { engine, skipReason } = await bootEngine("node-join")
// The user's nodes are the joined machines: no local node is started for a task.
useSettings({ SAM_MAX_NODES_PER_USER: "2" })

/** `curl -fsSL URL -o FILE` for a machine without curl: the same download with node's fetch. */
const fetchTo = (url: string, file: string) =>
  `node -e 'fetch(process.argv[1]).then(async (r) => { if (!r.ok) throw new Error(String(r.status)); require("fs").writeFileSync(process.argv[2], Buffer.from(await r.arrayBuffer())) })' ${url} ${file}`

describe.skipIf(skipReason)(`sam node join${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`, () => {
  layer(makeGatewayEnv(), { excludeTestServices: true, timeout: 120_000 })("join", (it) => {
    it.scoped(
      "joins machines as nodes of their user; a task runs on one and reaches the feed",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const url = yield* GatewayUrl
          const { userId, projectId, repo } = yield* seedProject()
          const token = yield* tokenOf(userId)
          const issued = yield* http("POST", "/api/v1/nodes/join-token", { token })
          expect(issued.status).toBe(201)
          expect(issued.body.samCommand).toBe(`sam node join ${url} ${issued.body.token}`)

          // Machine A: the artifact's own `sam node join`.
          const a = yield* bootShell(
            [
              fetchTo(`${url}/api/v1/node-boot/vm-agent.tar.gz`, "/tmp/sam.tar.gz"),
              fetchTo(`${url}/api/v1/node-boot/vm-agent.sha256`, "/tmp/sam.sha256"),
              `echo "$(cut -d' ' -f1 /tmp/sam.sha256)  /tmp/sam.tar.gz" | sha256sum -c -`,
              "mkdir -p /opt/sam && tar -xzf /tmp/sam.tar.gz -C /opt/sam",
              `exec /opt/sam/sam ${issued.body.samCommand.replace(/^sam /, "")} --runtime host`
            ].join("\n"),
            { socketPath: engine!.socketPath, image: engine!.image, shared: [repo] }
          )
          yield* nodeReady(issued.body.nodeId).pipe(
            Effect.tapError(() => Effect.promise(async () => console.error(`[join] machine A:\n${await a.console()}`)))
          )
          const node = yield* sql<{ ownerId: string; provider: string }>`
            SELECT owner_id, provider FROM nodes WHERE id = ${issued.body.nodeId}`
          expect(node[0]).toEqual({ ownerId: userId, provider: "joined" })
          // The machine keeps its node identity, root-only; the token is spent.
          expect(yield* Effect.promise(() => a.file("/var/lib/sam-node/node.json"))).toContain(issued.body.nodeId)
          const again = yield* http("POST", "/api/v1/node-boot/exchange", {
            body: { token: issued.body.token, publicKey: Credentials.newUserKey().publicKey }
          })
          expect(again.status).toBe(401)

          // Machine B: the one-line install command (boot script → sam-vm-agent.service, run in the foreground here).
          const second = yield* http("POST", "/api/v1/nodes/join-token", { token })
          const oneLine = second.body.command as string
          expect(oneLine).toMatch(/^curl -fsSL \S+\/api\/v1\/node-boot\/boot\.sh \| sudo bash -s -- --url /)
          // A machine with no Node and no curl: the boot script fetches the control plane's own Node runtime
          // (bash's /dev/tcp over plain http here) and checks its sha256. The script itself is handed over as
          // `curl … | sudo bash -s -- …` would.
          const script = yield* http("GET", "/api/v1/node-boot/boot.sh")
          const b = yield* bootShell(
            `cat > /tmp/boot.sh <<'SAM_BOOT_SH'\n${script.body}SAM_BOOT_SH\n` +
              `SAM_NODE_RUNTIME=host bash /tmp/boot.sh ${oneLine.split("| sudo bash -s -- ")[1]}`,
            { socketPath: engine!.socketPath, image: engine!.image, shared: [repo], node: false }
          )
          yield* nodeReady(second.body.nodeId).pipe(
            Effect.tapError(() => Effect.promise(async () => console.error(`[join] machine B:\n${await b.console()}`)))
          )
          const unit = yield* Effect.promise(() => b.file("/etc/systemd/system/sam-vm-agent.service"))
          expect(unit).toContain("ExecStart=")
          const consoleB = yield* Effect.promise(() => b.console())
          expect(consoleB).not.toContain("apt-timers")
          expect(consoleB).toContain("installing the control plane's Node runtime")
          expect(consoleB).toMatch(/node completed: Node v\d+\.\d+\.\d+ at \/usr\/local\/bin\/node/)

          const run = yield* taskThroughFeed(projectId, token, "hello from a joined machine").pipe(
            Effect.tapError(() => Effect.promise(async () => console.error(`[join] machine A:\n${await a.console()}`)))
          )
          expect(run.task.status).toBe("completed")
          expect([issued.body.nodeId, second.body.nodeId]).toContain(run.task.nodeId)
        }),
      240_000
    )
  })
})
