import { z } from "zod"
import { ExecutionStep } from "./States.js"

/**
 * The session-state snapshot in KV `sam_session_state`, one key per session id (design §6, §7).
 * Written with compare-and-set by the session actor; `updatedAt` and `promptEpoch` let a writer
 * refuse an older report.
 */
export const Activity = z.enum(["idle", "prompting", "recovering", "error", "stopped"])
export type Activity = z.infer<typeof Activity>

export const PlanEntry = z.object({
  content: z.string().max(2000),
  status: z.enum(["pending", "in_progress", "completed"]),
  priority: z.enum(["high", "medium", "low"]).optional()
})

export const SessionSnapshot = z.object({
  activity: Activity,
  promptStartedAt: z.iso.datetime().nullable(),
  promptEpoch: z.number().int().nonnegative(),
  plan: z.array(PlanEntry).max(200).nullable(),
  source: z.enum(["vm_report", "control_plane", "healer"]),
  reason: z.enum(["completed", "cancelled", "force_stopped", "dead", "stale_no_evidence", "failed"]).nullable(),
  lastSeq: z.number().int().nonnegative(),
  step: ExecutionStep.nullable().optional(),
  updatedAt: z.iso.datetime()
})
export type SessionSnapshot = z.infer<typeof SessionSnapshot>

export const WORKING_ACTIVITIES: ReadonlySet<Activity> = new Set(["prompting", "recovering"])

/** True when `next` may replace `current`: newer prompt epoch, or same epoch and not older. */
export const supersedes = (current: SessionSnapshot, next: SessionSnapshot): boolean =>
  next.promptEpoch > current.promptEpoch ||
  (next.promptEpoch === current.promptEpoch && Date.parse(next.updatedAt) >= Date.parse(current.updatedAt))
