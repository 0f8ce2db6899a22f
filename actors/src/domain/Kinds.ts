import { Domain } from "@sam/bus"

/** The domain kinds' refs live with the contract (bus), so senders outside the actors need not import them. */
export const { HEARTBEAT_FRESH_SECONDS, KindRefs, NodeRef, ProjectRef, SessionRef, TaskRef, WorkspaceRef } = Domain
