import { Domain, Subjects } from "@sam/bus"
import type { z } from "zod"
import type { Outgoing } from "../ActorKind.js"

const { ReportDropped } = Domain

export { ReportDropped }

export const dropped = (body: z.input<typeof ReportDropped.body>): Outgoing => ({
  subject: Subjects.event("system", "node", body.nodeId, ReportDropped.type),
  envelope: ReportDropped.make(body)
})
