import { Domain, registry } from "@sam/bus"

/**
 * The domain events the feed forwards. Anything else on `sam.evt.>` (provisioning requests,
 * dropped-report audits) is internal and never reaches a client.
 */
export const forwarded = registry(
  ...Domain.SessionEvents.sessionEvents.defs,
  Domain.TaskStatusEvent,
  Domain.WorkspaceEvent,
  Domain.WorkspaceBootLogEvent,
  Domain.ProjectCreated,
  Domain.ProjectMemberAdded,
  Domain.ProjectMemberRemoved,
  Domain.NodeStatusEvent,
  Domain.NodeBootLogEvent,
  Domain.Notifications.NotificationCreated,
  Domain.Notifications.PullRequestOpened
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
