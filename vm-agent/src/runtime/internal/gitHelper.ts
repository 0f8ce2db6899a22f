/** Only https (and http to loopback, the fake's) URLs are reached with a token. */
export const remoteOf = (repoUrl: string) => {
  try {
    const url = new URL(repoUrl)
    return url.protocol === "https:" || url.protocol === "http:"
      ? { protocol: url.protocol.slice(0, -1), host: url.host }
      : undefined
  } catch {
    return undefined
  }
}

/**
 * The credential helper git runs in the workspace (`credential.helper = !node <this> <socket>`): it passes
 * git's request to the vm-agent's socket and git the answer; it holds nothing itself.
 */
export const HELPER_SCRIPT = `'use strict'
const net = require('net')
const [socketPath, action] = process.argv.slice(2)
let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (d) => { input += d })
process.stdin.on('end', () => {
  if (action !== 'get') return
  const c = net.connect(socketPath)
  let out = ''
  c.setEncoding('utf8')
  c.on('data', (d) => { out += d })
  c.on('end', () => process.stdout.write(out))
  c.on('error', () => process.exit(0))
  c.end(action + '\\n' + input)
})
`
