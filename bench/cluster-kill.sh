#!/usr/bin/env bash
# A node killed during QoS 1 ingest (issue 16): NODES Taihu nodes (Release, cluster defaults unless NODE_ENV says
# otherwise) on one private PostgreSQL on loopback; CLIENTS devices (MQTTnet's client) spread over them send
# telemetry at QoS 1, each waiting for every PUBACK; node 1 is killed with SIGKILL KILL_AFTER seconds in. Its devices
# reconnect to the next node and send again what was not acknowledged. Afterwards every acknowledged point is looked
# for through node 0's API. Prints the generator's summary (missing points, the time from the kill to each moved
# device's next acknowledgement) and keeps the JSON and the nodes' logs in bench/results/cluster-kill-*.
#
#   bench/cluster-kill.sh                                  # 3 nodes, 3,000 devices, a message a second each, 40 s, kill at 15 s
#   CLIENTS=6000 DURATION=60 KILL_AFTER=20 bench/cluster-kill.sh
#   PERSISTENT=1 bench/cluster-kill.sh                     # persistent sessions: taken over from the dead node
#   SPREAD=1 bench/cluster-kill.sh                         # the killed node's devices reconnect spread over the others
#                                                          # (as behind a load balancer), not all to the next node
#   NODE_ENV="Cluster__ProbeTimeout=00:00:01 Cluster__NumMissedProbesLimit=2" bench/cluster-kill.sh
#
# Ports: MQTT BASE_PORT.. (one per node), HTTP BASE_PORT+100.., silo BASE_PORT+200.., PostgreSQL BASE_PORT+300.
# Needs root (it installs postgresql when missing and runs it as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
NODES=${NODES:-3}
CLIENTS=${CLIENTS:-3000}
RATE=${RATE:-$CLIENTS}
DURATION=${DURATION:-40}
KILL_AFTER=${KILL_AFTER:-15}
PERSISTENT=${PERSISTENT:-0}
SPREAD=${SPREAD:-0}
BASE_PORT=${BASE_PORT:-27000}
NODE_ENV=${NODE_ENV:-}
PASSWORD=bench-admin-password
results="$root/bench/results/cluster-kill-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
ulimit -n 20000

PGPORT=$((BASE_PORT + 300))
start_private_postgres "$PGPORT" 300
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE taihu"

node_pids=()
others=()
for i in $(seq 0 $((NODES - 1))); do
  data=$(mktemp -d)
  # shellcheck disable=SC2046,SC2086
  env $(taihu_env) Listeners__TcpPort=$((BASE_PORT + i)) Listeners__HttpPort=$((BASE_PORT + 100 + i)) Listeners__DataDirectory="$data" \
    Listeners__Hj212Port=-1 Listeners__Jt808Port=-1 Listeners__CoapPort=-1 Security__AllowAnonymousMqtt=false Security__AdminPassword=$PASSWORD \
    Storage__Provider=PostgreSql "Storage__ConnectionString=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=taihu;Maximum Pool Size=30" \
    Cluster__Enabled=true Cluster__ClusterId=bench Cluster__SiloPort=$((BASE_PORT + 200 + i)) Cluster__AdvertisedAddress=127.0.0.1 \
    $NODE_ENV dotnet "$TAIHU_DLL" >"$results/node$i.log" 2>&1 &
  node_pids[i]=$!
  pids+=("${node_pids[i]}")
  # The first node makes the tables; the others start once it listens.
  wait_port $((BASE_PORT + i))
  if [ "$i" -gt 0 ]; then others+=("$((BASE_PORT + i)):${node_pids[i]}"); fi
done
sleep 3 # the nodes see each other

extra=()
if [ "$PERSISTENT" = 1 ]; then extra=(--persistent); fi
if [ "$SPREAD" = 1 ]; then extra+=(--spread); fi
dotnet "$BENCH_DLL" node-kill --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION" --kill-after "$KILL_AFTER" \
  --port "$BASE_PORT" --other-nodes "$(IFS=,; echo "${others[*]}")" --api "http://127.0.0.1:$((BASE_PORT + 100))" \
  --admin-password "$PASSWORD" ${extra[@]+"${extra[@]}"} --quiet --json "$results/node-kill.json" >"$results/node-kill.txt" 2>&1 || true
tail -5 "$results/node-kill.txt"
jq -r '"devices \(.publishers), \(.expected) messages acknowledged, \(.lost) acknowledged points missing; \(.note)"' "$results/node-kill.json" 2>/dev/null || echo "no result: see $results/node-kill.txt"
echo "results: $results (load $(cut -d' ' -f1-3 /proc/loadavg))"
