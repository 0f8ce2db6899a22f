import { baseEnv } from "./agentEnv.js"

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

/**
 * SSH as SAM's own git runs it: no config file (neither ~/.ssh/config nor /etc/ssh/ssh_config), no agent, no key,
 * no prompt. SAM hands out no SSH credentials, so a repository reached over SSH is reached as nobody, never as the
 * machine.
 */
export const SSH_WITHOUT_CREDENTIALS =
  "ssh -F /dev/null -o IdentityAgent=none -o PubkeyAuthentication=no -o BatchMode=yes -o ControlPath=none"

/**
 * Everything git needs so that it uses none of the machine's credentials, and none of its config (which could name
 * a credential helper, an SSH command or a URL rewrite): no system or global config, no prompt, no SSH agent.
 */
export const GIT_WITHOUT_MACHINE_CONFIG: Readonly<Record<string, string>> = {
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_TERMINAL_PROMPT: "0",
  GIT_SSH_COMMAND: SSH_WITHOUT_CREDENTIALS
}

/** What of the vm-agent's environment SAM's git keeps: how the machine reaches the network, nothing else. */
const NETWORK_ENV = [
  "http_proxy",
  "https_proxy",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "no_proxy",
  "NO_PROXY",
  "all_proxy",
  "ALL_PROXY",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR"
]

/**
 * The whole environment of a git the vm-agent runs itself against a workspace's repository (the clone), whose URL
 * any SAM user chose: not the vm-agent's, whose HOME, SSH_AUTH_SOCK, askpass and config would reach whatever the
 * machine's operator can (ADR 0048: a workspace reaches a repository only as its submitter may, with the token SAM
 * issues). `home` holds no git config.
 */
export const gitEnv = (home: string): Record<string, string> => ({
  ...baseEnv(home),
  ...Object.fromEntries(NETWORK_ENV.flatMap((name) => (process.env[name] ? [[name, process.env[name]]] : []))),
  ...GIT_WITHOUT_MACHINE_CONFIG
})
