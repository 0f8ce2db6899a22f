import type { RequestHandler } from "@builder.io/qwik-city"

export const onGet: RequestHandler = (event) => {
  throw event.redirect(302, `/projects/${event.params.projectId}/chat`)
}
