import { z } from "zod"
import { MessageId, makeId } from "./Ids.js"

/**
 * Every bus message is an envelope. `id` is the de-duplication key: it is sent as `Nats-Msg-Id` and
 * stored in actor inboxes, so the same logical message published twice is stored or applied once.
 */
export const EnvelopeBase = z.object({
  id: MessageId,
  type: z.string().min(1).max(128),
  at: z.iso.datetime(),
  causationId: z.string().max(128).optional(),
  correlationId: z.string().max(128).optional(),
  body: z.unknown()
})
export type EnvelopeBase = z.infer<typeof EnvelopeBase>

export interface Envelope<T extends string = string, B = unknown> {
  readonly id: MessageId
  readonly type: T
  readonly at: string
  readonly causationId?: string | undefined
  readonly correlationId?: string | undefined
  readonly body: B
}

export interface EnvelopeMeta {
  readonly id?: MessageId
  readonly at?: Date
  readonly causationId?: string
  readonly correlationId?: string
}

/**
 * A message type: its name, its body schema, and whether it is durable (published to a stream with
 * de-duplication) or volatile (core NATS, lost if nobody listens).
 */
export interface MessageDef<T extends string, S extends z.ZodType> {
  readonly type: T
  readonly body: S
  readonly durable: boolean
  readonly make: (body: z.input<S>, meta?: EnvelopeMeta) => Envelope<T, z.output<S>>
  /**
   * `make` without parsing the body again: for a body this process built only of values it parsed with their schemas
   * (a decoded report passed on, an event read from a decoded command), on a path where the second parse was a
   * measurable part of each event's CPU (issue 12). Whoever receives it parses it as any other message.
   */
  readonly wrap: (body: z.output<S>, meta?: EnvelopeMeta) => Envelope<T, z.output<S>>
}

export const defineMessage = <const T extends string, S extends z.ZodType>(
  type: T,
  body: S,
  options: { readonly durable: boolean }
): MessageDef<T, S> => {
  const wrap = (output: z.output<S>, meta: EnvelopeMeta = {}): Envelope<T, z.output<S>> => ({
    id: meta.id ?? makeId("msg"),
    type,
    at: (meta.at ?? new Date()).toISOString(),
    causationId: meta.causationId,
    correlationId: meta.correlationId,
    body: output
  })
  return { type, body, durable: options.durable, make: (input, meta) => wrap(body.parse(input), meta), wrap }
}

/** Why an incoming payload was refused. Carried in dead-letter records and error reports. */
export interface Malformed {
  readonly reason: "not-json" | "bad-envelope" | "unknown-type" | "bad-body"
  readonly message: string
}

type AnyDef = MessageDef<string, z.ZodType>
export type EnvelopeOf<D> = D extends MessageDef<infer T, infer S> ? Envelope<T, z.output<S>> : never

export type Decoded<D extends AnyDef> =
  | { readonly _tag: "Ok"; readonly envelope: EnvelopeOf<D> }
  | { readonly _tag: "Malformed"; readonly malformed: Malformed }

const describe = (error: z.ZodError) =>
  error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)
    .join("; ")

const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * A set of message types that may arrive on one subject space. `decode` never throws: any payload
 * (not JSON, wrong envelope, unknown type, invalid body) becomes a `Malformed` value with a reason.
 */
export const registry = <const Defs extends ReadonlyArray<AnyDef>>(...defs: Defs) => {
  const byType = new Map<string, AnyDef>(defs.map((def) => [def.type, def]))
  const decode = (data: Uint8Array): Decoded<Defs[number]> => {
    let json: unknown
    try {
      json = JSON.parse(textDecoder.decode(data))
    } catch {
      return { _tag: "Malformed", malformed: { reason: "not-json", message: "payload is not UTF-8 JSON" } }
    }
    const base = EnvelopeBase.safeParse(json)
    if (!base.success) {
      return { _tag: "Malformed", malformed: { reason: "bad-envelope", message: describe(base.error) } }
    }
    const def = byType.get(base.data.type)
    if (def === undefined) {
      return { _tag: "Malformed", malformed: { reason: "unknown-type", message: `unknown type ${base.data.type}` } }
    }
    const body = def.body.safeParse(base.data.body)
    if (!body.success) {
      return { _tag: "Malformed", malformed: { reason: "bad-body", message: `${def.type}: ${describe(body.error)}` } }
    }
    return { _tag: "Ok", envelope: { ...base.data, body: body.data } as EnvelopeOf<Defs[number]> }
  }
  return { defs, byType, decode }
}
export type Registry<Defs extends ReadonlyArray<AnyDef> = ReadonlyArray<AnyDef>> = ReturnType<typeof registry<Defs>>

/**
 * `schema.safeParse` of `text` read as JSON: text that is not JSON is refused as any value the schema refuses
 * (a file or token a reader keeps only when it is whole).
 */
export const safeParseJson = <S extends z.ZodType>(schema: S, text: string) => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return schema.safeParse(json) as z.ZodSafeParseResult<z.output<S>>
}

const textEncoder = new TextEncoder()
export const encode = (envelope: Envelope): Uint8Array => textEncoder.encode(JSON.stringify(envelope))
