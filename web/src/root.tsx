import { component$ } from "@builder.io/qwik"
import { QwikCityProvider, RouterOutlet, useDocumentHead } from "@builder.io/qwik-city"
import "./global.css"

// Before first paint: the theme the user chose (dark by default), so the page never flashes.
const THEME = `try{var t=localStorage.getItem("sam-theme");if(t==="light"||t==="dark")document.documentElement.dataset.theme=t}catch(e){}`

const Head = component$(() => {
  const head = useDocumentHead()
  return (
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover" />
      <meta name="color-scheme" content="dark light" />
      <title>{head.title ? `${head.title} · SAM` : "SAM"}</title>
      <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
      <script dangerouslySetInnerHTML={THEME} />
    </head>
  )
})

export default component$(() => (
  // No view transition on navigation: Qwik waits for its animation to end (250 ms and more) before it runs what the new
  // page starts, such as its live feed, so a chat was subscribed to only after the cross-fade.
  <QwikCityProvider viewTransition={false}>
    <Head />
    <body>
      <RouterOutlet />
    </body>
  </QwikCityProvider>
))
