import {
  type NodeStatus,
  nodeTransition,
  type SessionStatus,
  sessionTransition,
  type TaskStatus,
  taskTransition,
  type WorkspaceStatus,
  workspaceTransition
} from "./States.js"

/**
 * Every state of a task, session, workspace and node (ADR 0023): the evidence that keeps an entity
 * in it, and who moves it on — in particular when that evidence stops. The table is checked against
 * the transition tables (each way out is a legal move) and rendered into docs/architecture.md, where
 * a test holds the two the same.
 */
export interface WayOut<S extends string> {
  readonly to: S
  /** who moves it: an actor and the command or timer it handles */
  readonly who: string
  readonly when: string
}
export interface StateRow<S extends string> {
  /** what keeps the entity in this state; `terminal` for a state with no way out but a user's */
  readonly evidence: string
  readonly wayOut: ReadonlyArray<WayOut<S>>
}
export type StateTable<S extends string> = { readonly [K in S]: StateRow<S> }

export const taskStates: StateTable<TaskStatus> = {
  draft: {
    evidence: "Not entered today: every task is submitted straight to `queued`.",
    wayOut: [{ to: "cancelled", who: "task actor (`task.cancel`)", when: "a user cancels" }]
  },
  ready: {
    evidence: "A retry was accepted; the same command places it again.",
    wayOut: [{ to: "queued", who: "task actor (`task.retry`)", when: "at once, in the same transaction" }]
  },
  queued: {
    evidence:
      "A placement in flight: a `node.reserve` unanswered, a node being provisioned (step timer), or `waiting_for_node_capacity` with its retry timer.",
    wayOut: [
      {
        to: "delegated",
        who: "task actor (`task.node-reserved`, `task.node-assigned`)",
        when: "a ready node grants a slot"
      },
      {
        to: "delegated",
        who: "task actor (`task.workspace-status` running)",
        when: "its workspace already runs, which proves its node ready"
      },
      { to: "failed", who: "task actor (`task.step-timeout`)", when: "the step timer fires a third time" },
      { to: "cancelled", who: "task actor (`task.cancel`)", when: "a user cancels" }
    ]
  },
  delegated: {
    evidence:
      "The workspace is being created and the agent session opened: node reports, with the step timer running (`workspace_dispatch`, `workspace_ready`, `agent_session`).",
    wayOut: [
      {
        to: "in_progress",
        who: "task actor (`task.session-status` running, turn_ended or awaiting_followup, or the result)",
        when: "the agent works, or its turn ended (a lost one too) before its task heard it run"
      },
      {
        to: "failed",
        who: "task actor (`task.workspace-status` error, `task.session-status` failed, `task.step-timeout`)",
        when: "the node refuses or reports an error, or the step timer fires a third time"
      },
      { to: "cancelled", who: "task actor (`task.cancel`)", when: "a user cancels" }
    ]
  },
  in_progress: {
    evidence:
      "`running`: the session's turn, alive while the node reports or heartbeats list it (the session healer checks every 15 s); once a task-mode turn ended (`task.session-status` `turn_ended`), the node's result is awaited for the step's last wait (4 × `SAM_TASK_STEP_TIMEOUT_MS`), and a node that restarted before reporting it reports it failed (its session record says a result is due). `awaiting_followup`: a conversation's idle session waits for a user.",
    wayOut: [
      {
        to: "completed",
        who: "task actor (`task.result-reported`)",
        when: "a task-mode turn ends and its work is committed on the task's own branch"
      },
      {
        to: "failed",
        who: "task actor (`task.step-timeout` at `running`, `task.result-reported` failed)",
        when: "the result does not come in time or the node restarted while committing"
      },
      {
        to: "completed",
        who: "task actor (`task.session-status` stopped)",
        when: "a user ends a conversation's session"
      },
      {
        to: "failed",
        who: "task actor (`task.session-status` failed, from the session healer)",
        when: "no sign of the turn for `SAM_SESSION_LOST_AFTER_MS` and the node is silent (a live node: `awaiting_followup` instead)"
      },
      { to: "cancelled", who: "task actor (`task.cancel`)", when: "a user cancels" }
    ]
  },
  completed: {
    evidence: "terminal: its session sleeps, its workspace stops when idle.",
    wayOut: []
  },
  failed: {
    evidence: "terminal: the step and the reason are kept.",
    wayOut: [{ to: "ready", who: "task actor (`task.retry`)", when: "a user retries" }]
  },
  cancelled: {
    evidence: "terminal.",
    wayOut: [{ to: "ready", who: "task actor (`task.retry`)", when: "a user retries" }]
  }
}

