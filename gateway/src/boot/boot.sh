#!/bin/bash
# SAM node boot script (ADR 0027). Run as root by cloud-init (runcmd, `--cloud`) on a fresh VM, or by
# hand on a machine its owner joins (`curl -fsSL <url>/api/v1/node-boot/boot.sh | sudo bash -s -- ...`).
# It installs the vm-agent from the control plane's checksummed artifact and runs it as the systemd
# service sam-vm-agent.service; the vm-agent trades the bootstrap token (single use, minutes) for its
# node's NATS credentials. Each step is a line in $SAM_BOOT_LOG, sent live to the control plane on a cloud
# node and again by the vm-agent with its exchange, the node's boot log; `set -x` traces every command
# (never the token) to $SAM_BOOT_TRACE.
set -euo pipefail
umask 077

SAM_ETC=${SAM_ETC:-/etc/sam}
SAM_LIB=${SAM_LIB:-/usr/local/lib/sam}
SAM_OPT=${SAM_OPT:-/opt/sam}
SAM_STATE=${SAM_STATE:-/var/lib/sam}
SAM_BOOT_LOG=${SAM_BOOT_LOG:-/var/log/sam-boot.log}
SAM_BOOT_TRACE=${SAM_BOOT_TRACE:-/var/log/sam-boot.trace}
SAM_UNIT=${SAM_UNIT:-/etc/systemd/system/sam-vm-agent.service}
if [ -f "$SAM_ETC/boot.env" ]; then . "$SAM_ETC/boot.env"; fi

CLOUD=${SAM_CLOUD:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --url) SAM_URL=$2; shift 2 ;;
    --token) SAM_BOOT_TOKEN=$2; shift 2 ;;
    --node-id) SAM_NODE_ID=$2; shift 2 ;;
    --sha256) SAM_ARTIFACT_SHA256=$2; shift 2 ;;
    --inbound-ports) SAM_INBOUND_PORTS=$2; shift 2 ;;
    --runtime) SAM_NODE_RUNTIME=$2; shift 2 ;;
    --cloud) CLOUD=1; shift ;;
    *) echo "sam-boot: unknown argument $1 (--url URL --token TOKEN [--node-id ID] [--sha256 SHA] [--cloud])" >&2; exit 2 ;;
  esac
done

mkdir -p "$SAM_ETC" "$SAM_STATE" "$(dirname "$SAM_BOOT_LOG")"
log() {
  printf '%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$1" "$2" "$3" >>"$SAM_BOOT_LOG"
  printf 'sam-boot: %s %s: %s\n' "$1" "$2" "$3" >&2
  send_log
}
# A cloud node's boot log goes to the control plane as it is written (POST /api/v1/node-boot/log with the
# bootstrap token while it is unspent), so its node page shows the boot as it goes. Best effort: every
# line not yet taken (the firewall script's too) goes with the next one, the vm-agent sends the whole log
# with its exchange, and a line is stored once by its number. A joining machine's node is made by its
# exchange, so its log goes with that only. Run without the trace: the body holds the token.
json_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/}
  printf -v REPLY '"%s"' "$s"
}
post_json() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 5 -H 'content-type: application/json' --data-binary @- -o /dev/null "$1"
  elif command -v node >/dev/null 2>&1; then
    node -e 'fetch(process.argv[1], { method: "POST", headers: { "content-type": "application/json" },
      body: require("node:fs").readFileSync(0), signal: AbortSignal.timeout(5000) })
      .then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$1"
  else
    return 1
  fi
}
send_log_now() {
  set +x
  [ -n "${SAM_NODE_ID:-}" ] && [ -s "$SAM_ETC/bootstrap-token" ] && [ -n "${SAM_URL:-}" ] || return 0
  local token taken=0 n=0 last=0 entries="" at step status message
  token=$(<"$SAM_ETC/bootstrap-token")
  [ -s "$SAM_STATE/boot-log.sent" ] && taken=$(<"$SAM_STATE/boot-log.sent")
  while IFS=$'\t' read -r at step status message; do
    n=$((n + 1))
    [ "$n" -gt "$taken" ] || continue
    case "$status" in started | completed | failed | info) ;; *) continue ;; esac
    [ -n "$at" ] && [ -n "$step" ] || continue
    json_string "$at" && at=$REPLY
    json_string "$step" && step=$REPLY
    json_string "$status" && status=$REPLY
    json_string "${message:0:2000}" && message=$REPLY
    entries+="${entries:+,}{\"seq\":$n,\"at\":$at,\"step\":$step,\"status\":$status,\"message\":$message}"
    last=$n
    [ $((n - taken)) -lt 50 ] || break
  done <"$SAM_BOOT_LOG"
  [ -n "$entries" ] || return 0
  printf '{"token":"%s","nodeId":"%s","entries":[%s]}' "$token" "$SAM_NODE_ID" "$entries" |
    post_json "$SAM_URL/api/v1/node-boot/log" && echo "$last" >"$SAM_STATE/boot-log.sent"
}
send_log() {
  (send_log_now) 2>/dev/null || true
}
fail() {
  log "$1" failed "$2"
  exit 1
}

