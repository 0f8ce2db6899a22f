import { component$ } from "@builder.io/qwik"
import { type DocumentHead, type RequestHandler, routeLoader$ } from "@builder.io/qwik-city"
import { Link } from "~/components/Link"
import { PAGE_PROBLEM, type PageProblem } from "~/lib/server"

/** A page whose data could not be had (`load`), shown in the app's frame: a wrong or stale address, no access. */
const problemOf = (shared: Map<string, unknown>): PageProblem =>
  (shared.get(PAGE_PROBLEM) as PageProblem | undefined) ?? { status: 404, message: "there is no such page" }

export const onGet: RequestHandler = (event) => {
  event.status(problemOf(event.sharedMap).status)
  event.cacheControl({ noCache: true })
}

export const useProblem = routeLoader$((event) => problemOf(event.sharedMap))

const titleOf = (status: number) =>
  status === 404 || status === 400
    ? "There is no such page"
    : status === 403
      ? "This is not yours to see"
      : status >= 500
        ? "SAM could not load this page"
        : "This page cannot be shown"

export default component$(() => {
  const problem = useProblem()
  return (
    <main class="page">
      <div class="page-narrow">
        <section class="glass card stack" role="alert" data-testid="page-problem" data-status={problem.value.status}>
          <h1 style={{ margin: 0 }}>{titleOf(problem.value.status)}</h1>
          <p class="muted" style={{ margin: 0 }}>
            {problem.value.message} <span class="mono">({problem.value.status})</span>
          </p>
          <p style={{ margin: 0 }}>
            <Link class="btn btn-primary" href="/projects">
              Your projects
            </Link>
          </p>
        </section>
      </div>
    </main>
  )
})

export const head: DocumentHead = ({ resolveValue }) => ({ title: titleOf(resolveValue(useProblem).status) })
