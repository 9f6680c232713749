#!/usr/bin/env bash
# A real multi-node Ray cluster on this machine, for trying cluster mode and for its tests.
#
#   scripts/cluster.sh up [--workers N] [--cpus C] [--head-cpus H]
#   scripts/cluster.sh env                 the exports a client needs (RAY_ADDRESS, token, job API)
#   scripts/cluster.sh status              each node's address and `ray status` (its "Active:" nodes)
#   scripts/cluster.sh exec NODE -- CMD... runs a command on a node (in its namespace), e.g. a launcher
#   scripts/cluster.sh kill-node worker-1  ends one node: its raylet and every process on it
#   scripts/cluster.sh start-node worker-1 starts a killed worker node again; it rejoins the cluster
#   scripts/cluster.sh down                stops every process and removes the namespaces and links
#
# Every node is a separate `ray start` in a network namespace of its own, joined to the others by a
# veth link on a bridge that this script creates, so node-to-node traffic crosses an interface.
# Addresses: the bridge 10.247.0.1/24 on this host, the head 10.247.0.10, worker i 10.247.0.(10+i).
# Ray listens on every interface of its namespace, which holds only loopback and that link: nothing
# listens on this host's own interfaces, and no traffic goes anywhere but these addresses. The
# cluster uses Ray's token authentication (a 0600 token file in the state folder), as any cluster
# off loopback should. Each node has its own CPUs and a resource named after it (`livo_head`,
# `livo_worker_1`, ...).
#
# Every process of the cluster carries LIVO_CLUSTER=<id> and LIVO_CLUSTER_NODE=<name> in its
# environment (Ray's processes inherit it): that is how `kill-node` and `down` find exactly this
# cluster's processes and no other Ray on the machine. A failed `up` runs `down`. Needs root (network
# namespaces) and iproute2.
#
# Settings (environment): LIVO_CLUSTER_DIR (state, token and Ray's temp folder; default
# /tmp/livo-cluster), LIVO_CLUSTER_RAY (the `ray` executable; default the project's).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh

STATE_DIR="${LIVO_CLUSTER_DIR:-/tmp/livo-cluster}"
STATE="$STATE_DIR/cluster.env"
RAY="${LIVO_CLUSTER_RAY:-$(command -v ray || true)}"
SUBNET=10.247.0
BRIDGE=livobr0
PORT=6379
DASHBOARD_PORT=8265
export RAY_USAGE_STATS_ENABLED=0
# A caller's single-machine Ray settings (a livo process sets them for its own local Ray) must not
# reach the nodes: they would refuse to form a multi-node cluster.
unset RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER RAY_ADDRESS

die() { echo "cluster: $*" >&2; exit 1; }

state_value() {  # NAME -> its value in the state file (empty when no cluster is up)
  [ -f "$STATE" ] && sed -n "s/^$1=//p" "$STATE" | tr -d '"'
}

node_address() { echo "$SUBNET.$((10 + $1))"; }         # node index (0 = head) -> address
node_name() { if [ "$1" -eq 0 ]; then echo head; else echo "worker-$1"; fi; }

# PIDs of this cluster's processes (of one node when $2 is given), found by their environment.
marked_pids() {
  local id="$1" node="${2:-}" pid environ
  for environ in /proc/[0-9]*/environ; do
    pid="${environ#/proc/}"; pid="${pid%/environ}"
    [ "$pid" = "$$" ] && continue
    # (stderr first: a process that ends while we look must not print an error)
    tr '\0' '\n' 2>/dev/null < "$environ" | grep -qx "LIVO_CLUSTER=$id" || continue
    if [ -n "$node" ]; then
      tr '\0' '\n' 2>/dev/null < "$environ" | grep -qx "LIVO_CLUSTER_NODE=$node" || continue
    fi
    echo "$pid"
  done
}

