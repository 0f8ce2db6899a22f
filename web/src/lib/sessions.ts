import type * as Api from "@sam/bus/api"
import { z } from "zod"

type Session = Api.Session

export type Attention = "needs_input" | "failed" | "working" | "idle" | "sleeping" | "completed" | "stopped"

export const TERMINAL = new Set(["completed", "failed", "cancelled"])

const Opened = z.object({
  taskId: z.string().regex(/^task_[0-9a-z]{1,64}$/),
  sessionId: z.string().regex(/^sess_[0-9a-z]{1,64}$/)
})

/** The task and its session a feed frame says opened (`session.opened` of the project), or null. */
export const openedSession = (frame: Api.ServerFrame, projectId: string) => {
  if (frame.type !== "event" || frame.eventType !== "session.opened" || frame.projectId !== projectId) return null
  const parsed = Opened.safeParse(frame.body)
  return parsed.success ? parsed.data : null
}

/** Whether a session's snapshot says its agent is at work (a turn in progress, or being recovered). */
export const isWorking = (snapshot: Session["snapshot"]) =>
  snapshot?.activity === "prompting" || snapshot?.activity === "recovering"

/**
 * The sidebar's status, in precedence order: needs input › failed › working › idle › sleeping ›
 * completed › stopped. A session whose task has ended is never working, whatever its snapshot says, nor
 * sleeping: no follow-up wakes it (its transcript is final), so it shows how its task ended.
 */
export const attentionOf = (s: Session): Attention => {
  const taskEnded = s.taskStatus !== null && TERMINAL.has(s.taskStatus)
  if (!taskEnded && (s.snapshot?.permissions?.length ?? 0) > 0) return "needs_input"
  if (s.status === "failed" || s.taskStatus === "failed") return "failed"
  const working = isWorking(s.snapshot)
  if (!taskEnded && s.status === "active" && working) return "working"
  if (!taskEnded && s.status === "active") return "idle"
  if (!taskEnded && s.status === "sleeping") return "sleeping"
  if (s.taskStatus === "completed") return "completed"
  return "stopped"
}

export const ATTENTION_LABEL: Record<Attention, string> = {
  needs_input: "Needs input",
  failed: "Failed",
  working: "Working",
  idle: "Idle",
  sleeping: "Sleeping",
  completed: "Completed",
  stopped: "Stopped"
}

/** The first line of the prompt that started the session, or `Chat <id8>`. */
export const titleOf = (sessionId: string, prompt: string | undefined) => {
  const line = (prompt ?? "").split("\n").find((l) => l.trim() !== "")
  return line === undefined ? `Chat ${sessionId.slice(-8)}` : line.length > 80 ? `${line.slice(0, 79)}…` : line
}

export const relativeTime = (iso: string, now = Date.now()) => {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (seconds < 45) return "just now"
  const minutes = Math.round(seconds / 60)
  if (minutes < 60) return `${minutes}m ago`
  const hours = Math.round(minutes / 60)
  if (hours < 24) return `${hours}h ago`
  return `${Math.round(hours / 24)}d ago`
}

export const elapsed = (fromIso: string | null | undefined, now = Date.now()) => {
  if (!fromIso) return ""
  const total = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000))
  const m = Math.floor(total / 60)
  const s = total % 60
  return m > 0 ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`
}

/** The execution steps grouped into the indicator's three stages. */
export const STAGES = [
  { name: "Machine", steps: ["node_selection", "waiting_for_node_capacity", "node_provisioning", "node_agent_ready"] },
  { name: "Repository", steps: ["workspace_creation", "workspace_dispatch", "workspace_ready"] },
  { name: "Agent", steps: ["agent_session"] }
] as const

export const STEP_LABEL: Record<string, string> = {
  node_selection: "Finding a machine…",
  waiting_for_node_capacity: "Waiting for machine capacity…",
  node_provisioning: "Starting a machine…",
  node_agent_ready: "Waiting for the machine's agent…",
  workspace_creation: "Creating the workspace…",
  workspace_dispatch: "Cloning the repository…",
  workspace_ready: "Workspace ready…",
  agent_session: "Starting the AI agent…",
  running: "Running",
  awaiting_followup: "Waiting for your follow-up"
}

export const stageIndex = (step: string | null) => {
  if (step === null) return 0
  const i = STAGES.findIndex((stage) => (stage.steps as ReadonlyArray<string>).includes(step))
  return i === -1 ? STAGES.length : i
}