[ -n "${SAM_URL:-}" ] || fail config "no control plane URL (--url)"
case "$SAM_URL" in http://* | https://*) ;; *) fail config "the control plane URL must be http(s)://…" ;; esac
SAM_URL=${SAM_URL%/}
# The token goes to a root-only file now and is never expanded again, so the trace cannot show it.
if [ -n "${SAM_BOOT_TOKEN:-}" ]; then
  printf '%s' "$SAM_BOOT_TOKEN" >"$SAM_ETC/bootstrap-token"
  unset SAM_BOOT_TOKEN
fi
if [ ! -s "$SAM_ETC/bootstrap-token" ] && [ ! -s "$SAM_STATE/node.creds" ]; then fail config "no bootstrap token (--token)"; fi
sed -i '/^SAM_BOOT_TOKEN=/d' "$SAM_ETC/boot.env" 2>/dev/null || true

exec {trace_fd}>>"$SAM_BOOT_TRACE"
BASH_XTRACEFD=$trace_fd
set -x
log boot started "booting as a SAM node of $SAM_URL (cloud=$CLOUD)"

if [ "$CLOUD" = 1 ]; then
  # A fresh VM's apt timers and unattended-upgrades would take the dpkg lock in the middle of the
  # install (and restart services under the agent): stopped and disabled before anything else.
  log apt-timers started "stopping apt daily timers and unattended-upgrades"
  for unit in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service unattended-upgrades.service; do
    systemctl stop "$unit" >/dev/null 2>&1 || true
    systemctl disable "$unit" >/dev/null 2>&1 || true
  done
  log apt-timers completed "apt daily timers and unattended-upgrades stopped and disabled"

  log firewall started "inbound: nothing but ${SAM_INBOUND_PORTS:-no port}"
  if SAM_BOOT_LOG="$SAM_BOOT_LOG" SAM_INBOUND_PORTS="${SAM_INBOUND_PORTS:-}" bash "$SAM_LIB/firewall.sh"; then
    log firewall completed "firewall applied"
  else
    fail firewall "the firewall could not be applied (exit $?)"
  fi
fi

node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'
}
# A download before Node is there: curl, wget, or (plain http only) bash's /dev/tcp.
download() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 5 --retry-delay 2 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q --tries=5 --waitretry=2 -O "$2" "$1"
  else
    http_get "$1" "$2"
  fi
}
http_get() {
  local rest=${1#http://} line status
  [ "$rest" != "$1" ] || return 1
  local hostport=${rest%%/*} path="/${rest#*/}"
  local host=${hostport%:*} port=${hostport##*:}
  [ "$port" != "$hostport" ] || port=80
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
  IFS= read -r status <&3 || return 1
  case "$status" in "HTTP/1."?" 200"*) ;; *)
    exec 3<&-
    return 1
    ;;
  esac
  while IFS= read -r line <&3; do [ -n "${line%$'\r'}" ] || break; done
  cat <&3 >"$2"
  exec 3<&-
}
log node started "looking for Node.js >= 20"
if ! node_ok; then
  # The control plane's own Node first (the same >= 20 everywhere, checksummed), for a machine of its
  # architecture; else the distribution's nodejs (Node >= 20 from Debian 13, Ubuntu 24.10 on).
  runtime_sum="$SAM_OPT/node-runtime.sha256"
  mkdir -p "$SAM_OPT"
  if download "$SAM_URL/api/v1/node-boot/node-runtime.sha256" "$runtime_sum"; then
    read -r runtime_sha _ runtime_arch <"$runtime_sum" || true
    if [ "${runtime_arch:-}" = "$(uname -m)" ]; then
      log node info "installing the control plane's Node runtime ($runtime_arch)"
      expected=${SAM_RUNTIME_SHA256:-$runtime_sha}
      download "$SAM_URL/api/v1/node-boot/node-runtime.tar.gz" "$SAM_OPT/node-runtime.tar.gz" ||
        fail node "cannot download the Node runtime"
      actual=$(sha256sum "$SAM_OPT/node-runtime.tar.gz" | cut -d' ' -f1)
      [ "$actual" = "$expected" ] || fail node "Node runtime sha256 mismatch: expected $expected, got $actual"
      mkdir -p "$SAM_OPT/node"
      tar -xzf "$SAM_OPT/node-runtime.tar.gz" -C "$SAM_OPT/node" --no-same-owner
      chmod 0755 "$SAM_OPT" "$SAM_OPT/node" "$SAM_OPT/node/bin"
      ln -sfn "$SAM_OPT/node/bin/node" /usr/local/bin/node
      rm -f "$SAM_OPT/node-runtime.tar.gz"
      hash -r
    fi
  fi
fi
if ! node_ok; then
  log node info "installing nodejs from the distribution (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q || fail node "apt-get update failed"
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends nodejs ca-certificates tar ||
    fail node "apt-get install nodejs failed"
  node_ok || fail node "Node $(node --version 2>/dev/null || echo none) is older than 20, and the control plane has no runtime for $(uname -m)"