export const sessionStates: StateTable<SessionStatus> = {
  active: {
    evidence:
      "Its agent process on the node (heartbeat inventory); while a turn runs, the snapshot says `prompting` and the node's reports or heartbeats must show it alive.",
    wayOut: [
      {
        to: "sleeping",
        who: "session actor (`session.sleep` from the task actor, or its workspace's stop if that comes first)",
        when: "its task completes"
      },
      {
        to: "stopped",
        who: "session actor (`session.user-stop`)",
        when: "a user, its cancelled task or its stopped workspace stops it"
      },
      {
        to: "failed",
        who: "session actor (`session.fail`, the agent's `failed` event, a refused `session.start`)",
        when: "its task fails or its agent cannot be kept alive"
      }
    ]
  },
  sleeping: {
    evidence:
      "Its task completed; its agent process was stopped and takes no prompt. The reconciler stops any agent process still reported for it.",
    wayOut: [
      {
        to: "stopped",
        who: "session actor (`session.user-stop`)",
        when: "its workspace is deleted (a stop keeps it asleep)"
      }
    ]
  },
  stopped: { evidence: "terminal.", wayOut: [] },
  failed: { evidence: "terminal: the reason is the last entry of its transcript.", wayOut: [] }
}

export const workspaceStates: StateTable<WorkspaceStatus> = {
  pending: {
    evidence: "A reserved slot on its node, not yet handed to it.",
    wayOut: [
      {
        to: "creating",
        who: "workspace actor (`workspace.dispatch`)",
        when: "the task path or the node-ready path, whichever first"
      },
      { to: "deleted", who: "workspace actor (`workspace.task-ended`)", when: "its task ends first" }
    ]
  },
  creating: {
    evidence: "The node's `workspace.create` in flight: boot log lines and status reports.",
    wayOut: [
      { to: "running", who: "workspace actor (`workspace.report`)", when: "the node reports it running" },
      {
        to: "error",
        who: "workspace actor (`workspace.report`, `workspace.command-rejected`)",
        when: "the node fails or refuses it"
      },
      {
        to: "stopping",
        who: "workspace actor (`workspace.idle-timeout`, user stop)",
        when: "its task ended (step timer) and it idles"
      }
    ]
  },
  running: {
    evidence: "The node reports it and lists it in every heartbeat (the reconciler's evidence).",
    wayOut: [
      {
        to: "stopping",
        who: "workspace actor (`workspace.idle-timeout`)",
        when: "no active session for `SAM_WORKSPACE_IDLE_MS` after its task ended, or sooner when its node is full"
      },
      {
        to: "error",
        who: "workspace actor (`workspace.missing`, from the node actor's reconciler)",
        when: "its node's heartbeats no longer list it"
      }
    ]
  },
  recovery: {
    evidence: "Not entered today (no node reports it).",
    wayOut: [{ to: "stopping", who: "workspace actor (user stop)", when: "a user stops it" }]
  },
  sleeping: {
    evidence: "Not entered today (a completed task's workspace is stopped instead).",
    wayOut: [{ to: "stopping", who: "workspace actor (user stop)", when: "a user stops it" }]
  },
  stopping: {
    evidence: "The node's `workspace.stop` in flight (it first keeps the task branches as a bundle).",
    wayOut: [
      {
        to: "stopped",
        who: "workspace actor (`workspace.report`, a `not_found` refusal)",
        when: "the node reports it stopped"
      },
      {
        to: "stopped",
        who: "workspace actor (`workspace.missing`, from the node actor's reconciler)",
        when: "the stop is settled (`SAM_RECONCILE_SETTLE_MS`) and the node's heartbeats list it stopped (one still running is sent the stop again)"
      },
      {
        to: "deleted",
        who: "workspace actor (`workspace.missing`, from the node actor)",
        when: "its node is destroyed before reporting it, or the settled stop's node no longer lists it"
      },
      { to: "error", who: "workspace actor (`workspace.command-rejected`)", when: "the node refuses the stop" }
    ]
  },
  stopped: {
    evidence: "Its files stay on the node; its slot is given back.",
    wayOut: [
      {
        to: "deleted",
        who: "workspace actor (`workspace.user-delete`; `workspace.missing` from the node actor)",
        when: "a user deletes it or its node is destroyed (reported by the node, or not before it went)"
      },
      {
        to: "deleted",
        who: "workspace actor (`workspace.ended-expiry`, then the node's report)",
        when: "it stayed stopped for `SAM_WORKSPACE_ENDED_TTL_MS` (ADR 0052)"
      }
    ]
  },
  deleted: { evidence: "terminal.", wayOut: [] },
  error: {
    evidence: "The reason is kept; its slot is given back.",
    wayOut: [
      {
        to: "deleted",
        who: "workspace actor (`workspace.user-delete`; `workspace.missing` from the node actor)",
        when: "a user deletes it or its node is destroyed (reported by the node, or not before it went)"
      },
      {
        to: "stopping",
        who: "workspace actor (`workspace.user-delete`)",
        when: "a user deletes it: its node is told to stop and delete it"
      },
      {
        to: "stopped",
        who: "workspace actor (`workspace.report`, after `workspace.ended-expiry`)",
        when: "it stayed failed for `SAM_WORKSPACE_ENDED_TTL_MS` and its node, told to stop and delete it, reports it stopped (ADR 0052)"
      }
    ]
  }
}

