import type { HttpServerRequest } from "@effect/platform"
import { Option } from "effect"
import { describe, expect, it } from "vitest"
import { clientAddress, trustedProxies } from "../src/ClientAddress.js"

const request = (peer: string, forwarded?: string) =>
  ({
    remoteAddress: Option.some(peer),
    headers: forwarded === undefined ? {} : { "x-forwarded-for": forwarded }
  }) as unknown as HttpServerRequest.HttpServerRequest

describe("clientAddress", () => {
  const trusted = trustedProxies({ SAM_TRUSTED_PROXIES: "127.0.0.1, 10.0.0.2" })

  it("is the peer's when the peer is not a trusted proxy, whatever the header says", () => {
    expect(clientAddress(request("203.0.113.9", "198.51.100.1"), trusted)).toBe("203.0.113.9")
    expect(clientAddress(request("127.0.0.1", "198.51.100.1"), new Set())).toBe("127.0.0.1")
  })

  it("behind trusted proxies: the rightmost forwarded hop that is not one of them", () => {
    expect(clientAddress(request("127.0.0.1", "198.51.100.1"), trusted)).toBe("198.51.100.1")
    expect(clientAddress(request("::ffff:127.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.2"), trusted)).toBe("198.51.100.1")
    expect(clientAddress(request("127.0.0.1"), trusted)).toBe("127.0.0.1")
  })
})
