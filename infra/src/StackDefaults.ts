import { resolve } from "node:path"

/**
 * Where `sam up` keeps its data and which ports it takes, from the environment. A module of its own:
 * the CLI's client commands read the data directory from it without loading the stack's code.
 */
export interface StackOptions {
  readonly dataDir: string
  readonly host: string
  readonly natsPort: number
  /**
   * NATS over WebSocket on loopback, which the gateway serves at `/nats` to remote nodes (ADR 0027):
   * `SAM_NATS_WS_PORT`; `auto` (the default) takes a free port, `off` none
   */
  readonly natsWebSocketPort?: number | "auto"
  readonly pgPort: number
  readonly database: string
  /** restarts in a row of a server that died before `sam up` gives up (`SAM_SERVER_RESTARTS`, 5) */
  readonly serverRestarts?: number
}

export const defaults = (env: NodeJS.ProcessEnv = process.env): StackOptions => ({
  dataDir: resolve(env.SAM_DATA_DIR ?? ".sam"),
  host: "127.0.0.1",
  natsPort: Number(env.SAM_NATS_PORT ?? 4222),
  ...(env.SAM_NATS_WS_PORT === "off"
    ? {}
    : { natsWebSocketPort: env.SAM_NATS_WS_PORT === undefined ? "auto" : Number(env.SAM_NATS_WS_PORT) }),
  pgPort: Number(env.SAM_PG_PORT ?? 54320),
  database: env.SAM_PG_DATABASE ?? "sam",
  serverRestarts: Number(env.SAM_SERVER_RESTARTS ?? 5)
})