# SIGTERM, up to 3 s of grace, then SIGKILL for whatever is left. (Ray's GCS server and autoscaler
# monitor do not end on SIGTERM once their raylets are gone; the cluster keeps no state worth a
# longer wait: its GCS holds everything in memory.)
stop_pids() {
  local id="$1" pids
  pids=$(marked_pids "$id")
  [ -z "$pids" ] && return 0
  kill -TERM $pids 2>/dev/null
  for _ in $(seq 1 6); do
    pids=$(marked_pids "$id")
    [ -z "$pids" ] && return 0
    sleep 0.5
  done
  kill -KILL $pids 2>/dev/null
  sleep 0.5
  pids=$(marked_pids "$id")
  [ -z "$pids" ] || { echo "cluster: processes still running: $pids" >&2; return 1; }
}

make_network() {  # nodes
  ip link add "$BRIDGE" type bridge || return 1
  ip addr add "$SUBNET.1/24" dev "$BRIDGE" && ip link set "$BRIDGE" up || return 1
  local k ns
  for k in $(seq 0 $(($1 - 1))); do
    ns="livo-node$k"
    ip netns add "$ns" || return 1
    ip link add "lvh$k" type veth peer name "lvn$k" || return 1
    ip link set "lvh$k" master "$BRIDGE" up && ip link set "lvn$k" netns "$ns" || return 1
    ip -n "$ns" addr add "$(node_address "$k")/24" dev "lvn$k" || return 1
    ip -n "$ns" link set "lvn$k" up && ip -n "$ns" link set lo up || return 1
  done
}

remove_network() {
  local ns k
  for ns in $(ip netns list 2>/dev/null | awk '/^livo-node[0-9]+/ {print $1}'); do
    ip netns del "$ns" 2>/dev/null
  done
  for k in $(ip -o link show 2>/dev/null | awk -F': ' '/ lvh[0-9]+@/ {print $2}' | cut -d@ -f1); do
    ip link del "$k" 2>/dev/null
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  return 0
}

start_node() {  # index extra-args...
  local k="$1"; shift
  local name address; name="$(node_name "$k")"; address="$(node_address "$k")"
  ip netns exec "livo-node$k" env LIVO_CLUSTER="$ID" LIVO_CLUSTER_NODE="$name" \
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STATE_DIR/token" \
    timeout 120 "$RAY" start --node-ip-address "$address" --disable-usage-stats "$@" \
    > "$STATE_DIR/$name.log" 2>&1 \
    || { echo "cluster: $name ($address) did not start; see $STATE_DIR/$name.log:" >&2; tail -5 "$STATE_DIR/$name.log" >&2; return 1; }
}

active_nodes() {
  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STATE_DIR/token" timeout 30 "$RAY" status \
    --address "$(state_value RAY_ADDRESS)" 2>/dev/null | awk '/^Active:/ {on = 1; next} /^Pending:/ {on = 0} on && /node_/ {n++} END {print n + 0}'
}

wait_active() {  # nodes: until the head sees them all (a worker registers a moment after its start)
  local _
  for _ in $(seq 1 60); do
    [ "$(active_nodes)" -ge "$1" ] && return 0
    sleep 1
  done
  echo "cluster: only $(active_nodes) of $1 nodes became active within 60 s" >&2
  return 1
}

