import { z } from "zod"
import { TaskId, WorkspaceId } from "../Ids.js"

/**
 * What an actor answers an `ask` with (issue 12): a refusal, or the command's own reply. The actors type their
 * replies with these, and an asker decodes the answer with the reply schema of what it asked, so neither side
 * casts a reply.
 */

/** A refusal: data with a code a caller can act on and a message a user can read. */
export const Refusal = z.object({ ok: z.literal(false), code: z.string(), message: z.string().optional() })
export type Refusal = z.output<typeof Refusal>

/** A command applied, or one already applied (`duplicate`), with nothing more to say. */
export const Applied = z.object({ ok: z.literal(true), duplicate: z.boolean().optional() })

/** `task.submit`: the task that now exists. */
export const TaskSubmitted = Applied.extend({ taskId: TaskId })

/** The session actor's answers: a prompt's epoch, a cancel's outcome, a permission answer's option. */
export const SessionApplied = Applied.extend({
  promptEpoch: z.number().optional(),
  /** for a cancel: `idle` when no turn was in flight */
  status: z.enum(["idle", "cancelling"]).optional(),
  /** for a permission answer: the option given */
  outcome: z.string().optional()
})
export const SessionRefusal = Refusal.extend({
  message: z.string(),
  code: z.enum([
    "not_found",
    "session_failed",
    "session_stopped",
    "session_sleeping",
    "invalid_transition",
    "dropped",
    "permission_not_pending",
    "unknown_option"
  ])
})
export const SessionReply = z.union([SessionApplied, SessionRefusal])
export type SessionReply = z.output<typeof SessionReply>

/** A node stop or delete: the workspaces it told to stop (or to be deleted). */
export const NodeChanged = Applied.extend({ workspaces: z.array(WorkspaceId) })
