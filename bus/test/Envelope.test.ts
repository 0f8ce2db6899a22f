import { describe, expect, it } from "vitest"
import { z } from "zod"
import { defineMessage, encode, registry, safeParseJson } from "../src/index.js"

const Prompt = defineMessage("session.prompt", z.object({ text: z.string().max(10) }), { durable: true })
const Cancel = defineMessage("session.cancel", z.object({}), { durable: true })
const messages = registry(Prompt, Cancel)
const bytes = (value: unknown) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value))

describe("envelopes", () => {
  it("round-trip through encode and decode", () => {
    const envelope = Prompt.make({ text: "hi" }, { correlationId: "c1" })
    const decoded = messages.decode(encode(envelope))
    expect(decoded).toEqual({ _tag: "Ok", envelope: { ...envelope, causationId: undefined } })
  })

  it("refuse to make an envelope with an invalid body", () => {
    expect(() => Prompt.make({ text: "far too long a prompt" })).toThrow()
  })

  it.each([
    ["not-json", new Uint8Array([0xff, 0xfe, 0x00])],
    ["not-json", bytes("{half")],
    ["bad-envelope", bytes({ hello: 1 })],
    ["bad-envelope", bytes({ ...Prompt.make({ text: "x" }), id: "task_notamessage" })],
    ["bad-envelope", bytes({ ...Prompt.make({ text: "x" }), at: "yesterday" })],
    ["unknown-type", bytes({ ...Prompt.make({ text: "x" }), type: "session.explode" })],
    ["bad-body", bytes({ ...Prompt.make({ text: "x" }), body: { text: 42 } })],
    ["bad-body", bytes({ ...Prompt.make({ text: "x" }), body: { text: "y".repeat(11) } })]
  ])("turn a hostile payload into a Malformed %s, never a throw", (reason, payload) => {
    const decoded = messages.decode(payload)
    expect(decoded._tag).toBe("Malformed")
    if (decoded._tag === "Malformed") expect(decoded.malformed.reason).toBe(reason)
  })

  it("wrap a body already parsed as make does, and the receiver still refuses a bad one", () => {
    const meta = { id: "msg_wrapped1" as never, at: new Date("2026-12-06T12:00:00Z"), correlationId: "c1" }
    expect(Prompt.wrap({ text: "hi" }, meta)).toEqual(Prompt.make({ text: "hi" }, meta))
    // a wrapped body is not parsed here: what decodes it on the other side is
    const wrong = Prompt.wrap({ text: "far too long a prompt" }, meta)
    expect(messages.decode(encode(wrong))).toMatchObject({ _tag: "Malformed", malformed: { reason: "bad-body" } })
  })

  it("do not let a prototype key through", () => {
    const decoded = messages.decode(bytes(`{"__proto__":{"polluted":1},"id":"msg_a","type":"session.cancel"}`))
    expect(decoded._tag).toBe("Malformed")
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

describe("safeParseJson", () => {
  const Kept = z.object({ lastSeq: z.number().int() })
  it("reads JSON that the schema takes, and refuses text that is not JSON like any value the schema refuses", () => {
    expect(safeParseJson(Kept, `{"lastSeq":3}`)).toMatchObject({ success: true, data: { lastSeq: 3 } })
    expect(safeParseJson(Kept, `{"lastSeq":"3"}`).success).toBe(false)
    expect(safeParseJson(Kept, `{"lastSeq":3`).success).toBe(false)
    expect(safeParseJson(Kept, "").success).toBe(false)
    expect(safeParseJson(z.unknown().optional(), "not json")).toMatchObject({ success: true, data: undefined })
  })
})
