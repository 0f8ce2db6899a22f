/** Names and shard counts of the domain kinds, for addressing one from another without import cycles. */
export const ProjectRef = { name: "project", shards: 4 } as const
export const TaskRef = { name: "task", shards: 8 } as const
export const NodeRef = { name: "node", shards: 4 } as const
export const WorkspaceRef = { name: "workspace", shards: 8 } as const
export const SessionRef = { name: "session", shards: 8 } as const

/** A node is ready for work when its agent reported ready and its last heartbeat is this fresh. */
export const HEARTBEAT_FRESH_SECONDS = 30