export const nodeStates: StateTable<NodeStatus> = {
  provisioning: {
    evidence:
      "The provider request is recorded; the provider starts the machine (the local provider: a vm-agent process).",
    wayOut: [
      { to: "running", who: "node actor (`node.ready-reported`)", when: "its vm-agent reports ready" },
      {
        to: "destroying",
        who: "node actor (`node.idle-check`)",
        when: "it never became ready and no task waits for it"
      }
    ]
  },
  running: {
    evidence:
      "Heartbeats (fresh within 30 s to take work); `sam up` restarts a vm-agent that exits; the machine reconciler reports a silent node whose machine is gone.",
    wayOut: [
      {
        to: "warm",
        who: "node actor (`node.idle-check`)",
        when: "no slot taken for `SAM_NODE_IDLE_MS` and its owner's warm pool has room"
      },
      {
        to: "destroying",
        who: "node actor (`node.idle-check`, `node.destroy`)",
        when: "idle with the warm pool full, or a user deletes it"
      }
    ]
  },
  warm: {
    evidence: "Idle, kept for fast starts: at most `SAM_WARM_NODES` per user, with its vm-agent heartbeating.",
    wayOut: [
      { to: "running", who: "node actor (`node.reserve`)", when: "a task takes a slot" },
      { to: "destroying", who: "node actor (`node.destroy`)", when: "a user deletes it" }
    ]
  },
  destroying: {
    evidence:
      "Its workspaces are being deleted (at most 30 s), then its NATS account is revoked and the provider destroys the machine.",
    wayOut: [
      { to: "deleted", who: "node actor (`node.destroyed`, from the node retirer)", when: "the machine is gone" }
    ]
  },
  deleted: { evidence: "terminal: the machine reconciler destroys any machine still running for it.", wayOut: [] },
  error: {
    evidence: "Not entered today.",
    wayOut: [{ to: "destroying", who: "node actor (`node.destroy`)", when: "a user deletes it" }]
  }
}

type Machine<S extends string> = (from: S, to: S) => { readonly _tag: string }

/** Ways out that the transition tables refuse (empty when the table and the code agree). */
export const illegalWaysOut = () => {
  const check = <S extends string>(name: string, table: StateTable<S>, machine: Machine<S>) =>
    (Object.entries(table) as Array<[S, StateRow<S>]>).flatMap(([from, row]) =>
      row.wayOut.filter((w) => machine(from, w.to)._tag !== "Allowed").map((w) => `${name} ${from} → ${w.to}`)
    )
  return [
    ...check("task", taskStates, taskTransition),
    ...check("session", sessionStates, sessionTransition),
    ...check("workspace", workspaceStates, workspaceTransition),
    ...check("node", nodeStates, nodeTransition)
  ]
}

/** The table as Markdown, as docs/architecture.md shows it. */
export const renderStateTable = () => {
  const section = <S extends string>(title: string, table: StateTable<S>) => [
    `### ${title}`,
    "",
    "| State | Evidence that keeps it | Way out: to, who, when |",
    "| --- | --- | --- |",
    ...(Object.entries(table) as Array<[S, StateRow<S>]>).map(
      ([state, row]) =>
        `| \`${state}\` | ${row.evidence} | ${row.wayOut.length === 0 ? "—" : row.wayOut.map((w) => `→ \`${w.to}\`: ${w.who}, when ${w.when}`).join("<br>")} |`
    ),
    ""
  ]
  return [
    ...section("Task", taskStates),
    ...section("Session", sessionStates),
    ...section("Workspace", workspaceStates),
    ...section("Node", nodeStates)
  ].join("\n")
}
