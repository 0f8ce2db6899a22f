import { defineMessage, Subjects } from "@sam/bus"
import { z } from "zod"
import type { Outgoing } from "../ActorKind.js"

/**
 * A report that names an entity the ledger does not place on the reporting node is dropped: it
 * changes nothing, and this event (on `sam.evt.system.node.<nodeId>.report.dropped`) records it.
 */
export const ReportDropped = defineMessage(
  "report.dropped",
  z.object({ nodeId: z.string(), kind: z.string(), entityId: z.string(), reportType: z.string(), reason: z.string() }),
  { durable: true }
)

export const dropped = (body: z.input<typeof ReportDropped.body>): Outgoing => ({
  subject: Subjects.event("system", "node", body.nodeId, ReportDropped.type),
  envelope: ReportDropped.make(body)
})
