export { type ControlPlaneOptions, layer, run } from "../ControlPlane.js"
export { ReportDropped } from "./Audit.js"
export { rejectionRoutes } from "./CommandRejections.js"
export * from "./Kinds.js"
export {
  NodeDestroyRequested,
  NodeKind,
  NodeProvisionRequested,
  NodeStatusEvent,
  NodeStopRequested
} from "./NodeActor.js"
export { makeHeartbeatThrottle, nodeReportRoutes } from "./NodeRoutes.js"
export { ProjectCreated, ProjectKind, ProjectMemberAdded, ProjectMemberRemoved } from "./ProjectActor.js"
export { NodeProvider, runMachineReconciler, runProvisioner } from "./Provisioner.js"
export { stepTimeoutMs, TaskKind, TaskStatusEvent } from "./TaskActor.js"
export { WorkspaceBootLogEvent, WorkspaceEvent, WorkspaceKind } from "./WorkspaceActor.js"
