import type { RequestHandler } from "@builder.io/qwik-city"
import { SESSION_COOKIE } from "~/lib/server"

export const onGet: RequestHandler = (event) => {
  throw event.redirect(302, event.cookie.get(SESSION_COOKIE) ? "/projects" : "/signin")
}
