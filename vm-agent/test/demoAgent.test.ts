import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Readable, Writable } from "node:stream"
import {
  type ClientConnection,
  client,
  ndJsonStream,
  PROTOCOL_VERSION,
  type SessionUpdate
} from "@agentclientprotocol/sdk"
import { afterEach, describe, expect, it } from "vitest"
import { demoAgentCommand } from "../src/demo/DemoAgentCommand.js"
import { lineWriter } from "../src/demo/LineWriter.js"
import { chunksOf, parseScript } from "../src/demo/Script.js"
import { tempDir } from "./acpTestKit.js"

describe("demo agent script", () => {
  it("parses keywords, and echoes lines without one", () => {
    expect(parseScript("say hi there\n\n  plan a | b |  c \nsleep 10\nsleep soon\nhello")).toEqual([
      { _tag: "say", text: "hi there" },
      { _tag: "plan", entries: ["a", "b", "c"] },
      { _tag: "sleep", ms: 10 },
      { _tag: "echo", text: "sleep soon" },
      { _tag: "echo", text: "hello" }
    ])
    expect(parseScript("run sleep 30; echo x\nignore-cancel\ncrash\nfail no credit left\nfail")).toEqual([
      { _tag: "run", command: "sleep 30; echo x" },
      { _tag: "ignore-cancel" },
      { _tag: "crash" },
      { _tag: "fail", message: "no credit left" },
      { _tag: "fail", message: "the demo agent failed this turn" }
    ])
    // `stop` with one of ACP's stop reasons an agent gives on its own; anything else is echoed
    expect(parseScript("stop max_turn_requests\nstop refusal\nstop cancelled\nstop")).toEqual([
      { _tag: "stop", reason: "max_turn_requests" },
      { _tag: "stop", reason: "refusal" },
      { _tag: "echo", text: "stop cancelled" },
      { _tag: "echo", text: "stop" }
    ])
  })

  it("streams a reply in several chunks that add up to the text", () => {
    const chunks = chunksOf("one two three four five six")
    expect(chunks.length).toBeGreaterThan(1)
    expect(chunks.join("")).toBe("one two three four five six")
  })
})

interface Agent {
  readonly connection: ClientConnection
  readonly updates: Array<SessionUpdate>
  readonly exited: Promise<number | null>
}

const running: Array<() => void> = []
afterEach(() => {
  for (const kill of running.splice(0)) kill()
})

