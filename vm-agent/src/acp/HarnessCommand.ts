/** How to start an ACP agent: argv, working directory and its own variables (added to PATH, LANG and HOME only). */
export interface HarnessCommand {
  readonly argv: readonly [string, ...Array<string>]
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
  /** the ACP session mode set (`session/set_mode`) after the session is created or loaded */
  readonly sessionMode?: string
  /** the ACP `authenticate` method called after `initialize`, for agents that want one (Codex with an API key) */
  readonly authMethod?: string
}
