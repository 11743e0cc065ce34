#!/usr/bin/env bash
# A container engine for this project's image tooling: use one that answers, else start Debian's
# docker.io daemon with its own data root, exec root and socket, and stop it again afterwards.
#
#   bash image/engine.sh start   prints `export DOCKER_HOST=...` lines to eval; starts a daemon only
#                                where none answers (installing docker.io with apt-get where dockerd is missing)
#   bash image/engine.sh stop    stops the daemon only if `start` started it (its pid file says so)
#   bash image/engine.sh status  exit 0 when an engine answers
#   bash image/engine.sh install docker.io and mmdebstrap where missing (CI runs this first)
#
# The daemon binds published ports to 127.0.0.1 by default (--ip), so a `-p 9000:8080` never listens on
# another address; containers reach this machine only (the project's own test hosts).
#
# A separate engine beside another one (a test's fresh engine beside the session's): set
# SENTIMENT_ENGINE_BRIDGE (a bridge name, at most 15 characters) and SENTIMENT_ENGINE_BRIDGE_CIDR (its
# address, default 10.213.77.1/24) with a STATE and SOCKET of its own. `start` then never uses another
# engine (DOCKER_HOST or the default socket), only the one on its socket, and starts dockerd on that bridge
# with --iptables=false: a second dockerd with iptables on flushes the first one's DOCKER chains when it
# starts. engine.sh adds the three rules the bridge needs (outbound NAT, forwarding both ways) and `stop`
# removes exactly those and the bridge, never docker0 or the DOCKER chains another daemon owns.
set -euo pipefail

STATE=${SENTIMENT_ENGINE_STATE:-/var/lib/sentiment-engine}
SOCKET=${SENTIMENT_ENGINE_SOCKET:-/run/sentiment-engine/docker.sock}
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
# Pinned to what Debian 12 ships (engine 20.10); the client on PATH may be newer and talks down to it.
DOCKER_IO_VERSION=${DOCKER_IO_VERSION:-20.10.24+dfsg1-1+deb12u1+b6}
# The iptables chains dockerd creates (in the filter and nat tables).
DOCKER_CHAINS="DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER"
BRIDGE=${SENTIMENT_ENGINE_BRIDGE:-}
BRIDGE_CIDR=${SENTIMENT_ENGINE_BRIDGE_CIDR:-10.213.77.1/24}
# The rules engine.sh added for BRIDGE, one "table chain rule..." a line, for `stop` to delete.
OWN_RULES=$STATE/iptables-rules

say() { echo "engine: $*" >&2; }

answers() { timeout 20 docker ${1:+-H "$1"} info >/dev/null 2>&1; }

ensure_dockerd() {
  command -v dockerd >/dev/null && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "no engine answers and dockerd is not installed (install docker, or run as root on Debian)"; exit 3
  fi
  say "installing Debian's docker.io $DOCKER_IO_VERSION (apt-get) ..."
  apt-get update -q >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "docker.io=$DOCKER_IO_VERSION" >&2; then
    say "docker.io $DOCKER_IO_VERSION is not available here; installing the candidate version"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >&2
  fi
}

# A separate engine's bridge and the rules it needs (dockerd runs with --iptables=false): its containers'
# traffic out is masqueraded, and forwarded both ways whatever the FORWARD policy another daemon set.
setup_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add name "$BRIDGE" type bridge
  ip addr replace "$BRIDGE_CIDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  : >"$OWN_RULES"
  local rule table chain
  for rule in "nat POSTROUTING -s $BRIDGE_CIDR ! -o $BRIDGE -j MASQUERADE" \
              "filter FORWARD -i $BRIDGE -j ACCEPT" \
              "filter FORWARD -o $BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"; do
    read -r table chain rule <<<"$rule"
    # shellcheck disable=SC2086
    iptables -t "$table" -C "$chain" $rule 2>/dev/null || iptables -t "$table" -I "$chain" $rule
    echo "$table $chain $rule" >>"$OWN_RULES"
  done
}

teardown_bridge() {
  local table chain rule
  if [ -f "$OWN_RULES" ] && command -v iptables >/dev/null; then
    while read -r table chain rule; do
      # shellcheck disable=SC2086
      iptables -t "$table" -D "$chain" $rule 2>/dev/null || true
    done <"$OWN_RULES"
  fi
  rm -f "$OWN_RULES"
  ip link delete "$BRIDGE" 2>/dev/null || true
}

