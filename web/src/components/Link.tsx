import { component$, Slot } from "@builder.io/qwik"
import { Link as CityLink, type LinkProps } from "@builder.io/qwik-city"

/**
 * The app's links: Qwik City's, prefetching the target page's code but never its data. Its default runs the
 * target's loaders as soon as a link is visible, and empties that cache at every navigation: every page shown read
 * the data of each menu entry and of every chat in the sidebar, a handful of API reads each.
 */
export const Link = component$<LinkProps>((props) => (
  <CityLink prefetch="js" {...props}>
    <Slot />
  </CityLink>
))