up() {
  local workers=1 cpus=1 head_cpus=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --workers) workers="${2:-}"; shift 2 ;;
      --cpus) cpus="${2:-}"; shift 2 ;;
      --head-cpus) head_cpus="${2:-}"; shift 2 ;;
      *) die "up: unknown option $1 (--workers N, --cpus C, --head-cpus H)" ;;
    esac
  done
  head_cpus="${head_cpus:-$cpus}"
  [[ "$workers" =~ ^[0-9]+$ ]] && [ "$workers" -ge 1 ] && [ "$workers" -le 200 ] || die "up: --workers must be 1..200, got $workers"
  [[ "$cpus" =~ ^[0-9]+$ ]] && [ "$cpus" -ge 1 ] || die "up: --cpus must be a positive integer, got $cpus"
  [[ "$head_cpus" =~ ^[0-9]+$ ]] || die "up: --head-cpus must be a non-negative integer, got $head_cpus"
  [ "$(id -u)" -eq 0 ] || die "up: needs root, to create network namespaces"
  command -v ip >/dev/null || die "up: needs iproute2 (the ip command)"
  [ -n "$RAY" ] || die "ray is not installed (run scripts/setup.sh)"
  [ -z "$(state_value CLUSTER_ID)" ] || die "a cluster is already up (state in $STATE); run: scripts/cluster.sh down"
  if ip link show "$BRIDGE" >/dev/null 2>&1 || ip netns list 2>/dev/null | grep -q '^livo-node'; then
    die "up: links or namespaces of an earlier cluster are left; run: scripts/cluster.sh down"
  fi
  mkdir -p "$STATE_DIR" && chmod 700 "$STATE_DIR"
  ID="livo-$(date +%s)-$$"
  (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' > "$STATE_DIR/token")
  local head; head="$(node_address 0)"
  {
    echo "CLUSTER_ID=$ID"
    echo "RAY_ADDRESS=$head:$PORT"
    echo "JOB_ADDRESS=http://$head:$DASHBOARD_PORT"
    echo "TOKEN=$STATE_DIR/token"
    echo "CPUS=$cpus"
    echo "NODES=\"$(for k in $(seq 0 "$workers"); do printf '%s@%s ' "$(node_name "$k")" "$(node_address "$k")"; done)\""
  } > "$STATE"
  trap 'echo "cluster: up failed; removing what it made" >&2; down >/dev/null; exit 1' ERR
  set -E
  make_network $((workers + 1))
  start_node 0 --head --port "$PORT" --num-cpus "$head_cpus" --resources '{"livo_head": 1}' \
    --include-dashboard true --dashboard-host "$head" --dashboard-port "$DASHBOARD_PORT" \
    --temp-dir "$STATE_DIR/ray"
  local k
  for k in $(seq 1 "$workers"); do
    start_node "$k" --address "$head:$PORT" --num-cpus "$cpus" --resources "{\"livo_worker_$k\": 1}"
  done
  wait_active $((workers + 1))
  trap - ERR
  echo "cluster $ID up: $((workers + 1)) nodes (head $head, workers $(node_address 1)..$(node_address "$workers"))"
  echo "for clients: eval \"\$(scripts/cluster.sh env)\""
}

client_env() {
  [ -n "$(state_value CLUSTER_ID)" ] || die "no cluster is up (no $STATE); run: scripts/cluster.sh up"
  echo "export LIVO_CLUSTER_RAY_ADDRESS=$(state_value RAY_ADDRESS) RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$(state_value TOKEN)"
  echo "export LIVO_CLUSTER_JOB_ADDRESS=$(state_value JOB_ADDRESS)"
}

status() {
  local id; id="$(state_value CLUSTER_ID)"
  [ -n "$id" ] || die "no cluster is up (no $STATE); run: scripts/cluster.sh up"
  echo "cluster $id; job API $(state_value JOB_ADDRESS)"
  local node
  for node in $(state_value NODES); do
    echo "node ${node%@*}: address ${node#*@}, $(marked_pids "$id" "${node%@*}" | wc -l) processes"
  done
  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$(state_value TOKEN)" timeout 30 "$RAY" status --address "$(state_value RAY_ADDRESS)"
}

