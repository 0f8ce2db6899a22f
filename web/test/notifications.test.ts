import type * as Api from "@sam/bus/api"
import { describe, expect, it } from "vitest"
import { newestFirst } from "../src/lib/notifications"

const notification = (id: string, createdAt: string) => ({ id, createdAt }) as Api.Notification

describe("the bell's list", () => {
  it("puts a notification that arrives late in its event's place, as the API lists it", () => {
    const listed = [
      notification("ntf_b", "2026-12-07T10:00:02.000Z"),
      notification("ntf_a", "2026-12-07T10:00:00.000Z")
    ]
    const late = notification("ntf_c", "2026-12-07T10:00:01.000Z")
    const tie = notification("ntf_d", "2026-12-07T10:00:02.000Z")
    expect([...listed, late, tie].sort(newestFirst).map((n) => n.id)).toEqual(["ntf_d", "ntf_b", "ntf_c", "ntf_a"])
  })
})
