#!/usr/bin/env bash
# Tests deploy/: builds the static binary and the FROM-scratch image (deploy/build-image.sh),
# starts deploy/compose.yaml's three-node TLS cluster (its init services make the PKI), and from
# the host, with the static binary as the client and the PKI copied out of the volume:
#   0. checks that the nodes run as a non-root uid (the image's USER, and the process seen from
#      the host);
#   1. waits for a leader (`cluster status` over the published ports);
#   2. grants a writer, submits a record and verifies its receipt offline (`verify`);
#   3. kills the leader's container (SIGKILL): a new leader is elected, a second record is
#      appended and verified;
#   4. starts that container again and waits until it has caught up (same tree size and root);
# then `docker-compose down -v` and removes the image, however it exits.
#
#   deploy/compose-test.sh                 # the release build (target/static)
#   deploy/compose-test.sh --dev           # the debug build made static (.ci/run, after .ci/test)
#
# Takes, measured on a 2-vCPU machine shared with other builds (load average 5 to 12): the
# static release build 11 min cold (6 to 20 min to rebuild the workspace's crates), a no-op
# when target/static is up to date; with --dev, after a debug build (`cargo test`), 1.5 min;
# the image 12 s; the test itself, after the build, 11-40 s (docs/OPERATIONS.md, "Deploying").
# Host ports 17101-17103 and 17201-17203 by default (STATELEDGER_PORT_PREFIX=17); the compose
# project is stateledger-compose-test.
# STATELEDGER_COMPOSE_KEEP=1 leaves a failed run's cluster and files in place for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."

project="${STATELEDGER_COMPOSE_PROJECT:-stateledger-compose-test}"
export STATELEDGER_PORT_PREFIX="${STATELEDGER_PORT_PREFIX:-17}"
export STATELEDGER_IMAGE="${STATELEDGER_IMAGE:-stateledger-compose-test:latest}"
p="$STATELEDGER_PORT_PREFIX"
compose() { docker-compose --ansi never -f deploy/compose.yaml -p "$project" "$@"; }
step() { printf '\n== [%ss] %s\n' "$((SECONDS - started))" "$*"; }
work="$(mktemp -d)"
started=$SECONDS

