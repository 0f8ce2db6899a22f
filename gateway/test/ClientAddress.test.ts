import type { HttpServerRequest } from "@effect/platform"
import { Option } from "effect"
import { describe, expect, it } from "vitest"
import { clientAddress, trustedProxies, webClientHeaders, webRequestAddress } from "../src/ClientAddress.js"

const request = (peer: string, forwarded?: string, headers: Record<string, string> = {}) =>
  ({
    remoteAddress: Option.some(peer),
    headers: { ...headers, ...(forwarded === undefined ? {} : { "x-forwarded-for": forwarded }) }
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

  it("a call of the web app on a browser's behalf counts as the browser's; nobody else can say whose it is", () => {
    const web = webClientHeaders("198.51.100.7")
    expect(clientAddress(request("127.0.0.1", undefined, web), new Set())).toBe("198.51.100.7")
    const [addressHeader, keyHeader] = Object.keys(web) as [string, string]
    const spoofed = { [addressHeader]: "198.51.100.7" }
    expect(clientAddress(request("203.0.113.9", undefined, spoofed), new Set())).toBe("203.0.113.9")
    const forged = { ...spoofed, [keyHeader]: Buffer.alloc(32).toString("base64url") }
    expect(clientAddress(request("127.0.0.1", undefined, forged), trusted)).toBe("127.0.0.1")
    expect(webClientHeaders(undefined)).toEqual({})
  })

  it("the web app's request: the browser's address, through trusted proxies only", () => {
    const req = (peer: string, forwarded: string) =>
      ({ socket: { remoteAddress: peer }, headers: { "x-forwarded-for": forwarded } }) as never
    expect(webRequestAddress(req("203.0.113.9", "198.51.100.1"), trusted)).toBe("203.0.113.9")
    expect(webRequestAddress(req("::ffff:127.0.0.1", "6.6.6.6, 198.51.100.1"), trusted)).toBe("198.51.100.1")
  })
})
