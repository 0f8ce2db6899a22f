/**
 * The one registry of the domain kinds' names and shard counts: each kind takes its own from here, and
 * every sender addresses a kind through its ref (no import cycles). A count is fixed for the life of a
 * kind: changing it moves entities to other shards. A command on a shard other than its entity's is
 * dead-lettered `wrong-shard` by the runtime.
 */
export const ProjectRef = { name: "project", shards: 4 } as const
export const TaskRef = { name: "task", shards: 8 } as const
export const NodeRef = { name: "node", shards: 4 } as const
export const WorkspaceRef = { name: "workspace", shards: 8 } as const
export const SessionRef = { name: "session", shards: 8 } as const
export const KindRefs: ReadonlyArray<{ readonly name: string; readonly shards: number }> = [
  ProjectRef,
  TaskRef,
  NodeRef,
  WorkspaceRef,
  SessionRef
]

/** A node is ready for work when its agent reported ready and its last heartbeat is this fresh. */
export const HEARTBEAT_FRESH_SECONDS = 30
