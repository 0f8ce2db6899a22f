import { execFile, execFileSync } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { bootScripts } from "@sam/gateway"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parse } from "yaml"
import * as CloudInit from "../src/cloud/CloudInit.js"

const run = promisify(execFile)
const token = `sam_boot_${"A".repeat(43)}`
const input = (more: Partial<CloudInit.CloudInitInput> = {}): CloudInit.CloudInitInput => ({
  controlPlaneUrl: "https://sam.example.com",
  nodeId: "node_0123456789abcdefghjkmnpqrs",
  token,
  artifactSha256: "a".repeat(64),
  bootScript: bootScripts().boot,
  firewallScript: bootScripts().firewall,
  ...more
})

const hasCloudInit = () => {
  try {
    execFileSync("cloud-init", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sam-cloud-init-"))
  // Debian's cloud-init carries the schema validator; installed here the first time (as root).
  if (!hasCloudInit() && process.getuid?.() === 0)
    execFileSync("apt-get", ["install", "-y", "-q", "cloud-init"], { stdio: "ignore", timeout: 300_000 })
}, 320_000)
afterAll(() => rm(dir, { recursive: true, force: true }))

describe("cloud-init user data", () => {
  it("passes Debian's `cloud-init schema`", async () => {
    expect(hasCloudInit(), "cloud-init is not installed (apt-get install cloud-init)").toBe(true)
    const file = join(dir, "user-data.yaml")
    await writeFile(file, CloudInit.render(input({ inboundPorts: ["22", "51820/udp"] })))
    const { stdout, stderr } = await run("cloud-init", ["schema", "--config-file", file])
    expect(`${stdout}${stderr}`).toMatch(/Valid (cloud-config|schema)/i)
    // The tool does check: a broken document fails it.
    const broken = join(dir, "broken.yaml")
    await writeFile(broken, "#cloud-config\nwrite_files: 5\nruncmd: {a: 1}\n")
    await expect(run("cloud-init", ["schema", "--config-file", broken])).rejects.toThrow()
  }, 60_000)

  it("stops the apt timers first, puts the token in a root-only file, and runs the boot script", () => {
    const text = CloudInit.render(input())
    expect(text.startsWith("#cloud-config\n")).toBe(true)
    const config = parse(text)
    const bootcmd = JSON.stringify(config.bootcmd)
    for (const unit of CloudInit.APT_UNITS) {
      expect(bootcmd).toContain(`systemctl stop ${unit} || true`)
      expect(bootcmd).toContain(`systemctl disable ${unit} || true`)
    }
    const files = Object.fromEntries(
      (config.write_files as Array<{ path: string; permissions: string; content: string }>).map((f) => [f.path, f])
    )
    expect(files["/etc/sam/bootstrap-token"]).toMatchObject({ permissions: "0600", content: token })
    expect(files["/etc/sam/boot.env"]?.permissions).toBe("0600")
    expect(files["/etc/sam/boot.env"]?.content).not.toContain(token)
    expect(files["/usr/local/lib/sam/boot.sh"]?.content).toBe(bootScripts().boot)
    expect(config.runcmd).toEqual([["bash", "/usr/local/lib/sam/boot.sh", "--cloud"]])
    // Nothing long-lived: no NATS credentials, seeds or keys in user data.
    expect(text).not.toMatch(/BEGIN NATS|SUAC|-----BEGIN/)
  })

  it("refuses an inbound port or a URL it cannot put in a boot setting", () => {
    expect(() => CloudInit.render(input({ inboundPorts: ["22; rm -rf /"] }))).toThrow(/not a port/)
    expect(() => CloudInit.render(input({ inboundPorts: ["70000"] }))).toThrow(/not a port/)
    expect(() => CloudInit.render(input({ controlPlaneUrl: "https://x' ; reboot" }))).toThrow(/URL/)
  })
})

describe("the firewall script", () => {
  const firewall = async (env: Record<string, string>) => {
    const script = join(dir, "firewall.sh")
    await writeFile(script, bootScripts().firewall)
    const log = join(dir, `boot-${Object.keys(env).join("-")}.log`)
    return run("bash", [script], {
      env: { PATH: process.env.PATH ?? "", SAM_FIREWALL_DRY_RUN: "1", SAM_BOOT_LOG: log, ...env }
    }).then(
      async ({ stderr }) => ({ code: 0, stderr, log: await readFile(log, "utf8") }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr, log: "" })
    )
  }

  it("without ip6_tables (the probe fails): logs it, applies IPv4, exits 0", async () => {
    const out = await firewall({ SAM_FIREWALL_SIMULATE_NO_IP6TABLES: "1", SAM_INBOUND_PORTS: "22 51820/udp" })
    expect(out.code).toBe(0)
    expect(out.stderr).toContain("would run: iptables -w -P INPUT DROP")
    expect(out.stderr).toContain("would run: iptables -w -A INPUT -p tcp --dport 22 -j ACCEPT")
    expect(out.stderr).toContain("would run: iptables -w -A INPUT -p udp --dport 51820 -j ACCEPT")
    expect(out.stderr).not.toContain("would run: ip6tables")
    expect(out.log).toMatch(/IPv6: this kernel has no ip6_tables \(probed\); IPv6 rules skipped, IPv4 applied/)
  })

  it("opens no inbound port unless asked, and refuses a bad one", async () => {
    const closed = await firewall({ SAM_FIREWALL_SIMULATE_NO_IP6TABLES: "1" })
    expect(closed.code).toBe(0)
    expect(closed.stderr).not.toMatch(/--dport/)
    const bad = await firewall({ SAM_INBOUND_PORTS: "22;reboot" })
    expect(bad.code).toBe(1)
  })
})
