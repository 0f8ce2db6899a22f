import { SqlClient } from "@effect/sql"
import { Domain, makeId, NodeId, type SessionId, TaskId, type WorkspaceId } from "@sam/bus"
import { StoredText } from "@sam/sql"
import { Effect } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { dropped } from "./Audit.js"
import { HEARTBEAT_FRESH_SECONDS, NodeRef, SessionRef, TaskRef, WorkspaceRef } from "./Kinds.js"

const { ControlProtocol: C, advanceStep, taskTransition, TERMINAL_TASK_STATUSES } = Domain
type Step = Domain.ExecutionStep
type Status = Domain.TaskStatus

export const TaskStatusEvent = Domain.TaskStatusEvent

/** How long a task may wait in a step before it fails; `SAM_TASK_STEP_TIMEOUT_MS` overrides (tests). */
export const stepTimeoutMs = () => Number(process.env.SAM_TASK_STEP_TIMEOUT_MS ?? 120_000)

type Row = Domain.Rows.TaskRow
const decodeTasks = Domain.Rows.decodeRows(Domain.Rows.TaskRow, "task")
const decodeCandidates = Domain.Rows.decodeRows(z.object({ nodeId: NodeId, ready: z.boolean() }), "node candidate")
interface State {
  readonly task: Row | null
  /** the best of the submitter's nodes for new work: a ready one first, else one being provisioned; from `load` */
  readonly candidate: { readonly nodeId: NodeId; readonly ready: boolean } | null
  /** the machine the task's profile asks for (ADR 0026); local when it names none */
  readonly machine?: Domain.ControlProtocol.NodeMachine
  /** for a step timeout while its node is provisioned: why the provider could not make it, if it said */
  readonly nodeError?: string
  readonly transitions: ReadonlyArray<{ readonly from: Status | null; readonly to: Status; readonly reason: string }>
  /** for `task.submit`: whether its submitter is a member of its project, read with the project row shared */
  readonly submitterIsMember?: boolean
}
type Reaction = Actor.Reaction<State>

const statusEvent = (t: Row, reason?: string) =>
  Actor.event(
    t.projectId,
    "task",
    t.id,
    TaskStatusEvent.make({
      taskId: t.id,
      status: t.status,
      step: t.executionStep,
      errorStep: t.errorStep,
      errorReason: t.errorReason,
      nodeId: t.nodeId,
      workspaceId: t.workspaceId,
      sessionId: t.sessionId,
      branch: t.branch,
      ...(reason === undefined ? {} : { reason })
    })
  )

/** A step that times out is retried this many times, each wait twice the last, before the task fails. */
export const STEP_RETRIES = 2

const stepTimer = (t: Row, step: Step, attempt = 0) =>
  Actor.Timer.set("step", stepTimeoutMs() * 2 ** attempt, C.TaskStepTimeout.make({ taskId: t.id, step, attempt }))

const withStatus = (state: State, task: Row, to: Status, reason: string): State | undefined => {
  const t = taskTransition(task.status, to)
  if (t._tag === "Refused") return undefined
  return {
    ...state,
    task: { ...task, status: to },
    transitions: t._tag === "Allowed" ? [...state.transitions, { from: task.status, to, reason }] : state.transitions
  }
}

/** The refusal of an illegal move, naming the allowed ones. */
const refusal = (from: Status, to: Status) => {
  const t = taskTransition(from, to)
  return t._tag === "Refused" ? t.message : `the task is already ${from}`
}

const step = (task: Row, next: Step): Row => ({ ...task, executionStep: advanceStep(task.executionStep, next) })

/**
 * Fail the task with the step and reason, fail its session with it (recording one, failed, when the
 * task never got as far as opening it), and stop its timer.
 */
