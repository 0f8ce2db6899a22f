/** How to start an ACP agent: argv, working directory and environment additions (merged over the daemon's). */
export interface HarnessCommand {
  readonly argv: readonly [string, ...Array<string>]
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
}
