import { z } from "zod"

/**
 * A warm process (ADR 0055) is started with this variable set to `1`, before any workspace wants it: it boots, then
 * waits for one line on its stdin, a `WarmStart`, and takes on that working directory and that whole environment
 * before it does anything else. So the process a workspace takes is the one a spawn would have started there.
 */
export const WARM_START_ENV = "SAM_WARM_START"

/** The largest start line a warm process reads (a workspace's env has at most 200 variables). */
export const MAX_WARM_START_BYTES = 1024 * 1024

export const WarmStart = z.object({
  cwd: z.string().min(1),
  env: z.record(z.string(), z.string())
})
export type WarmStart = z.infer<typeof WarmStart>
