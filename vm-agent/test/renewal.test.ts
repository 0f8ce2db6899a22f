import { describe, expect, it } from "vitest"
import { CREDENTIALS_REFUSED, isCredentialRefusal } from "../src/node/Renewal.js"

describe("a node whose credentials NATS refuses", () => {
  it("is told what that means and what to do, not only the server's words", () => {
    expect(isCredentialRefusal("AuthorizationError: Authorization Violation")).toBe(true)
    expect(isCredentialRefusal("Error: user authentication revoked")).toBe(true)
    expect(isCredentialRefusal("Error: user authentication expired")).toBe(true)
    expect(isCredentialRefusal("Error: CONNECTION_REFUSED")).toBe(false)
    expect(isCredentialRefusal("")).toBe(false)
    expect(CREDENTIALS_REFUSED).toMatch(/deleted/)
    expect(CREDENTIALS_REFUSED).toContain("sam node token")
  })
})