/** The demo agent driven directly through the SDK's client side, without the session host. */
const startAgent = async (cwd: string, stateDir: string): Promise<Agent> => {
  const command = demoAgentCommand({ cwd, env: { SAM_DEMO_AGENT_STATE_DIR: stateDir } })
  const child = spawn(command.argv[0], command.argv.slice(1), {
    cwd,
    env: { ...process.env, ...command.env },
    stdio: ["pipe", "pipe", "inherit"],
    detached: true
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  running.push(() => {
    try {
      process.kill(-child.pid!, "SIGKILL")
    } catch {
      // Already gone.
    }
  })
  const updates: Array<SessionUpdate> = []
  const connection = client()
    .onNotification("session/update", ({ params }) => {
      updates.push(params.update)
    })
    .connect(
      ndJsonStream(
        Writable.toWeb(child.stdin) as WritableStream<Uint8Array>,
        Readable.toWeb(child.stdout) as ReadableStream<Uint8Array>
      )
    )
  await connection.agent.request("initialize", { protocolVersion: PROTOCOL_VERSION, clientCapabilities: {} })
  return { connection, updates, exited }
}

const said = (updates: ReadonlyArray<SessionUpdate>) =>
  updates
    .flatMap((u) => (u.sessionUpdate === "agent_message_chunk" && u.content.type === "text" ? [u.content.text] : []))
    .join("")

describe("demo agent over ACP", () => {
  it("runs a shell command in the session cwd and streams its output as a tool call", async () => {
    const cwd = tempDir()
    Fs.writeFileSync(Path.join(cwd, "hello.txt"), "hi from the workspace")
    const agent = await startAgent(cwd, tempDir())
    const { sessionId } = await agent.connection.agent.request("session/new", { cwd, mcpServers: [] })
    const response = await agent.connection.agent.request("session/prompt", {
      sessionId,
      prompt: [{ type: "text", text: "run cat hello.txt; exit 2" }]
    })
    expect(response.stopReason).toBe("end_turn")
    const output = agent.updates.flatMap((u) =>
      u.sessionUpdate === "tool_call_update"
        ? (u.content ?? []).map((c) => (c.type === "content" && c.content.type === "text" ? c.content.text : ""))
        : []
    )
    expect(output.join("")).toContain("hi from the workspace")
    expect(agent.updates.at(-1)).toMatchObject({
      sessionUpdate: "tool_call_update",
      status: "failed",
      rawOutput: { exitCode: 2 }
    })
  })

  it("stops a running step on session/cancel and returns cancelled", async () => {
    const cwd = tempDir()
    const agent = await startAgent(cwd, tempDir())
    const { sessionId } = await agent.connection.agent.request("session/new", { cwd, mcpServers: [] })
    const startedAt = Date.now()
    const turn = agent.connection.agent.request("session/prompt", {
      sessionId,
      prompt: [{ type: "text", text: "run sleep 30\nsay never" }]
    })
    while (!agent.updates.some((u) => u.sessionUpdate === "tool_call")) await new Promise((r) => setTimeout(r, 10))
    await agent.connection.agent.notify("session/cancel", { sessionId })
    expect((await turn).stopReason).toBe("cancelled")
    expect(Date.now() - startedAt).toBeLessThan(10_000)
    expect(said(agent.updates)).toBe("")
  })

  it("answers a `fail` prompt with a JSON-RPC error carrying its reason, after what it said before", async () => {
    const cwd = tempDir()
    const agent = await startAgent(cwd, tempDir())
    const { sessionId } = await agent.connection.agent.request("session/new", { cwd, mcpServers: [] })
    const failed = await agent.connection.agent
      .request("session/prompt", {
        sessionId,
        prompt: [{ type: "text", text: "say trying\nfail out of credit\nsay never" }]
      })
      .then(
        () => undefined,
        (error: { code?: number; data?: { message?: string } }) => error
      )
    expect(failed).toMatchObject({ code: -32603, data: { message: "out of credit" } })
    expect(said(agent.updates)).toBe("trying")
    // the session takes the next prompt
    const next = await agent.connection.agent.request("session/prompt", {
      sessionId,
      prompt: [{ type: "text", text: "say again" }]
    })
    expect(next.stopReason).toBe("end_turn")
  })

  it("writes what it said before it crashed, its lines that are not JSON in their place", async () => {
    const cwd = tempDir()
    const command = demoAgentCommand({ cwd, env: { SAM_DEMO_AGENT_STATE_DIR: tempDir() } })
    const child = spawn(command.argv[0], command.argv.slice(1), {
      cwd,
      env: { ...process.env, ...command.env },
      stdio: ["pipe", "pipe", "inherit"]
    })
    running.push(() => child.kill("SIGKILL"))
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    const send = (id: number, method: string, params: unknown) =>
      child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`)
    const answered = (id: number) =>
      new Promise<{ result: { sessionId: string } }>((resolve) => {
        const check = () => {
          const line = out.split("\n").find((l) => l.startsWith("{") && JSON.parse(l).id === id)
          if (line !== undefined) return resolve(JSON.parse(line))
          setTimeout(check, 5)
        }
        check()
      })
    send(1, "initialize", { protocolVersion: PROTOCOL_VERSION, clientCapabilities: {} })
    await answered(1)
    send(2, "session/new", { cwd, mcpServers: [] })
    const { sessionId } = (await answered(2)).result
    // all of it in one pass of the event loop: nothing of it written yet when the agent exits
    send(3, "session/prompt", { sessionId, prompt: [{ type: "text", text: "say one\ngarbage\nsay two\ncrash" }] })
    expect(await exited).toBe(3)
    const lines = out.split("\n").slice(2, -1)
    const text = (line: string) => {
      try {
        return JSON.parse(line)?.params?.update?.content?.text ?? line
      } catch {
        return line
      }
    }
    expect(lines.map(text).join("|")).toBe("one|this is not JSON|{ broken json|[1, 2, 3]|\n\ntwo")
  })

  it("remembers a session's prompts across a restart through session/load", async () => {
    const cwd = tempDir()
    const stateDir = tempDir()
    const first = await startAgent(cwd, stateDir)
    const { sessionId } = await first.connection.agent.request("session/new", { cwd, mcpServers: [] })
    await first.connection.agent.request("session/prompt", { sessionId, prompt: [{ type: "text", text: "say one" }] })
    await first.connection.agent
      .request("session/prompt", { sessionId, prompt: [{ type: "text", text: "crash" }] })
      .catch(() => undefined)
    expect(await first.exited).toBe(3)

    const second = await startAgent(cwd, stateDir)
    await second.connection.agent.request("session/load", { sessionId, cwd, mcpServers: [] })
    expect(second.updates.map((u) => u.sessionUpdate)).toEqual(["user_message_chunk", "user_message_chunk"])
    await second.connection.agent.request("session/prompt", { sessionId, prompt: [{ type: "text", text: "recall" }] })
    expect(said(second.updates)).toBe("Earlier prompts: 1) say one 2) crash")
    await expect(
      second.connection.agent.request("session/load", { sessionId: "demo_unknown", cwd, mcpServers: [] })
    ).rejects.toThrow()
  })
})

describe("demo agent started warm (ADR 0055)", () => {
  it("rehearses before its start line without a trace: its first output answers the first request, and it wrote nothing", async () => {
    const boot = await tempDir()
    const work = await tempDir()
    const command = demoAgentCommand({ cwd: boot })
    const [node = "", ...args] = command.argv
    const child = spawn(node, args, {
      cwd: boot,
      env: { PATH: process.env.PATH ?? "", HOME: boot, TMPDIR: boot, SAM_WARM_START: "1" },
      stdio: ["pipe", "pipe", "pipe"]
    })
    try {
      let out = ""
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString()
      })
      const line = (n: number) =>
        new Promise<string>((resolve, reject) => {
          const check = () => {
            const lines = out.split("\n")
            if (lines.length > n) return resolve(lines[n - 1]!)
            setTimeout(check, 5)
          }
          child.once("exit", (code) => reject(new Error(`the agent exited (${code}): ${out}`)))
          check()
        })
      const send = (value: unknown) => child.stdin.write(`${JSON.stringify(value)}\n`)
      send({ cwd: work, env: { PATH: process.env.PATH ?? "", HOME: work } })
      send({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: PROTOCOL_VERSION, clientCapabilities: {} }
      })
      expect(JSON.parse(await line(1))).toMatchObject({ id: 1, result: { protocolVersion: PROTOCOL_VERSION } })
      send({ jsonrpc: "2.0", id: 2, method: "session/new", params: { cwd: work, mcpServers: [] } })
      const created = JSON.parse(await line(2))
      expect(created).toMatchObject({ id: 2, result: { sessionId: expect.stringMatching(/^demo_/) } })
      // the rehearsal's session is no real one: only this session's file, in the directory it runs in
      expect(Fs.readdirSync(boot)).toEqual([])
      expect(Fs.readdirSync(Path.join(work, ".sam-demo-agent"))).toEqual([`${created.result.sessionId}.json`])
    } finally {
      child.kill("SIGKILL")
    }
  })
})

describe("demo agent output", () => {
  it("writes the messages of one pass of the event loop in one write, a line each, in order, and waits while its output is full", async () => {
    const received: Array<string> = []
    let mostWaiting = 0
    // a pipe that holds one write at a time and takes a millisecond for each
    const out = new Writable({
      highWaterMark: 1,
      write: (chunk: Buffer, _encoding, done) => {
        received.push(chunk.toString())
        setTimeout(done, 1)
      }
    })
    const writeOf = out.write.bind(out)
    out.write = ((...args: Parameters<typeof out.write>) => {
      const room = writeOf(...args)
      mostWaiting = Math.max(mostWaiting, out.writableLength)
      return room
    }) as typeof out.write
    const writer = lineWriter(out).stream.getWriter()
    const message = (i: number) => ({
      jsonrpc: "2.0" as const,
      method: "session/update",
      params: {
        sessionId: "s",
        update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text: `${i}` } }
      }
    })
    const lineOf = (i: number) => `${JSON.stringify(message(i))}\n`
    // five bursts of ten messages, the event loop free between them (as an agent streaming from a model)
    for (let burst = 0; burst < 5; burst++) {
      for (let i = burst * 10; i < burst * 10 + 10; i++) await writer.write(message(i))
      await new Promise((resolve) => setImmediate(resolve))
    }
    await writer.close()
    await new Promise((resolve) => out.end(resolve))
    // a write per burst, each its ten lines in order
    expect(received).toEqual(
      Array.from({ length: 5 }, (_, burst) => Array.from({ length: 10 }, (_, i) => lineOf(burst * 10 + i)).join(""))
    )
    // while a burst was waiting for room, the next one waited: never two waiting at once
    expect(mostWaiting).toBeLessThanOrEqual(Math.max(...received.map((chunk) => chunk.length)))
  })

  it("sends lines past the stream in the order they are sent, after those waiting for room, and a message after them", async () => {
    const received: Array<string> = []
    // a pipe that holds one write at a time and takes a millisecond for each
    const out = new Writable({
      highWaterMark: 1,
      write: (chunk: Buffer, _encoding, done) => {
        received.push(chunk.toString())
        setTimeout(done, 1)
      }
    })
    const output = lineWriter(out)
    const writer = output.stream.getWriter()
    const update = (text: string) => JSON.stringify({ method: "session/update", params: { text } })
    // the first line fills the pipe; the next ones wait for room, each after the one before
    output.send(update("a"))
    await new Promise((resolve) => setImmediate(resolve))
    const waiting = [output.send(update("b")), output.send(update("c"))]
    expect(waiting.every((sent) => sent instanceof Promise)).toBe(true)
    // the SDK's message (the prompt's response, once the turn's last update is sent) goes after them
    const response = { jsonrpc: "2.0" as const, id: 3, result: { stopReason: "end_turn" } }
    await writer.write(response)
    await Promise.all(waiting)
    await writer.close()
    // what waits goes out once this pass of the event loop is over
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => out.end(resolve))
    expect(received.join("").split("\n").slice(0, -1)).toEqual([
      update("a"),
      update("b"),
      update("c"),
      JSON.stringify(response)
    ])
  })

  it("fails a write that waits for room when its output fails, rather than waiting forever", async () => {
    // a pipe whose reader is gone: it takes one write and never makes room again
    const out = new Writable({ highWaterMark: 1, write: () => undefined })
    const writer = lineWriter(out).stream.getWriter()
    const message = { jsonrpc: "2.0" as const, method: "session/update", params: { sessionId: "s" } }
    await writer.write(message)
    await new Promise((resolve) => setImmediate(resolve))
    // the pipe is full now: the next message waits for room
    const waiting = writer.write(message)
    out.destroy(new Error("EPIPE: the reader is gone"))
    await expect(waiting).rejects.toThrow("EPIPE")
  })
})
