import { randomUUID } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { z } from "zod"

const SessionFile = z.object({
  sessionId: z.string(),
  cwd: z.string(),
  prompts: z.array(z.string())
})

/** What the demo agent remembers of a session: its working directory and the texts of its prompts. */
export type StoredSession = z.infer<typeof SessionFile>

/**
 * Sessions persisted as one small JSON file each, under `SAM_DEMO_AGENT_STATE_DIR` or `<cwd>/.sam-demo-agent`,
 * written synchronously (tmp file + rename) so a kill -9 right after a prompt started still remembers it.
 */
export class SessionStore {
  /** `memory`: sessions kept in it and nowhere else (a warm agent's rehearsal, which may write nowhere) */
  constructor(
    private readonly stateDir: string | undefined,
    private readonly memory?: Map<string, StoredSession>
  ) {}

  private dirFor(cwd: string): string {
    return this.stateDir ?? Path.join(cwd, ".sam-demo-agent")
  }

  private fileFor(cwd: string, sessionId: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(sessionId)) throw new Error(`invalid session id: ${sessionId}`)
    return Path.join(this.dirFor(cwd), `${sessionId}.json`)
  }

  create(cwd: string): StoredSession {
    const session = { sessionId: `demo_${randomUUID()}`, cwd, prompts: [] }
    this.save(session)
    return session
  }

  load(cwd: string, sessionId: string): StoredSession | undefined {
    if (this.memory !== undefined) return this.memory.get(sessionId)
    const file = this.fileFor(cwd, sessionId)
    if (!Fs.existsSync(file)) return undefined
    return SessionFile.parse(JSON.parse(Fs.readFileSync(file, "utf8")))
  }

  save(session: StoredSession): void {
    if (this.memory !== undefined) {
      this.memory.set(session.sessionId, session)
      return
    }
    const file = this.fileFor(session.cwd, session.sessionId)
    Fs.mkdirSync(Path.dirname(file), { recursive: true })
    const tmp = `${file}.${process.pid}.tmp`
    Fs.writeFileSync(tmp, JSON.stringify(session))
    Fs.renameSync(tmp, file)
  }
}