cleanup() {
  local rc=$?
  trap - EXIT
  if (( rc != 0 )); then
    echo "compose test FAILED (exit $rc); the nodes' last log lines:" >&2
    compose logs --no-color --tail 40 node-1 node-2 node-3 >&2 || true
  fi
  if (( rc != 0 )) && [[ -n "${STATELEDGER_COMPOSE_KEEP:-}" ]]; then
    echo "kept for inspection: project $project, client files in $work" >&2
    exit "$rc"
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  docker rmi "$STATELEDGER_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

step "static binary and image"
build_started=$SECONDS
bin="$PWD/$(deploy/build-static.sh "$@" | tail -n 1)"
deploy/build-image.sh "$@" >/dev/null
image_bytes="$(docker image inspect --format '{{.Size}}' "$STATELEDGER_IMAGE")"
echo "built in $((SECONDS - build_started)) s; image $STATELEDGER_IMAGE: $((image_bytes / 1024 / 1024)) MiB"
started=$SECONDS   # the times below are the test's own, after the build
"$bin" --version

user="$(docker image inspect --format '{{.Config.User}}' "$STATELEDGER_IMAGE")"
if [[ "${user%%:*}" == "0" || -z "$user" ]]; then
  echo "the image must run as a non-root uid, not ${user:-root}" >&2
  exit 1
fi

step "docker-compose up"
compose down -v --remove-orphans >/dev/null 2>&1 || true
compose up -d
docker cp "$(compose ps -q pki-ca)":/pki "$work/pki"
# The process itself, seen from the host: its real uid is not 0.
pid="$(docker inspect --format '{{.State.Pid}}' "$(compose ps -q node-1)")"
node_uid="$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"
echo "node-1 runs as uid $node_uid (image USER $user)"
if [[ "$node_uid" == 0 ]]; then echo "node-1 runs as root" >&2; exit 1; fi

keys=()
for i in 1 2 3; do keys+=("\"$(head -n 1 "$work/pki/keys/node-$i.pub")\""); done
cat > "$work/trust_policy.json" <<JSON
{
  "format": "stateledger.trust_policy.v1",
  "origin": "stateledger.example/compose",
  "threshold": 2,
  "node_keys": [$(IFS=,; echo "${keys[*]}")]
}
JSON
cat > "$work/client.toml" <<TOML
endpoints = ["127.0.0.1:${p}101", "127.0.0.1:${p}102", "127.0.0.1:${p}103"]
cluster_endpoints = ["127.0.0.1:${p}201", "127.0.0.1:${p}202", "127.0.0.1:${p}203"]
ca_cert = "pki/ca.pem"
trust_policy = "trust_policy.json"
admin_cert = "pki/admin.pem"
admin_key = "pki/admin.key.pem"
admin_signing_key = "pki/keys/admin.key"
TOML
export STATELEDGER_PROFILE="$work/client.toml"
sl() { "$bin" "$@"; }

# The leader's node id, once every node named in $1 (e.g. "1 2 3") agrees on one.
leader_of() {
  sl cluster status --output json --timeout 5s 2>/dev/null | python3 -c '
import json, sys
want = set(int(i) for i in sys.argv[1].split())
s = json.load(sys.stdin)
nodes = [n for n in s["nodes"] if n.get("node_id") in want]
leaders = {n.get("leader_id") for n in nodes}
ok = len(nodes) == len(want) and len(leaders) == 1 and None not in leaders
ok = ok and any(n.get("role") == "leader" for n in s["nodes"])
print(leaders.pop() if ok else "")' "$1"
}
wait_leader() {
  local deadline=$((SECONDS + $2)) leader=""
  while (( SECONDS < deadline )); do
    leader="$(leader_of "$1" || true)"
    if [[ -n "$leader" ]]; then echo "$leader"; return 0; fi
    sleep 1
  done
  echo "no leader among nodes $1 within $2 s" >&2
  sl cluster status >&2 || true
  return 1
}

step "waiting for a leader"
leader="$(wait_leader "1 2 3" 90)"
echo "leader: node-$leader"

step "grant, submit, verify a receipt"
sl keygen --name compose-writer --out "$work/keys" >/dev/null 2>&1
sl grant --system compose-test --writer "$work/keys/compose-writer.pub" --timeout 30s >/dev/null
sl collect capture seed --system compose-test --capture-id seed-1 --u64 1 \
  | sl submit --key "$work/keys/compose-writer.key" --timeout 30s > "$work/receipt-1.json"
sl verify --trust "$work/trust_policy.json" "$work/receipt-1.json"

step "kill node-$leader (the leader), write again"
compose kill node-"$leader" >/dev/null 2>&1
others="$(echo 1 2 3 | tr ' ' '\n' | grep -v "^$leader\$" | tr '\n' ' ')"
new_leader="$(wait_leader "$others" 60)"
echo "new leader: node-$new_leader"
sl collect capture seed --system compose-test --capture-id seed-2 --u64 2 \
  | sl submit --key "$work/keys/compose-writer.key" --timeout 30s > "$work/receipt-2.json"
sl verify --trust "$work/trust_policy.json" "$work/receipt-2.json"

step "start node-$leader again: it catches up"
compose start node-"$leader" >/dev/null 2>&1
deadline=$((SECONDS + 60))
until sl cluster status --output json --timeout 5s 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
nodes = s["nodes"]
ok = len(nodes) == 3 and all(n.get("role") in ("leader", "follower") for n in nodes)
ok = ok and len({(n.get("tree_size"), n.get("root")) for n in nodes}) == 1
ok = ok and all((n.get("tree_size") or 0) >= 3 for n in nodes)
sys.exit(0 if ok else 1)'; do
  if (( SECONDS > deadline )); then
    echo "node-$leader did not catch up within 60 s" >&2
    sl cluster status >&2 || true
    exit 1
  fi
  sleep 1
done
sl cluster status

step "compose test passed in $((SECONDS - started)) s after the build"
