import { stringify } from "yaml"

/** What a node's user data needs; nothing in it outlives the boot (the token is single-use, minutes). */
export interface CloudInitInput {
  /** the control plane's URL as the node reaches it (its gateway): artifact, exchange */
  readonly controlPlaneUrl: string
  readonly nodeId: string
  /** the bootstrap token (single use, short-lived) */
  readonly token: string
  /** the sha256 of the vm-agent artifact the node must install */
  readonly artifactSha256: string
  /** the sha256 of the control plane's Node runtime, installed when the image's Node is older than 20 */
  readonly runtimeSha256?: string
  readonly bootScript: string
  readonly firewallScript: string
  /** inbound ports the operator opens ("22", "8443/tcp", "51820/udp"); none by default */
  readonly inboundPorts?: ReadonlyArray<string>
  /** the vm-agent's workspace runtime (default `auto`: Docker when an engine answers, else host processes) */
  readonly runtime?: "auto" | "docker" | "host"
}

const PORT = /^([0-9]{1,5})(\/(tcp|udp))?$/

export class CloudInitError extends Error {}

const shellValue = (name: string, value: string) => {
  if (!/^[A-Za-z0-9_.:/@%+,=-]*$/.test(value))
    throw new CloudInitError(`${name} holds characters a boot setting may not`)
  return `${name}=${value}`
}

/** The apt units a fresh VM must not run while it installs (each step `|| true`: an image may lack one). */
export const APT_UNITS = [
  "apt-daily.timer",
  "apt-daily-upgrade.timer",
  "apt-daily.service",
  "apt-daily-upgrade.service",
  "unattended-upgrades.service"
] as const

/**
 * A node's `#cloud-config` user data (ADR 0027). `bootcmd` stops and disables the apt daily timers and
 * unattended-upgrades at the first stage of every boot, before anything installs; `write_files` puts
 * the boot script, the firewall script, the boot settings and the token (root-only) in place; `runcmd`
 * runs the boot script, which does the rest (firewall, Node, the checksummed vm-agent artifact, the
 * `sam-vm-agent.service` unit) and logs each step for the node's boot log. No package module runs
 * (the script installs what it needs, in order).
 */
export const render = (input: CloudInitInput) => {
  const ports = input.inboundPorts ?? []
  for (const port of ports) {
    const m = PORT.exec(port)
    if (m === null || Number(m[1]) < 1 || Number(m[1]) > 65535)
      throw new CloudInitError(`inbound port ${JSON.stringify(port)} is not a port 1-65535 (optionally /tcp or /udp)`)
  }
  if (!/^https?:\/\/[^\s'"]+$/.test(input.controlPlaneUrl))
    throw new CloudInitError("the control plane URL must be http(s)://… without spaces or quotes")
  const env = [
    shellValue("SAM_URL", input.controlPlaneUrl.replace(/\/+$/, "")),
    shellValue("SAM_NODE_ID", input.nodeId),
    shellValue("SAM_ARTIFACT_SHA256", input.artifactSha256),
    ...(input.runtimeSha256 === undefined ? [] : [shellValue("SAM_RUNTIME_SHA256", input.runtimeSha256)]),
    `SAM_INBOUND_PORTS="${ports.join(" ")}"`,
    shellValue("SAM_NODE_RUNTIME", input.runtime ?? "auto"),
    "SAM_CLOUD=1"
  ]
  const quiet = APT_UNITS.map((unit) => `systemctl stop ${unit} || true; systemctl disable ${unit} || true`).join("; ")
  const config = {
    package_update: false,
    package_upgrade: false,
    bootcmd: [
      [
        "sh",
        "-c",
        `${quiet}; echo "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\tcloud-init\tinfo\tbootcmd: apt timers stopped" >> /var/log/sam-boot.log`
      ]
    ],
    write_files: [
      { path: "/usr/local/lib/sam/boot.sh", permissions: "0755", owner: "root:root", content: input.bootScript },
      {
        path: "/usr/local/lib/sam/firewall.sh",
        permissions: "0755",
        owner: "root:root",
        content: input.firewallScript
      },
      { path: "/etc/sam/boot.env", permissions: "0600", owner: "root:root", content: `${env.join("\n")}\n` },
      { path: "/etc/sam/bootstrap-token", permissions: "0600", owner: "root:root", content: input.token }
    ],
    runcmd: [["bash", "/usr/local/lib/sam/boot.sh", "--cloud"]]
  }
  return `#cloud-config\n${stringify(config, { lineWidth: 0 })}`
}
