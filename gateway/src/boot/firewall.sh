#!/bin/bash
# Inbound firewall of a SAM node (ADR 0027): nothing comes in but loopback, replies to the node's own
# connections, ICMP and the ports the operator asked for ($SAM_INBOUND_PORTS: "22 8443/tcp 51820/udp").
# The node needs no inbound port at all: it dials NATS and the control plane. When the kernel has no
# ip6_tables (probed here), the IPv6 part is skipped with a log line, the IPv4 part is applied, and the
# script still exits 0. SAM_FIREWALL_DRY_RUN=1 prints the rules instead of applying them (tests run
# this on a shared host); SAM_FIREWALL_SIMULATE_NO_IP6TABLES=1 makes the probe fail.
set -uo pipefail

PORTS=${SAM_INBOUND_PORTS:-}
DRY=${SAM_FIREWALL_DRY_RUN:-0}
log() {
  printf 'sam-firewall: %s\n' "$*" >&2
  if [ -n "${SAM_BOOT_LOG:-}" ]; then
    printf '%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" firewall info "$*" >>"$SAM_BOOT_LOG"
  fi
}
run() {
  if [ "$DRY" = 1 ]; then echo "sam-firewall: would run: $*" >&2; else "$@"; fi
}

for p in $PORTS; do
  if ! [[ $p =~ ^[0-9]{1,5}(/(tcp|udp))?$ ]] || [ "${p%/*}" -lt 1 ] || [ "${p%/*}" -gt 65535 ]; then
    log "refusing the inbound port '$p' (a port 1-65535, optionally /tcp or /udp)"
    exit 1
  fi
done

rules() {
  local tool=$1 icmp=$2
  run "$tool" -w -P INPUT ACCEPT &&
    run "$tool" -w -F INPUT &&
    run "$tool" -w -A INPUT -i lo -j ACCEPT &&
    run "$tool" -w -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT &&
    run "$tool" -w -A INPUT -p "$icmp" -j ACCEPT || return 1
  for p in $PORTS; do
    local proto=tcp
    [[ $p == */udp ]] && proto=udp
    run "$tool" -w -A INPUT -p "$proto" --dport "${p%/*}" -j ACCEPT || return 1
  done
  run "$tool" -w -P INPUT DROP
}

ip6_available() {
  [ "${SAM_FIREWALL_SIMULATE_NO_IP6TABLES:-0}" = 1 ] && return 1
  command -v ip6tables >/dev/null 2>&1 || return 1
  ip6tables -w -L INPUT -n >/dev/null 2>&1
}

if [ "$DRY" != 1 ] && ! command -v iptables >/dev/null 2>&1; then
  log "installing iptables"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q iptables >/dev/null ||
    { log "iptables cannot be installed"; exit 1; }
fi
if ! rules iptables icmp; then
  log "the IPv4 rules could not be applied"
  exit 1
fi
log "IPv4: inbound closed but ${PORTS:-no port}"
if ip6_available; then
  if rules ip6tables ipv6-icmp; then
    log "IPv6: inbound closed but ${PORTS:-no port}"
  else
    log "IPv6: the rules could not be applied; IPv4 is applied"
  fi
else
  log "IPv6: this kernel has no ip6_tables (probed); IPv6 rules skipped, IPv4 applied"
fi
exit 0
