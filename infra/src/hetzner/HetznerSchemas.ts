import { z } from "zod"

/**
 * What SAM reads of the Hetzner Cloud API (https://docs.hetzner.cloud), as zod schemas. Only the fields
 * used are named; the rest of each object passes through unread (zod strips it).
 */

export const Labels = z.record(z.string(), z.string())

export const ActionError = z.object({ code: z.string(), message: z.string() })

export const Action = z.object({
  id: z.number().int(),
  command: z.string(),
  status: z.enum(["running", "success", "error"]),
  progress: z.number(),
  started: z.string(),
  finished: z.string().nullable(),
  resources: z.array(z.object({ id: z.number().int(), type: z.string() })),
  error: ActionError.nullable()
})
export type Action = z.infer<typeof Action>

export const Location = z.object({
  id: z.number().int(),
  name: z.string(),
  description: z.string(),
  country: z.string(),
  city: z.string(),
  network_zone: z.string()
})
export type Location = z.infer<typeof Location>

export const ServerType = z.object({
  id: z.number().int(),
  name: z.string(),
  description: z.string(),
  cores: z.number(),
  memory: z.number(),
  disk: z.number(),
  architecture: z.enum(["x86", "arm"]),
  deprecated: z.boolean().nullable().optional()
})
export type ServerType = z.infer<typeof ServerType>

export const Image = z.object({
  id: z.number().int(),
  type: z.enum(["system", "app", "snapshot", "backup"]),
  status: z.string(),
  name: z.string().nullable(),
  description: z.string(),
  architecture: z.enum(["x86", "arm"])
})
export type Image = z.infer<typeof Image>

export const ServerStatus = z.enum([
  "initializing",
  "starting",
  "running",
  "stopping",
  "off",
  "deleting",
  "migrating",
  "rebuilding",
  "unknown"
])

export const Server = z.object({
  id: z.number().int(),
  name: z.string(),
  status: ServerStatus,
  created: z.string(),
  labels: Labels,
  public_net: z.object({
    ipv4: z.object({ ip: z.string() }).nullable(),
    ipv6: z.object({ ip: z.string() }).nullable()
  }),
  server_type: z.object({ name: z.string() }),
  datacenter: z.object({ name: z.string(), location: z.object({ name: z.string() }) }),
  image: z.object({ id: z.number().int(), name: z.string().nullable() }).nullable()
})
export type Server = z.infer<typeof Server>

export const Pagination = z.object({
  page: z.number().int(),
  per_page: z.number().int(),
  previous_page: z.number().int().nullable(),
  next_page: z.number().int().nullable(),
  last_page: z.number().int().nullable(),
  total_entries: z.number().int().nullable()
})
export const Meta = z.object({ pagination: Pagination })

export const CreateServerResponse = z.object({
  server: Server,
  action: Action,
  next_actions: z.array(Action),
  root_password: z.string().nullable()
})

/** `{ error: { code, message, details } }`, the body of every error response. */
export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() })
})

export const ServerResponse = z.object({ server: Server })
export const ActionResponse = z.object({ action: Action })
export const ServersPage = z.object({ servers: z.array(Server), meta: Meta })
export const ServerTypesPage = z.object({ server_types: z.array(ServerType), meta: Meta })
export const LocationsPage = z.object({ locations: z.array(Location), meta: Meta.optional() })
export const ImagesPage = z.object({ images: z.array(Image), meta: Meta })

export interface CreateServerRequest {
  readonly name: string
  readonly server_type: string
  readonly image: string
  readonly location: string
  readonly user_data: string
  readonly labels: Readonly<Record<string, string>>
  readonly start_after_create: boolean
}