const fail = (state: State, task: Row, reason: string): Reaction => {
  const sessionId = task.sessionId ?? (task.workspaceId === null ? null : makeId("sess"))
  const failed = withStatus(
    state,
    { ...task, sessionId, errorStep: task.executionStep, errorReason: reason },
    "failed",
    reason
  )
  if (failed === undefined || failed.task === null) return { state }
  const unopened =
    task.sessionId === null && task.workspaceId !== null
      ? {
          unopened: {
            projectId: task.projectId,
            taskId: task.id,
            workspaceId: task.workspaceId,
            nodeId: task.nodeId,
            agent: task.agent,
            mode: task.mode
          }
        }
      : {}
  return {
    state: failed,
    events: [statusEvent(failed.task)],
    timers: [Actor.Timer.cancel("step")],
    send:
      sessionId === null
        ? []
        : [Actor.to(SessionRef, sessionId, C.SessionFail.make({ sessionId: sessionId, reason, ...unopened }))]
  }
}

/** Wait before placing again: 1 s, doubling, at most 10 s; `SAM_TASK_CAPACITY_RETRY_MS` sets the first. */
const capacityBackoffMs = (attempt: number) =>
  Math.min(Number(process.env.SAM_TASK_CAPACITY_RETRY_MS ?? 1000) * 2 ** attempt, 10_000)

/**
 * Ask for a slot (ADR 0022): on the best of the submitter's nodes with room, else on a new node the
 * node actor creates for the submitter if the node caps allow. The workspace id is the task's while
 * the answer is on its way; the node comes with the grant.
 */
const placeOnNode = (state: State, task: Row, attempt = 0): Reaction => {
  const workspaceId = makeId("ws")
  const candidate = state.candidate
  const nodeId = candidate?.nodeId ?? makeId("node")
  const asking: Row = { ...task, nodeId: null, workspaceId, sessionId: null }
  return {
    state: { ...state, task: asking },
    send: [
      Actor.to(
        NodeRef,
        nodeId,
        C.NodeReserve.make({
          nodeId: nodeId,
          taskId: task.id,
          workspaceId,
          projectId: task.projectId,
          ownerId: task.createdBy,
          create: candidate === null,
          attempt,
          ...(state.machine === undefined ? {} : { machine: state.machine })
        })
      )
    ],
    events: [statusEvent(asking)],
    timers: [Actor.Timer.cancel("step")]
  }
}

const openSession = (task: Row, sessionId: SessionId, workspaceId: WorkspaceId, nodeId: NodeId) =>
  Actor.to(
    SessionRef,
    sessionId,
    C.SessionOpen.make({
      sessionId,
      projectId: task.projectId,
      taskId: task.id,
      workspaceId,
      nodeId,
      agent: task.agent,
      mode: task.mode,
      prompt: task.prompt
    })
  )

/**
 * The workspace is dispatched to its ready node and the task's session opened in the same step: the node
 * gets the session's start while it creates the workspace and starts the agent the moment the workspace
 * runs, instead of after the workspace's `running` has gone through the workspace, task and session
 * actors (issue 12: three transactions and their relays off the first output's path).
 */
const dispatch = (state: State, task: Row, nodeId: NodeId, workspaceId: WorkspaceId, reason: string): Reaction => {
  const sessionId = task.sessionId ?? makeId("sess")
  const moved = withStatus(state, { ...step(task, "workspace_dispatch"), nodeId, sessionId }, "delegated", reason)
  if (moved === undefined || moved.task === null) return { state }
  const next = moved.task
  return {
    state: moved,
    send: [
      Actor.to(WorkspaceRef, workspaceId, C.WorkspaceDispatch.make({ workspaceId, via: "task" })),
      ...(task.sessionId !== null ? [] : [openSession(task, sessionId, workspaceId, nodeId)])
    ],
    events: [statusEvent(next)],
    timers: [stepTimer(next, "workspace_dispatch")]
  }
}

/** The node granted the slot: a ready node gets the workspace at once; otherwise wait for it to be ready. */
const placed = (state: State, task: Row, nodeId: NodeId, ready: boolean): Reaction => {
  const on: Row = { ...task, nodeId }
  const workspaceId = task.workspaceId
  if (workspaceId === null) return fail(state, task, "a node slot was granted for no workspace")
  if (ready) return dispatch(state, on, nodeId, workspaceId, "workspace dispatched")
  const waiting = step(on, "node_provisioning")
  return {
    state: { ...state, task: waiting },
    events: [statusEvent(waiting)],
    timers: [stepTimer(waiting, "node_provisioning")]
  }
}

