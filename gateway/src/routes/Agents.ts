import { Api } from "@sam/bus"
import { Effect } from "effect"
import { requireMember, requireOwner } from "../Access.js"
import type { Principal } from "../Auth.js"
import * as Route from "../Route.js"
import * as Agents from "../services/Agents.js"

const E = Api.AgentEndpoints

/**
 * Where runtime assets attach, after the caller's check: members read them; what every task of a project starts
 * with runs in every member's agent, with that member's credentials, so only the project's owners change it
 * (ADR 0047).
 */
const project = (principal: Principal, projectId: string, intent: "read" | "change" = "read") =>
  Effect.as(intent === "change" ? requireOwner(principal, projectId) : requireMember(principal, projectId), {
    projectId,
    profileId: null
  })
const profile = (principal: Principal, projectId: string, profileId: string, intent: "read" | "change" = "read") =>
  Effect.as(Agents.requireProfile(principal, projectId, profileId, intent), { projectId, profileId })

/** The harness catalog, a user's agent credentials, and a project's agent profiles and runtime assets (ADR 0024). */
export const routes = [
  Route.make(E.listAgents, () => Effect.succeed(Agents.catalog())),
  Route.make(E.listCredentials, ({ principal }) => Agents.listCredentials(principal)),
  Route.make(E.setCredential, ({ principal, params, body }) => Agents.setCredential(principal, params.agent, body)),
  Route.make(E.deleteCredential, ({ principal, params }) => Agents.deleteCredential(principal, params.agent)),
  Route.make(E.listProfiles, ({ principal, params }) => Agents.listProfiles(principal, params.projectId)),
  Route.make(E.createProfile, ({ principal, params, body }) => Agents.createProfile(principal, params.projectId, body)),
  Route.make(E.getProfile, ({ principal, params }) =>
    Agents.requireProfile(principal, params.projectId, params.profileId)
  ),
  Route.make(E.updateProfile, ({ principal, params, body }) =>
    Agents.updateProfile(principal, params.projectId, params.profileId, body)
  ),
  Route.make(E.deleteProfile, ({ principal, params }) =>
    Agents.deleteProfile(principal, params.projectId, params.profileId)
  ),
  Route.make(E.projectRuntime.get, ({ principal, params }) =>
    Effect.flatMap(project(principal, params.projectId), Agents.runtimeConfig)
  ),
  Route.make(E.projectRuntime.setEnv, ({ principal, params, body }) =>
    Effect.flatMap(project(principal, params.projectId, "change"), (owner) => Agents.setEnv(owner, body))
  ),
  Route.make(E.projectRuntime.deleteEnv, ({ principal, params }) =>
    Effect.flatMap(project(principal, params.projectId, "change"), (owner) => Agents.deleteEnv(owner, params.key))
  ),
  Route.make(E.projectRuntime.setFile, ({ principal, params, body }) =>
    Effect.flatMap(project(principal, params.projectId, "change"), (owner) => Agents.setFile(owner, body))
  ),
  Route.make(E.projectRuntime.deleteFile, ({ principal, params, query }) =>
    Effect.flatMap(project(principal, params.projectId, "change"), (owner) => Agents.deleteFile(owner, query.path))
  ),
  Route.make(E.profileRuntime.get, ({ principal, params }) =>
    Effect.flatMap(profile(principal, params.projectId, params.profileId), Agents.runtimeConfig)
  ),
  Route.make(E.profileRuntime.setEnv, ({ principal, params, body }) =>
    Effect.flatMap(profile(principal, params.projectId, params.profileId, "change"), (owner) =>
      Agents.setEnv(owner, body)
    )
  ),
  Route.make(E.profileRuntime.deleteEnv, ({ principal, params }) =>
    Effect.flatMap(profile(principal, params.projectId, params.profileId, "change"), (owner) =>
      Agents.deleteEnv(owner, params.key)
    )
  ),
  Route.make(E.profileRuntime.setFile, ({ principal, params, body }) =>
    Effect.flatMap(profile(principal, params.projectId, params.profileId, "change"), (owner) =>
      Agents.setFile(owner, body)
    )
  ),
  Route.make(E.profileRuntime.deleteFile, ({ principal, params, query }) =>
    Effect.flatMap(profile(principal, params.projectId, params.profileId, "change"), (owner) =>
      Agents.deleteFile(owner, query.path)
    )
  )
]