fi
NODE_BIN=$(command -v node)
log node completed "Node $(node --version) at $NODE_BIN"

# Downloads once Node is there: retried on 429 (after its Retry-After, at most 60 s), 5xx and network
# errors, 6 attempts in all (many servers booting at once share the control plane's limits).
fetch_to() {
  node -e '
    const [url, file] = process.argv.slice(1)
    const sleep = (s) => new Promise((done) => setTimeout(done, s * 1000))
    const attempt = async (n) => {
      try {
        const r = await fetch(url)
        if (r.ok) return require("node:fs").writeFileSync(file, Buffer.from(await r.arrayBuffer()), { mode: 0o600 })
        const text = await r.text()
        if (n >= 6 || (r.status !== 429 && r.status < 500)) throw new Error(`${url}: HTTP ${r.status} ${text}`)
        await sleep(Math.min(60, Number(r.headers.get("retry-after")) || 2 ** n))
      } catch (e) {
        if (n >= 6 || String(e.message).startsWith(url)) throw e
        await sleep(2 ** n)
      }
      return attempt(n + 1)
    }
    attempt(1).catch((e) => { console.error(String(e && e.message || e)); process.exit(1) })' "$1" "$2"
}

log artifact started "downloading the vm-agent from $SAM_URL"
mkdir -p "$SAM_OPT/releases"
partial="$SAM_OPT/vm-agent.tar.gz.partial"
fetch_to "$SAM_URL/api/v1/node-boot/vm-agent.tar.gz" "$partial" || fail artifact "cannot download the vm-agent"
if [ -z "${SAM_ARTIFACT_SHA256:-}" ]; then
  fetch_to "$SAM_URL/api/v1/node-boot/vm-agent.sha256" "$partial.sha256" || fail artifact "cannot download its sha256"
  SAM_ARTIFACT_SHA256=$(cut -d' ' -f1 "$partial.sha256")
  rm -f "$partial.sha256"
fi
actual=$(sha256sum "$partial" | cut -d' ' -f1)
if [ "$actual" != "$SAM_ARTIFACT_SHA256" ]; then
  rm -f "$partial"
  fail artifact "sha256 mismatch: expected $SAM_ARTIFACT_SHA256, got $actual"
fi
release="$SAM_OPT/releases/$actual"
mkdir -p "$release"
tar -xzf "$partial" -C "$release" --no-same-owner
chmod 0755 "$SAM_OPT" "$SAM_OPT/releases" "$release"
ln -sfn "$release" "$SAM_OPT/current"
rm -f "$partial"
log artifact completed "vm-agent $actual installed in $release"

log service started "installing sam-vm-agent.service"
cat >"$SAM_ETC/vm-agent.env" <<ENV
SAM_BOOTSTRAP_URL=$SAM_URL
SAM_BOOTSTRAP_TOKEN_FILE=$SAM_ETC/bootstrap-token
SAM_NODE_STATE_DIR=$SAM_STATE
SAM_NODE_DATA_DIR=$SAM_STATE/data
SAM_NODE_RUNTIME=${SAM_NODE_RUNTIME:-auto}
SAM_COMPILED=1
SAM_DEMO_AGENT_BUNDLE=$SAM_OPT/current/demo-agent.mjs
SAM_BOOT_LOG=$SAM_BOOT_LOG
ENV
if [ -n "${SAM_NODE_ID:-}" ]; then echo "SAM_NODE_ID=$SAM_NODE_ID" >>"$SAM_ETC/vm-agent.env"; fi
if [ -n "${SAM_VM_AGENT_ENV:-}" ]; then printf '%s\n' "$SAM_VM_AGENT_ENV" >>"$SAM_ETC/vm-agent.env"; fi
mkdir -p "$(dirname "$SAM_UNIT")"
cat >"$SAM_UNIT" <<UNIT
[Unit]
Description=SAM vm-agent (node daemon)
Wants=network-online.target
After=network-online.target

[Service]
EnvironmentFile=$SAM_ETC/vm-agent.env
ExecStart=$NODE_BIN $SAM_OPT/current/vm-agent.mjs
Restart=always
RestartSec=5
# 78: the control plane refused the node's credentials (deleted, or expired unrenewed); restarting cannot help
RestartPreventExitStatus=78
KillMode=mixed
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$SAM_UNIT"

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
  systemctl enable sam-vm-agent.service
  systemctl restart sam-vm-agent.service
  log service completed "sam-vm-agent.service enabled and started"
else
  # No systemd (a container standing in for a VM in tests): run the unit's ExecStart with its
  # EnvironmentFile, in the foreground, as systemd would.
  log service info "systemd is not running (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): running the unit's ExecStart in the foreground"
  set -a
  . "$SAM_ETC/vm-agent.env"
  set +a
  exec_start=$(sed -n 's/^ExecStart=//p' "$SAM_UNIT")
  # shellcheck disable=SC2086 # ExecStart is split into words, as systemd does
  exec $exec_start
fi
