/** Any other address in the app: the problem page's "There is no such page" (404), in the app's frame. */
export { default, head, onGet, useProblem } from "../problem/index"
