import { createCurve, fromCurveSeed } from "@nats-io/nkeys"
import { safeParseJson } from "../Envelope.js"
import { AgentLaunch, type SealedLaunch } from "./AgentLaunchSchema.js"

// The schemas without the sealing (its curve keys), for what only reads them: the API's contract (issue 12).
export { AgentLaunch, NodeXkey, SealedLaunch } from "./AgentLaunchSchema.js"

/** Seal `launch` for the node whose public xkey is `recipient`, with a key pair made for this message only. */
export const sealLaunch = (launch: AgentLaunch, recipient: string): SealedLaunch => {
  const sender = createCurve()
  const box = sender.seal(new TextEncoder().encode(JSON.stringify(launch)), recipient)
  return { sender: sender.getPublicKey(), box: Buffer.from(box).toString("base64") }
}

/** Open a sealed launch with the node's curve seed; undefined when it was not sealed for this key or is malformed. */
export const openLaunch = (sealed: SealedLaunch, seed: Uint8Array): AgentLaunch | undefined => {
  const opened = fromCurveSeed(seed).open(Buffer.from(sealed.box, "base64"), sealed.sender)
  if (opened === null) return undefined
  const parsed = safeParseJson(AgentLaunch, new TextDecoder().decode(opened))
  return parsed.success ? parsed.data : undefined
}

/** A new curve key pair for a node: its seed (kept 0600 in its data directory) and public key. */
export const newNodeCurve = () => {
  const kp = createCurve()
  return { seed: kp.getSeed(), publicKey: kp.getPublicKey() }
}

export const nodeCurvePublicKey = (seed: Uint8Array) => fromCurveSeed(seed).getPublicKey()
