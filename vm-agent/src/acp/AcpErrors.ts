import { Data } from "effect"

/** The agent process could not be started, or did not complete `initialize` / `session/new|load`. */
export class AgentStartError extends Data.TaggedError("AgentStartError")<{
  readonly reason: "spawn" | "initialize" | "session"
  readonly message: string
  /** the runtime failed for a reason that may pass (I/O, the Docker engine): worth another try */
  readonly transient?: boolean
  /** the agent answered the request with a JSON-RPC error (it runs, and refused), rather than exiting or not answering */
  readonly refused?: boolean
}> {}

/** The agent exited while a prompt was in flight; the host restarts it within its budget. */
export class AgentCrashed extends Data.TaggedError("AgentCrashed")<{
  readonly exitCode: number | null
  readonly signal: string | null
  readonly message: string
}> {}

/** The session cannot take a prompt now: one is running, or the session has failed or stopped. */
export class PromptRejected extends Data.TaggedError("PromptRejected")<{
  readonly reason: "busy" | "failed" | "stopped"
  readonly message: string
}> {}

/** The agent answered the prompt with a JSON-RPC error while staying alive. */
export class AgentProtocolError extends Data.TaggedError("AgentProtocolError")<{
  readonly message: string
  readonly code?: number
}> {}

export type PromptError = AgentCrashed | PromptRejected | AgentProtocolError