start() {
  if [ -z "$BRIDGE" ] && [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
    say "using the engine at $DOCKER_HOST"; return 0
  fi
  if [ -S "$SOCKET" ] && answers "unix://$SOCKET"; then
    say "using the running engine at unix://$SOCKET"; echo "export DOCKER_HOST=unix://$SOCKET"; return 0
  fi
  if [ -z "$BRIDGE" ] && [ -z "${DOCKER_HOST:-}" ] && answers ""; then say "using the default engine"; return 0; fi
  ensure_dockerd
  mkdir -p "$STATE/data" "$STATE/exec" "$(dirname "$SOCKET")"
  say "starting dockerd (data root $STATE/data, socket $SOCKET, log $LOG)"
  # dockerd turns on IP forwarding and sets the FORWARD policy to DROP: what they were is kept, and
  # `stop` puts them back.
  { echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true)"
    echo "forward_policy=$({ iptables -S FORWARD 2>/dev/null || true; } | awk '$1 == "-P" {print $3}')"
  } >"$STATE/host-before"
  local network=()
  if [ -n "$BRIDGE" ]; then
    say "a separate engine: bridge $BRIDGE ($BRIDGE_CIDR), dockerd leaves iptables alone"
    setup_bridge
    network=(--bridge "$BRIDGE" --iptables=false)
  fi
  # setsid: the daemon outlives this script (make calls start and stop in separate shells).
  setsid dockerd --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$PIDFILE" \
    -H "unix://$SOCKET" --ip 127.0.0.1 --userland-proxy=true ${network[@]+"${network[@]}"} >"$LOG" 2>&1 </dev/null &
  echo $! >"$STATE/started-by-us"
  for _ in $(seq 1 60); do
    if answers "unix://$SOCKET"; then echo "export DOCKER_HOST=unix://$SOCKET"; return 0; fi
    if ! kill -0 "$(cat "$STATE/started-by-us")" 2>/dev/null; then break; fi
    sleep 1
  done
  say "dockerd did not answer within 60 s; its log:"; tail -20 "$LOG" >&2; stop; exit 3
}

stop() {
  [ -f "$STATE/started-by-us" ] || { say "not stopping an engine this script did not start"; return 0; }
  local pid; pid=$(cat "$STATE/started-by-us")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping dockerd (pid $pid)"
    # Containers left running are removed first, so the daemon exits promptly and leaves no shims.
    local ids; ids=$(docker -H "unix://$SOCKET" ps -q 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker -H "unix://$SOCKET" rm -f $ids >/dev/null 2>&1 || true
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then say "dockerd still running after 30 s: SIGKILL"; kill -9 "$pid"; fi
  fi
  rm -f "$STATE/started-by-us"
  if [ -n "$BRIDGE" ]; then
    # A separate engine: its own bridge and rules only. The forwarding it turned on is put back only where
    # no other dockerd is left to need it.
    teardown_bridge
    if pgrep -x dockerd >/dev/null 2>&1; then rm -f "$STATE/host-before"; else restore_host; fi
    return 0
  fi
  # What the daemon made on the host: its bridge and its iptables rules and chains (the data root is kept
  # as a build cache; `bash image/engine.sh purge` removes it).
  ip link delete docker0 2>/dev/null || true
  remove_iptables_rules
  restore_host
}

restore_host() {
  [ -f "$STATE/host-before" ] || return 0
  local forwarding policy
  forwarding=$(sed -n 's/^ip_forward=//p' "$STATE/host-before")
  policy=$(sed -n 's/^forward_policy=//p' "$STATE/host-before")
  case "$forwarding" in 0|1) sysctl -qw "net.ipv4.ip_forward=$forwarding" 2>/dev/null || true ;; esac
  case "$policy" in ACCEPT|DROP) iptables -t filter -P FORWARD "$policy" 2>/dev/null || true ;; esac
  rm -f "$STATE/host-before"
}

# Every step tolerates what is already gone: a stop must succeed on a host with none, some or all of the
# daemon's rules left (grep finding nothing is not a failure under pipefail here).
remove_iptables_rules() {
  command -v iptables >/dev/null || return 0
  local table chain rule
  for table in filter nat; do
    # Rules in the built-in chains that jump to the daemon's chains or name its bridge ...
    { iptables -t "$table" -S 2>/dev/null || true; } \
      | { grep -E '^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) .*(-j DOCKER|docker0)' || true; } \
      | sed 's/^-A/-D/' | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done
    # ... then its own chains: all flushed first, so none is still referenced when they are deleted.
    for chain in $DOCKER_CHAINS; do iptables -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in $DOCKER_CHAINS; do iptables -t "$table" -X "$chain" 2>/dev/null || true; done
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  install) ensure_dockerd; command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2 ;;
  status) if [ -S "$SOCKET" ]; then answers "unix://$SOCKET"; else answers "${DOCKER_HOST:-}"; fi ;;
  purge) stop; rm -rf "$STATE" ;;
  *) echo "usage: bash image/engine.sh start|stop|status|install|purge" >&2; exit 2 ;;
esac