# A command on one node, as a process of that node: it runs in the node's namespace, carries the
# cluster's marker (so kill-node and down end it too), and finds the cluster's settings in its
# environment: LIVO_CLUSTER_HEAD (the head's address), LIVO_CLUSTER_NODE_ADDRESS, the node's rank
# LIVO_CLUSTER_NODE_RANK (0 = head), and GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME naming the node's
# link, which torch.distributed needs where a host has several interfaces, and the cluster's Ray token
# settings (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH), so `ray status` or `livo serve --ray-address` work there.
exec_on_node() {
  local id name="${1:-}"; id="$(state_value CLUSTER_ID)"
  [ -n "$id" ] || die "no cluster is up (no $STATE); run: scripts/cluster.sh up"
  [ -n "$name" ] || die "exec: name a node (head, worker-1, ...)"
  shift
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || die "exec: give a command after the node: exec $name -- CMD..."
  local k
  case "$name" in
    head) k=0 ;;
    worker-[0-9]*) k="${name#worker-}" ;;
    *) die "exec: no node $name in this cluster ($(state_value NODES))" ;;
  esac
  state_value NODES | tr ' ' '\n' | grep -q "^$name@" || die "exec: no node $name in this cluster ($(state_value NODES))"
  exec ip netns exec "livo-node$k" env LIVO_CLUSTER="$id" LIVO_CLUSTER_NODE="$name" \
    LIVO_CLUSTER_HEAD="$(node_address 0)" LIVO_CLUSTER_NODE_ADDRESS="$(node_address "$k")" LIVO_CLUSTER_NODE_RANK="$k" \
    GLOO_SOCKET_IFNAME="lvn$k" NCCL_SOCKET_IFNAME="lvn$k" \
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$(state_value TOKEN)" "$@"
}

# Refuses anything but a worker node of the running cluster: ACTION NAME what-to-do-with-the-head.
check_worker_node() {
  local action="$1" name="$2" head_hint="$3"
  [ -n "$(state_value CLUSTER_ID)" ] || die "no cluster is up (no $STATE); run: scripts/cluster.sh up"
  [ -n "$name" ] || die "$action: name a worker node (e.g. worker-1)"
  [ "$name" != head ] || die "$action: the head cannot be $head_hint"
  state_value NODES | tr ' ' '\n' | grep -q "^$name@" || die "$action: no node $name in this cluster ($(state_value NODES))"
}

kill_node() {
  local id name="${1:-}"; id="$(state_value CLUSTER_ID)"
  check_worker_node kill-node "$name" "killed alone; use down"
  local pids; pids=$(marked_pids "$id" "$name")
  [ -n "$pids" ] || die "kill-node: $name has no processes left"
  kill -KILL $pids 2>/dev/null
  echo "killed node $name ($(echo $pids | wc -w) processes)"
}

# A killed worker node back in the cluster: a new raylet on the same namespace and address, with the
# node's CPUs and resource. The head must first have marked the old raylet dead (Ray's health checks,
# about 15 s after a kill): until then a new one at the same address would be counted beside it.
start_worker_node() {
  local id name="${1:-}"; id="$(state_value CLUSTER_ID)"
  check_worker_node start-node "$name" "restarted alone; use down and up"
  [ -z "$(marked_pids "$id" "$name")" ] || die "start-node: $name is running; kill-node $name first"
  local k="${name#worker-}" nodes _
  nodes=$(state_value NODES | wc -w)
  ID="$id"
  for _ in $(seq 1 60); do
    [ "$(active_nodes)" -lt "$nodes" ] && break
    sleep 1
  done
  [ "$(active_nodes)" -lt "$nodes" ] || die "start-node: the head still lists $nodes active nodes 60 s after $name ended"
  start_node "$k" --address "$(state_value RAY_ADDRESS)" --num-cpus "$(state_value CPUS)" \
    --resources "{\"livo_worker_$k\": 1}" || exit 1
  wait_active "$nodes" || exit 1
  echo "started node $name ($(node_address "$k")); $nodes nodes active"
}

down() {
  local id; id="$(state_value CLUSTER_ID)"
  if [ -n "$id" ]; then
    stop_pids "$id" || return 1
  fi
  remove_network
  rm -rf "$STATE_DIR"
  echo "cluster down"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  env) client_env ;;
  status) status ;;
  exec) shift; exec_on_node "$@" ;;
  kill-node) kill_node "${2:-}" ;;
  start-node) start_worker_node "${2:-}" ;;
  down) down ;;
  *) echo "usage: scripts/cluster.sh up [--workers N] [--cpus C] [--head-cpus H] | env | status | exec NODE -- CMD... | kill-node NAME | start-node NAME | down" >&2; exit 2 ;;
esac
