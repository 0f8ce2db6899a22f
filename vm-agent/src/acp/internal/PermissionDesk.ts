import { randomBytes } from "node:crypto"
import type { PermissionOption, RequestPermissionRequest, RequestPermissionResponse } from "@agentclientprotocol/sdk"
import type { SessionEventBody } from "../SessionEvent.js"

/** Picks the first option that allows, else the first option. */
export const autoApprove = (options: ReadonlyArray<PermissionOption>): string | undefined =>
  (options.find((option) => option.kind === "allow_once" || option.kind === "allow_always") ?? options[0])?.optionId

/**
 * Holds the agent's pending permission requests until they are answered, or cancelled with the turn.
 * Request ids are `perm_<desk>_<n>`: `<desk>` is new for every desk (every session host, so every
 * vm-agent run), so an answer held across a restart can never answer a later request by its number.
 */
export class PermissionDesk {
  private next = 0
  private readonly desk = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`
  private readonly pending = new Map<string, (optionId: string) => void>()

  constructor(
    private readonly emit: (event: SessionEventBody) => void,
    private readonly decide: ((options: ReadonlyArray<PermissionOption>) => string | undefined) | undefined
  ) {}

  ask(request: RequestPermissionRequest): Promise<RequestPermissionResponse> {
    const requestId = `perm_${this.desk}_${++this.next}`
    this.emit({
      type: "permission-requested",
      requestId,
      toolCallId: request.toolCall.toolCallId,
      title: request.toolCall.title ?? null,
      options: request.options
    })
    return new Promise((resolve) => {
      this.pending.set(requestId, (optionId) => {
        this.emit({ type: "permission-resolved", requestId, outcome: optionId })
        resolve({ outcome: optionId === "cancelled" ? { outcome: "cancelled" } : { outcome: "selected", optionId } })
      })
      const decided = this.decide?.(request.options)
      if (decided !== undefined) this.answer(requestId, decided)
    })
  }

  answer(requestId: string, optionId: string): boolean {
    const resolve = this.pending.get(requestId)
    if (!resolve) return false
    this.pending.delete(requestId)
    resolve(optionId)
    return true
  }

  /** ACP: on cancel the client answers every pending permission request with `cancelled`. */
  cancelAll(): void {
    for (const requestId of [...this.pending.keys()]) this.answer(requestId, "cancelled")
  }
}
