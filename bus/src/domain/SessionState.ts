import { z } from "zod"
import { ExecutionStep } from "./States.js"

/**
 * The session-state snapshot in KV `sam_session_state`, one key per session id (design §6, §7).
 * Written with compare-and-set by the session actor; `updatedAt` and `promptEpoch` let a writer
 * refuse an older report.
 */
/** `sleeping`: the session's task completed and its agent process was stopped to give its memory back (ADR 0023) */
export const Activity = z.enum(["idle", "prompting", "recovering", "error", "stopped", "sleeping"])
export type Activity = z.infer<typeof Activity>

export const PlanEntry = z.object({
  content: z.string().max(2000),
  status: z.enum(["pending", "in_progress", "completed"]),
  priority: z.enum(["high", "medium", "low"]).optional()
})

/**
 * A permission request of the agent that waits for an answer (ADR 0018): answer it with
 * `POST /sessions/:sessionId/permissions/:requestId`. It leaves the snapshot when answered (by a
 * user, the project's policy or its timeout) or when the turn ends.
 */
export const PendingPermission = z.object({
  requestId: z.string().min(1).max(128),
  title: z.string().max(2000).nullable(),
  toolCallId: z.string().max(256).nullable(),
  options: z
    .array(z.object({ optionId: z.string().max(256), name: z.string().max(2000), kind: z.string().max(64) }))
    .max(20),
  promptEpoch: z.number().int().nonnegative(),
  requestedAt: z.iso.datetime(),
  /** when the project's policy answers it if nobody has */
  expiresAt: z.iso.datetime()
})
export type PendingPermission = z.infer<typeof PendingPermission>

/**
 * The stop reasons of a turn that ended short of its work: cancelled, or its agent at a limit or refusing (ACP's).
 * Such a turn leaves its session waiting for a follow-up, and its snapshot's `reason` is the stop reason.
 */
export const ENDED_SHORT = ["cancelled", "max_tokens", "max_turn_requests", "refusal"] as const
export type EndedShort = (typeof ENDED_SHORT)[number]
/** `stopReason` when it is one of `ENDED_SHORT`, otherwise undefined. */
export const endedShort = (stopReason: string | undefined): EndedShort | undefined =>
  ENDED_SHORT.find((reason) => reason === stopReason)

export const SessionSnapshot = z.object({
  activity: Activity,
  promptStartedAt: z.iso.datetime().nullable(),
  promptEpoch: z.number().int().nonnegative(),
  plan: z.array(PlanEntry).max(200).nullable(),
  source: z.enum(["vm_report", "control_plane", "healer"]),
  /**
   * How the last turn or the session ended. `lost`: the turn in flight was lost (its node restarted, or went silent
   * past the healer's bound; ADR 0021). `max_tokens`, `max_turn_requests`, `refusal`: the agent ended its turn short
   * of its work, at a limit or refusing (ACP's stop reasons), and the session waits for a follow-up.
   */
  reason: z
    .enum(["completed", ...ENDED_SHORT, "force_stopped", "dead", "stale_no_evidence", "failed", "lost"])
    .nullable(),
  lastSeq: z.number().int().nonnegative(),
  step: ExecutionStep.nullable().optional(),
  /** the agent's permission requests waiting for an answer (absent: none) */
  permissions: z.array(PendingPermission).max(20).optional(),
  updatedAt: z.iso.datetime()
})
export type SessionSnapshot = z.infer<typeof SessionSnapshot>

export const WORKING_ACTIVITIES: ReadonlySet<Activity> = new Set(["prompting", "recovering"])

/** What the snapshot of a session whose row has ended says (the control plane writes it), by the row's status. */
export const ENDED_SNAPSHOT = {
  sleeping: { activity: "sleeping", reason: "completed" },
  stopped: { activity: "stopped", reason: "force_stopped" },
  failed: { activity: "error", reason: "failed" }
} as const satisfies Record<string, { readonly activity: Activity; readonly reason: SessionSnapshot["reason"] }>

/** True when `next` may replace `current`: newer prompt epoch, or same epoch and not older. */
export const supersedes = (current: SessionSnapshot, next: SessionSnapshot): boolean =>
  next.promptEpoch > current.promptEpoch ||
  (next.promptEpoch === current.promptEpoch && Date.parse(next.updatedAt) >= Date.parse(current.updatedAt))
