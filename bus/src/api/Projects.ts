import { z } from "zod"
import { PermissionPolicy, PermissionTimeoutSeconds } from "../domain/ControlProtocol.js"
import { ProjectId, UserId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { storable } from "./Text.js"

export const Project = z.object({
  id: ProjectId,
  name: z.string(),
  repoUrl: z.string(),
  defaultBranch: z.string(),
  ownerId: UserId,
  /** the caller's role in it */
  role: z.enum(["owner", "member"]),
  /** how the agents' permission requests are answered: `ask` a member (default), `allow` or `deny` at once */
  permissionPolicy: PermissionPolicy,
  /** under `ask`: seconds before an unanswered request is refused (default 600) */
  permissionTimeoutSeconds: z.number().int().positive(),
  /** the GitHub repository (`owner/name`) its workspaces reach through the GitHub App, if any */
  githubRepository: z.string().nullable(),
  createdAt: z.iso.datetime()
})
export type Project = z.infer<typeof Project>

/** A repository of one of the caller's GitHub App installations (ADR 0028). */
export const ProjectGitHubRepository = z
  .object({
    installationId: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    /** `owner/name`, as GitHub lists it for the installation */
    repository: z.string().regex(/^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/, "owner/name")
  })
  .strict()

export const CreateProjectRequest = z
  .object({
    name: storable(z.string().trim().min(1).max(200)),
    /**
     * any Git URL or path the nodes can reach (a local path or file:// URL on this machine, which must hold a
     * checkout or a bare repository); not with `github`
     */
    repoUrl: storable(z.string().trim().min(1).max(2048)).optional(),
    /**
     * a repository of one of my GitHub App installations: its workspaces get short-lived tokens for it and
     * tasks in task mode end in a pull request; the URL and (unless given) the default branch come from GitHub
     */
    github: ProjectGitHubRepository.optional(),
    defaultBranch: z
      .string()
      .regex(/^[A-Za-z0-9._/-]{1,255}$/)
      .optional()
  })
  .refine((body) => (body.repoUrl === undefined) !== (body.github === undefined), {
    message: "give either repoUrl or github, not both",
    path: ["repoUrl"]
  })

export const ProjectList = z.object({ projects: z.array(Project) })

/** The settings an owner may change; fields left out stay as they are. */
export const UpdateProjectRequest = z
  .object({
    permissionPolicy: PermissionPolicy.optional(),
    permissionTimeoutSeconds: PermissionTimeoutSeconds.optional()
  })
  .strict()

const ProjectParams = z.object({ projectId: ProjectId })

export const ProjectEndpoints = {
  listProjects: endpoint({
    method: "GET",
    path: "/projects",
    summary: "The projects I am a member of",
    tag: "projects",
    response: ProjectList
  }),
  createProject: endpoint({
    method: "POST",
    path: "/projects",
    summary: "Create a project from a Git repository; I become its owner",
    tag: "projects",
    body: CreateProjectRequest,
    response: Project,
    status: 201
  }),
  getProject: endpoint({
    method: "GET",
    path: "/projects/:projectId",
    summary: "One project",
    tag: "projects",
    params: ProjectParams,
    response: Project
  }),
  updateProject: endpoint({
    method: "PATCH",
    path: "/projects/:projectId",
    summary: "Change a project's settings (owners): its permission policy and timeout",
    tag: "projects",
    params: ProjectParams,
    body: UpdateProjectRequest,
    response: Project
  })
}
