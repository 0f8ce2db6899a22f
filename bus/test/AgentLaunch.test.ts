import { describe, expect, it } from "vitest"
import { Api, Domain } from "../src/index.js"

const { sealLaunch, openLaunch, newNodeCurve } = Domain.AgentLaunch

describe("AgentLaunch", () => {
  const launch = { env: { ANTHROPIC_API_KEY: "sk-ant-secret" }, files: [{ path: "~/.x", content: "y" }] }

  it("is sealed for one node: that node opens it, another cannot, and the box shows nothing", () => {
    const node = newNodeCurve()
    const other = newNodeCurve()
    const sealed = sealLaunch(launch, node.publicKey)
    expect(JSON.stringify(sealed)).not.toContain("sk-ant-secret")
    expect(openLaunch(sealed, node.seed)).toEqual(launch)
    expect(openLaunch(sealed, other.seed)).toBeUndefined()
    // each seal has a sender key of its own
    expect(sealLaunch(launch, node.publicKey).sender).not.toBe(sealed.sender)
  })

  it("a box that was tampered with does not open", () => {
    const node = newNodeCurve()
    const sealed = sealLaunch(launch, node.publicKey)
    const bytes = Buffer.from(sealed.box, "base64")
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1
    expect(openLaunch({ ...sealed, box: bytes.toString("base64") }, node.seed)).toBeUndefined()
  })

  it("runtime keys and paths are checked", () => {
    expect(Api.RuntimeEnvKey.safeParse("FOO_1").success).toBe(true)
    expect(Api.RuntimeEnvKey.safeParse("1BAD").success).toBe(false)
    for (const ok of ["conf/app.txt", "~/.codex/config.toml", "a.b"])
      expect(Api.RuntimeFilePath.safeParse(ok).success, ok).toBe(true)
    for (const bad of ["../x", "a/../b", "/etc/passwd", "~/../x", "./a", "a//b", "a\\b", "~/"])
      expect(Api.RuntimeFilePath.safeParse(bad).success, bad).toBe(false)
  })

  it("every real harness names a pinned package and a credential; the demo agent needs none", () => {
    for (const harness of Object.values(Api.Harnesses)) {
      if (harness.id === "demo") {
        expect(harness.package).toBeUndefined()
        expect(harness.credentials).toEqual([])
        continue
      }
      expect(harness.package?.version).toMatch(/^\d+\.\d+\.\d+$/)
      expect(harness.credentials.length).toBeGreaterThan(0)
      expect(Api.harnessPackages(harness).every((p) => /@\d+\.\d+\.\d+$/.test(p))).toBe(true)
    }
  })
})
