import { ControlPlane } from "@sam/actors"
import { Domain, defineMessage, NotificationId, registry, UserId } from "@sam/bus"
import { z } from "zod"

/**
 * A notification for one user (published by the notifications reactor). Only what routing needs
 * is checked; the rest of the notification passes through as it was published.
 */
export const NotificationCreated = defineMessage(
  "notification.created",
  z.object({ notification: z.looseObject({ id: NotificationId, userId: UserId }) }),
  { durable: true }
)

/**
 * The domain events the feed forwards. Anything else on `sam.evt.>` (provisioning requests,
 * dropped-report audits) is internal and never reaches a client.
 */
export const forwarded = registry(
  ...Domain.SessionEvents.sessionEvents.defs,
  ControlPlane.TaskStatusEvent,
  ControlPlane.WorkspaceEvent,
  ControlPlane.WorkspaceBootLogEvent,
  ControlPlane.ProjectCreated,
  ControlPlane.NodeStatusEvent,
  NotificationCreated
)

export type Forwarded = NonNullable<Extract<ReturnType<typeof forwarded.decode>, { _tag: "Ok" }>["envelope"]>

/** `sam.evt.<projectId>.<kind>.<id>.<type>`, split; undefined for anything else. */
export const parseSubject = (subject: string) => {
  const tokens = subject.split(".")
  if (tokens.length < 6 || tokens[0] !== "sam" || tokens[1] !== "evt") return undefined
  return {
    project: tokens[2] as string,
    kind: tokens[3] as string,
    id: tokens[4] as string,
    type: tokens.slice(5).join(".")
  }
}
export type EventSubject = NonNullable<ReturnType<typeof parseSubject>>

export const SYSTEM = "system"
