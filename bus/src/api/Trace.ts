import { z } from "zod"
import { TaskId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"

/**
 * One message followed from end to end (issue 12): the hops of the requests that drove a task (its
 * submit, follow-ups, cancels), each the commands one actor applied for that request, with when.
 */
export const TraceHop = z.object({
  /** the actor kind and entity that applied the commands: `task`/`task_…`, `session`/`sess_…` */
  kind: z.string(),
  entityId: z.string(),
  /** the command type (`session.report` for what the agent's node reported) */
  type: z.string(),
  /** how many such commands this entity applied for the request */
  count: z.number().int().positive(),
  /** when the first and the last were applied, in ms after the request's first hop */
  firstMs: z.number().int().nonnegative(),
  lastMs: z.number().int().nonnegative()
})
export const TraceRequest = z.object({
  /** the request's id: the `X-Request-Id` of the HTTP request (or the NATS request's `requestId`) */
  correlationId: z.string(),
  /** when its first hop was applied */
  at: z.iso.datetime(),
  hops: z.array(TraceHop)
})
export const TaskTrace = z.object({ taskId: TaskId, requests: z.array(TraceRequest) })
export type TaskTrace = z.infer<typeof TaskTrace>

export const TraceEndpoints = {
  getTaskTrace: endpoint({
    method: "GET",
    path: "/tasks/:taskId/trace",
    summary: "The hops of the requests that drove a task, with their timings (sam task trace)",
    tag: "tasks",
    params: z.object({ taskId: TaskId }),
    response: TaskTrace
  })
}