/**
 * A task that ended tells its workspace, which gives its node slot back once it is stopped or deleted
 * (ADR 0022, 0023): at once when it was never handed to the node, after its idle timeout otherwise.
 */
const releaseOnEnd = (before: State, reaction: Reaction): Reaction => {
  const was = before.task
  const now = reaction.state.task
  if (was === null || now === null || TERMINAL_TASK_STATUSES.has(was.status) || !TERMINAL_TASK_STATUSES.has(now.status))
    return reaction
  if (now.nodeId === null || now.workspaceId === null) return reaction
  const ended = Actor.to(
    WorkspaceRef,
    now.workspaceId,
    C.WorkspaceTaskEnded.make({ workspaceId: now.workspaceId, taskId: now.id, status: now.status })
  )
  return { ...reaction, send: [...(reaction.send ?? []), ended] }
}

const TaskFlow = Actor.make({
  ...TaskRef,
  id: TaskId,
  commands: C.taskCommands.defs,
  load: (id, command) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql`
        SELECT id, project_id, created_by, prompt, agent, mode, status, execution_step, error_step, error_reason,
          node_id, workspace_id, session_id, branch, commit_sha FROM tasks WHERE id = ${id} FOR UPDATE`
      const found = (yield* Effect.sync(() => decodeTasks(rows)))[0]
      const task = found === undefined ? null : { ...found, prompt: StoredText.decode(found.prompt) }
      // A node belongs to one user (design §9): a task goes only on a node of the user who submitted it.
      const submitter = task?.createdBy ?? (command.type === "task.submit" ? command.body.userId : undefined)
      const places =
        command.type === "task.submit" ||
        command.type === "task.retry" ||
        command.type === "task.place" ||
        command.type === "task.node-full"
      // The task's profile may ask for a cloud node (ADR 0026): it goes only on a node of that provider.
      // Without one it goes on a ready machine its submitter joined (ADR 0027), else a local node.
      const wishes = places
        ? yield* sql<{ nodeProvider: "local" | "hetzner" | null; vmSize: string | null; vmLocation: string | null }>`
            SELECT p.node_provider, p.vm_size, p.vm_location
            FROM task_agent_profiles tp JOIN agent_profiles p ON p.id = tp.profile_id WHERE tp.task_id = ${id}`
        : []
      const wish = wishes[0]
      const machine: Domain.ControlProtocol.NodeMachine = C.NodeMachine.parse({
        provider: wish?.nodeProvider ?? "local",
        ...(wish?.nodeProvider === "hetzner"
          ? {
              ...(wish.vmSize === null ? {} : { size: wish.vmSize }),
              sizeExplicit: wish.vmSize !== null,
              ...(wish.vmLocation === null ? {} : { location: wish.vmLocation })
            }
          : {})
      })
      // A node with a free slot, else a ready one whose slot is held by idle work: a workspace whose task ended
      // and that has no active session, which the node actor stops at once when asked (ADR 0023); its
      // released slot wakes this task. Idle work never makes a new node (on a cloud, a new machine).
      const candidates =
        submitter === undefined || !places
          ? []
          : yield* sql`
        WITH live AS (
          SELECT n.id, n.provider, n.created_at, n.max_workspaces,
            (n.agent_ready_at IS NOT NULL AND n.last_heartbeat_at > now() - make_interval(secs => ${HEARTBEAT_FRESH_SECONDS})) AS ready
          FROM nodes n
          WHERE n.owner_id = ${submitter} AND n.status IN ('provisioning', 'running', 'warm')
            AND n.provider IN (${machine.provider}, ${machine.provider === "local" ? "joined" : machine.provider})),
        slots AS (
          SELECT l.*, count(r.workspace_id) AS taken,
            count(r.workspace_id) FILTER (WHERE t.status IN ('completed', 'failed', 'cancelled')
              AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.workspace_id = r.workspace_id AND s.status = 'active')) AS idle
          FROM live l LEFT JOIN node_reservations r ON r.node_id = l.id LEFT JOIN tasks t ON t.id = r.task_id
          GROUP BY l.id, l.provider, l.created_at, l.max_workspaces, l.ready)
        SELECT id AS node_id, ready FROM slots
        WHERE (provider <> 'joined' OR ready)
          AND (taken < max_workspaces OR (ready AND taken - idle < max_workspaces))
        ORDER BY ready DESC, taken < max_workspaces DESC, (provider = 'joined') DESC, created_at LIMIT 1`.pipe(
              Effect.map(decodeCandidates)
            )
      // A member removed while their submit was on its way (the gateway checked before): the project row, shared
      // here and taken by a removal (ProjectActor.ts), orders the two, so the task is either refused here or
      // there to be cancelled by the removal.
      const membership =
        command.type === "task.submit" && task === null
          ? yield* sql<{ member: boolean }>`
              SELECT EXISTS (
                  SELECT 1 FROM project_members m WHERE m.project_id = p.id AND m.user_id = ${command.body.userId}
                ) AS member
              FROM projects p WHERE p.id = ${command.body.projectId} FOR SHARE OF p`
          : undefined
      const nodeErrors =
        command.type === "task.step-timeout" && command.body.step === "node_provisioning" && task?.nodeId
          ? yield* sql<{ errorReason: string | null }>`SELECT error_reason FROM nodes WHERE id = ${task.nodeId}`
          : []
      const nodeError = nodeErrors[0]?.errorReason ?? undefined
      const state: State = {
        ...(nodeError === undefined ? {} : { nodeError }),
        ...(membership === undefined ? {} : { submitterIsMember: membership[0]?.member === true }),
        task,
        candidate: candidates[0] ?? null,
        transitions: [],
        ...(machine.provider === "local" ? {} : { machine })
      }
      return state
    }),
  save: (id, state, previous) =>
    Effect.gen(function* () {
      const t = state.task
      if (t === null) return
      const sql = yield* SqlClient.SqlClient
      if (previous.task === null) {
        yield* sql`
          INSERT INTO tasks (id, project_id, created_by, prompt, agent, mode, status, execution_step, node_id, workspace_id)
          VALUES (${id}, ${t.projectId}, ${t.createdBy}, ${StoredText.encode(t.prompt)}, ${t.agent}, ${t.mode}, ${t.status}, ${t.executionStep},
            ${t.nodeId}, ${t.workspaceId})`
      } else {
        yield* sql`
          UPDATE tasks SET status = ${t.status}, execution_step = ${t.executionStep}, error_step = ${t.errorStep},
            error_reason = ${t.errorReason}, node_id = ${t.nodeId}, workspace_id = ${t.workspaceId},
            session_id = ${t.sessionId}, branch = ${t.branch}, commit_sha = ${t.commitSha},
            finished_at = ${TERMINAL_TASK_STATUSES.has(t.status) ? new Date() : null}, updated_at = now(), version = version + 1
          WHERE id = ${id}`
      }
      for (const tr of state.transitions) {
        yield* sql`
          INSERT INTO task_status_events (task_id, from_status, to_status, actor, reason)
          VALUES (${id}, ${tr.from}, ${tr.to}, 'task-actor', ${tr.reason})`
      }
    }),
  handle: (state, command): Effect.Effect<Reaction> => {
    const task = state.task
    if (command.type === "task.submit") {
      if (task !== null) return Effect.succeed({ state, reply: { ok: true, duplicate: true } })
      const b = command.body
      if (state.submitterIsMember === false)
        return Effect.succeed({
          state,
          reply: { ok: false, code: "not_a_member", message: `${b.userId} is not a member of project ${b.projectId}` }
        })
      const created: Row = {
        id: b.taskId,
        projectId: b.projectId,
        createdBy: b.userId,
        prompt: b.prompt,
        agent: b.agent,
        mode: b.mode,
        status: "queued",
        executionStep: "node_selection",
        errorStep: null,
        errorReason: null,
        nodeId: null,
        workspaceId: null,
        sessionId: null,
        branch: null,
        commitSha: null
      }
      const placed = placeOnNode(
        { ...state, transitions: [{ from: null, to: "queued", reason: "submitted" }] },
        created
      )
      return Effect.succeed({ ...placed, reply: { ok: true, taskId: b.taskId } })
    }
    if (task === null)
      return Effect.succeed({ state, reply: { ok: false, code: "not_found", message: "no such task" } })
    const terminal = TERMINAL_TASK_STATUSES.has(task.status)
    switch (command.type) {
      case "task.node-assigned": {
        const workspaceId = task.workspaceId
        if (
          terminal ||
          workspaceId === null ||
          task.nodeId !== command.body.nodeId ||
          task.executionStep !== "node_provisioning"
        ) {
          return Effect.succeed({ state })
        }
        return Effect.succeed(dispatch(state, task, task.nodeId, workspaceId, "node ready; workspace dispatched"))
      }
      case "task.workspace-status": {
        const nodeId = task.nodeId
        if (terminal || command.body.workspaceId !== task.workspaceId || nodeId === null)
          return Effect.succeed({ state })
        if (command.body.status === "error") {
          return Effect.succeed(
            fail(state, step(task, "workspace_ready"), `workspace failed: ${command.body.reason ?? "no reason given"}`)
          )
        }
        // A workspace that runs proves its node ready. A task still queued waited for the node's readiness, which
        // the node actor handled before the task was waiting (it dispatched the workspace, and told no task): the
        // workspace's status is the evidence, and without this the task stayed queued with its agent done.
        // A task dispatched before its session was opened with the dispatch opens it now.
        const sessionId = task.sessionId ?? makeId("sess")
        const opened: Row = { ...step(task, "agent_session"), sessionId }
        if (task.sessionId !== null && opened.executionStep === task.executionStep) return Effect.succeed({ state })
        const moved =
          task.status === "queued"
            ? withStatus(state, opened, "delegated", "its workspace runs on its node")
            : { ...state, task: opened }
        if (moved === undefined || moved.task === null) return Effect.succeed({ state })
        const next = moved.task
        return Effect.succeed({
          state: moved,
          send: task.sessionId !== null ? [] : [openSession(next, sessionId, command.body.workspaceId, nodeId)],
          events: [statusEvent(next)],
          timers: [stepTimer(next, "agent_session")]
        })
      }
      case "task.session-status": {
        if (terminal || command.body.sessionId !== task.sessionId) return Effect.succeed({ state })
        if (command.body.status === "failed") {
          // The session is opened with the workspace's dispatch (issue 12), so its failure (the node refusing its
          // start, say) can come before the workspace's `running`: it is the agent session's step that failed.
          const at = step(task, "agent_session")
          return Effect.succeed(fail(state, at, `agent session failed: ${command.body.reason ?? "no reason given"}`))
        }
        if (command.body.status === "stopped") {
          // A user ended the session: that ends a conversation (completed, design §6) once its agent has run;
          // a task-mode run, or one whose agent never started, is cancelled.
          const why = `its session was stopped${command.body.reason === undefined ? "" : ` (${command.body.reason})`}`
          const ended =
            task.mode === "conversation" && task.status === "in_progress"
              ? withStatus(state, task, "completed", `conversation ended: ${why}`)
              : withStatus(state, task, "cancelled", why)
          if (ended === undefined) return Effect.succeed({ state })
          return Effect.succeed({
            state: ended,
            events: [statusEvent(ended.task!)],
            timers: [Actor.Timer.cancel("step")]
          })
        }
        if (command.body.status === "turn_ended") {
          // The node keeps the work now and reports the result; without it (a node restarted, a report lost) the
          // task would say "running" for ever: it fails once the step's last wait passes. Its end proves the agent
          // ran, as a result does.
          const ran =
            task.status === "delegated"
              ? withStatus(state, step(task, "running"), "in_progress", "agent is working")
              : { ...state, task: step(task, "running") }
          if (ran === undefined || ran.task === null) return Effect.succeed({ state })
          return Effect.succeed({
            state: ran,
            events: ran.task.status === task.status ? [] : [statusEvent(ran.task)],
            timers: [stepTimer(ran.task, "running", STEP_RETRIES)]
          })
        }
        if (command.body.status === "awaiting_followup") {
          // A turn ended (a lost one too: its node restarted): the agent ran, so a task still `delegated` is in
          // progress now, waiting for its user. Left `delegated`, its step timer (for a step it has left) would do
          // nothing, and it would say "handed to the agent" for ever.
          const next = step(task, "awaiting_followup")
          const waits =
            task.status === "delegated"
              ? withStatus(state, next, "in_progress", "its turn ended; it waits for a follow-up")
              : { ...state, task: next }
          if (waits === undefined || waits.task === null) return Effect.succeed({ state })
          return Effect.succeed({
            state: waits,
            events: [statusEvent(waits.task)],
            ...(task.status === "delegated" ? { timers: [Actor.Timer.cancel("step")] } : {})
          })
        }
        const running = withStatus(state, step(task, "running"), "in_progress", "agent is working")
        if (running === undefined) return Effect.succeed({ state })
        return Effect.succeed({
          state: running,
          events: [statusEvent(running.task!)],
          timers: [Actor.Timer.cancel("step")]
        })
      }
      case "task.result-reported": {
        const { nodeId, result } = command.body
        if (task.nodeId !== nodeId || task.sessionId !== result.sessionId) {
          return Effect.succeed({
            state,
            events: [
              dropped({
                nodeId,
                kind: "task",
                entityId: task.id,
                reportType: "task.result",
                reason: "task is not on this node"
              })
            ]
          })
        }
        if (terminal) return Effect.succeed({ state })
        // A result proves the agent ran, and it can overtake the workspace's `running` (the session opens with
        // the dispatch): a failed one is the agent session's step failing, as in `task.session-status`.
        if (result.outcome === "failed")
          return Effect.succeed(
            fail(
              state,
              step(task, "agent_session"),
              result.failedIn === "turn"
                ? `the agent's turn failed: ${result.reason ?? ""}`
                : `the agent's work could not be kept: ${result.reason ?? ""}`
            )
          )
        // A node commits a task's work to its own branch only (TaskCommit.ts): another name would have the pull
        // request opened from, and recorded for, a branch that is not this task's (another task's, say).
        if (result.outcome === "committed" && result.branch !== `sam/${task.id}`)
          return Effect.succeed(
            fail(
              state,
              step(task, "agent_session"),
              `its node reported the work committed to ${JSON.stringify(result.branch ?? null)}, not the task's branch sam/${task.id}`
            )
          )
        // The result can overtake the session's "running" (a fast turn): it proves the agent ran.
        const started =
          task.status === "delegated"
            ? withStatus(state, step(task, "running"), "in_progress", "agent is working")
            : state
        if (started === undefined || started.task === null) return Effect.succeed({ state })
        const done = withStatus(
          started,
          { ...started.task, branch: result.branch ?? null, commitSha: result.commitSha ?? null },
          "completed",
          result.outcome === "committed" ? `committed to ${result.branch}` : "no changes"
        )
        if (done === undefined) return Effect.succeed({ state })
        // Completed work sleeps (ADR 0023): the agent process is stopped, the session takes no prompts.
        const sessionId = done.task!.sessionId
        return Effect.succeed({
          state: done,
          events: [statusEvent(done.task!)],
          timers: [Actor.Timer.cancel("step")],
          send:
            sessionId === null
              ? []
              : [Actor.to(SessionRef, sessionId, C.SessionSleep.make({ sessionId, reason: "its task completed" }))]
        })
      }
      case "task.step-timeout": {
        if (terminal || task.executionStep !== command.body.step) return Effect.succeed({ state })
        const attempt = command.body.attempt
        // only a task-mode turn that ended waits in `running` (task.session-status `turn_ended`)
        if (command.body.step === "running")
          return Effect.succeed(
            fail(
              state,
              task,
              "its node did not report the task's result (its commit and push) in time after the agent's turn ended"
            )
          )
        // A cloud provider that gave up (no capacity, quota, no token: ADR 0026) says why; asking again would not help.
        if (command.body.step === "node_provisioning" && state.nodeError !== undefined)
          return Effect.succeed(fail(state, task, `its node could not be provisioned: ${state.nodeError}`))
        if (attempt >= STEP_RETRIES) {
          return Effect.succeed(
            fail(state, task, `timed out in step ${command.body.step} after ${attempt + 1} attempts`)
          )
        }
        // Retry with backoff: wait again, twice as long; a node still being provisioned is asked for again
        // (every step's command is idempotent, so re-sending it is safe).
        return Effect.succeed({
          state,
          timers: [stepTimer(task, command.body.step, attempt + 1)],
          send:
            command.body.step === "node_provisioning" && task.nodeId !== null
              ? [
                  Actor.to(
                    NodeRef,
                    task.nodeId,
                    C.NodeProvision.make({
                      nodeId: task.nodeId,
                      requestedBy: task.id,
                      retry: attempt + 1
                    })
                  )
                ]
              : []
        })
      }
      case "task.cancel": {
        const cancelled = withStatus(state, task, "cancelled", command.body.reason ?? "cancelled by the user")
        if (cancelled === undefined) {
          return Effect.succeed({
            state,
            reply: { ok: false, code: "invalid_transition", message: refusal(task.status, "cancelled") }
          })
        }
        return Effect.succeed({
          state: cancelled,
          events: [statusEvent(cancelled.task!)],
          timers: [Actor.Timer.cancel("step")],
          send:
            task.sessionId === null
              ? []
              : [
                  Actor.to(
                    SessionRef,
                    task.sessionId,
                    C.SessionStopCommand.make({
                      sessionId: task.sessionId,
                      reason: "task cancelled",
                      from: "task"
                    })
                  )
                ],
          reply: { ok: true }
        })
      }
      case "task.node-reserved": {
        const b = command.body
        if (task.nodeId === b.nodeId && task.workspaceId === b.workspaceId) return Effect.succeed({ state })
        if (terminal || task.nodeId !== null || task.workspaceId !== b.workspaceId) {
          // Granted too late (the task ended or asked again): give the slot and its workspace back.
          const reason = "its task no longer needs it"
          return Effect.succeed({
            state,
            send: [
              Actor.to(NodeRef, b.nodeId, C.NodeRelease.make({ nodeId: b.nodeId, workspaceId: b.workspaceId })),
              Actor.to(
                WorkspaceRef,
                b.workspaceId,
                C.WorkspaceDeleteCommand.make({ workspaceId: b.workspaceId, reason })
              )
            ]
          })
        }
        return Effect.succeed(placed(state, task, b.nodeId, b.ready))
      }
      case "task.node-full": {
        const b = command.body
        if (terminal || task.nodeId !== null || task.workspaceId !== b.workspaceId) return Effect.succeed({ state })
        // Another task of the submitter's got a node with room first: ask that one now.
        if (b.elsewhere && state.candidate !== null) return Effect.succeed(placeOnNode(state, task, b.attempt))
        const reason = `waiting for node capacity: ${b.reason}`
        const waiting: Row = { ...step(task, "waiting_for_node_capacity"), workspaceId: null }
        const first = task.executionStep !== "waiting_for_node_capacity"
        return Effect.succeed({
          state: {
            ...state,
            task: waiting,
            transitions: first
              ? [...state.transitions, { from: task.status, to: task.status, reason }]
              : state.transitions
          },
          events: [statusEvent(waiting, reason)],
          timers: [
            Actor.Timer.set(
              "capacity",
              capacityBackoffMs(b.attempt),
              C.TaskPlace.make({ taskId: task.id, attempt: b.attempt + 1, via: "timer" })
            )
          ]
        })
      }
      case "task.place": {
        if (terminal || task.executionStep !== "waiting_for_node_capacity" || task.workspaceId !== null) {
          return Effect.succeed({ state })
        }
        return Effect.succeed(placeOnNode(state, task, command.body.via === "timer" ? command.body.attempt : 0))
      }
      case "task.retry": {
        const ready = withStatus(
          state,
          { ...task, errorStep: null, errorReason: null, executionStep: null },
          "ready",
          "retry"
        )
        if (ready === undefined || task.status === "ready") {
          return Effect.succeed({
            state,
            reply: { ok: false, code: "invalid_transition", message: refusal(task.status, "ready") }
          })
        }
        const queued = withStatus(ready, { ...ready.task!, executionStep: "node_selection" }, "queued", "retry")!
        return Effect.succeed({ ...placeOnNode(queued, queued.task!), reply: { ok: true } })
      }
    }
  }
})

/** The task flow, and a task that ends tells its workspace. */
export const TaskKind = Actor.make({
  ...TaskFlow.spec,
  handle: (state, command, context) =>
    Effect.map(TaskFlow.spec.handle(state, command, context), (reaction) => releaseOnEnd(state, reaction))
})
