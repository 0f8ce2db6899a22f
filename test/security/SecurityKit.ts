import { randomBytes } from "node:crypto"
import * as Net from "node:net"
import { SqlClient } from "@effect/sql"
import { makeId, type UserId } from "@sam/bus"
import { hashPassword } from "@sam/gateway"
import { Effect } from "effect"

/** A user who signs in with a login and a password (as the local owner does), made in the ledger. */
export const makePasswordUser = (login: string, password: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const userId = makeId("user") as UserId
    const hash = yield* hashPassword(password)
    yield* sql`INSERT INTO users (id, display_name, login, password_hash) VALUES (${userId}, ${login}, ${login}, ${hash})`
    return userId
  })

/**
 * A WebSocket opened by hand on a plain TCP socket, for tests that send what a well-behaved client
 * library never would (a frame header announcing more than it sends). `received` is every byte the
 * server sent after the 101 response.
 */
export const rawWebSocket = (baseUrl: string, token: string) =>
  new Promise<{ readonly socket: Net.Socket; readonly received: () => Buffer; readonly ended: () => boolean }>(
    (resolve, reject) => {
      const url = new URL(baseUrl)
      const socket = Net.connect(Number(url.port), url.hostname)
      let buffer = Buffer.alloc(0)
      let upgraded = false
      let ended = false
      socket.on("close", () => {
        ended = true
      })
      socket.on("error", () => {})
      socket.on("data", (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk])
        if (upgraded) return
        const end = buffer.indexOf("\r\n\r\n")
        if (end < 0) return
        const head = buffer.subarray(0, end).toString()
        if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(`not upgraded: ${head.split("\r\n")[0]}`))
        upgraded = true
        buffer = buffer.subarray(end + 4)
        resolve({ socket, received: () => buffer, ended: () => ended })
      })
      socket.write(
        [
          "GET /api/v1/feed HTTP/1.1",
          `Host: ${url.host}`,
          "Upgrade: websocket",
          "Connection: Upgrade",
          `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
          "Sec-WebSocket-Version: 13",
          `Authorization: Bearer ${token}`,
          "",
          ""
        ].join("\r\n")
      )
    }
  )

/** The header of a masked text frame (client → server) announcing `length` bytes of payload. */
export const frameHeader = (length: number) => {
  const header = Buffer.alloc(14)
  header[0] = 0x81
  header[1] = 0x80 | 127
  header.writeBigUInt64BE(BigInt(length), 2)
  randomBytes(4).copy(header, 10)
  return header
}

/** The close code in the server's frames, if one of them is a close frame (server frames are unmasked). */
export const closeCodeIn = (bytes: Buffer): number | undefined => {
  let at = 0
  while (at + 2 <= bytes.length) {
    const opcode = (bytes[at] as number) & 0x0f
    let length = (bytes[at + 1] as number) & 0x7f
    let start = at + 2
    if (length === 126) {
      length = bytes.readUInt16BE(at + 2)
      start = at + 4
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at + 2))
      start = at + 10
    }
    if (opcode === 0x8 && length >= 2 && start + 2 <= bytes.length) return bytes.readUInt16BE(start)
    at = start + length
  }
  return undefined
}
