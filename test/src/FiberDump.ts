import { Fiber, FiberId, HashSet } from "effect"

/**
 * Every fiber still alive in this process, as a tree: its id, what it waits on, its span path (the
 * `Effect.fn` names it runs in) and the last continuations on its stack. Printed when a stop hangs, so
 * the next run that hangs says where. Reads Effect's runtime fibers' internals; for diagnosis only.
 */
export const fiberDump = (): string => {
  const lines: Array<string> = []
  const seen = new Set<unknown>()
  // biome-ignore lint/suspicious/noExplicitAny: Effect's FiberRuntime internals
  const spanPath = (span: any): string => {
    const names: Array<string> = []
    for (let s = span; s !== undefined && names.length < 12; s = s._tag === "Span" ? s.parent?.value : undefined) {
      names.push(String(s.name ?? s.spanId))
      if (s.parent?._tag !== "Some") break
    }
    return names.reverse().join(" > ")
  }
  // biome-ignore lint/suspicious/noExplicitAny: Effect's FiberRuntime internals
  const walk = (fiber: any, depth: number) => {
    if (seen.has(fiber) || fiber._exitValue !== null) return
    seen.add(fiber)
    const stack = ((fiber._stack ?? []) as Array<Record<string, unknown>>).slice(-3).map((c) =>
      String(c.effect_instruction_i1 ?? c.effect_instruction_i0 ?? c._op)
        .replace(/\s+/g, " ")
        .slice(0, 140)
    )
    lines.push(
      `${"  ".repeat(depth)}#${fiber.id().id} ${fiber._asyncBlockingOn === null ? "" : `waits on [${[...HashSet.values(FiberId.ids(fiber._asyncBlockingOn))].join(",")}] `}` +
        `span: ${spanPath(fiber.currentSpan)}; stack: ${JSON.stringify(stack)}`
    )
    for (const child of fiber._children ?? []) walk(child, depth + 1)
  }
  for (const root of Fiber.unsafeRoots()) walk(root, 0)
  return lines.join("\n")
}
