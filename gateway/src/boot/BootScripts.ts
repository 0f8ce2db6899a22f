import { readFileSync } from "node:fs"

const load = (name: string) => readFileSync(new URL(`./${name}`, import.meta.url), "utf8")

let scripts: { readonly boot: string; readonly firewall: string } | undefined

/**
 * The node's boot script and firewall script (plain bash beside this module). Cloud-init user data
 * carries both; `GET /api/v1/node-boot/boot.sh` serves the boot script to machines that join.
 */
export const bootScripts = () => {
  scripts ??= { boot: load("boot.sh"), firewall: load("firewall.sh") }
  return scripts
}

/** The one-line install command of a machine joining as a node (run as root, Node >= 20 or apt). */
export const joinCommand = (url: string, token: string, sha256?: string) =>
  `curl -fsSL ${url}/api/v1/node-boot/boot.sh | sudo bash -s -- --url ${url} --token ${token}${sha256 === undefined ? "" : ` --sha256 ${sha256}`}`
