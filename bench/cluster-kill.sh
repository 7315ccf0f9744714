#!/usr/bin/env bash
# A node killed during QoS 1 ingest (issue 16): NODES Taihu nodes (Release, cluster defaults unless NODE_ENV says
# otherwise) on one private PostgreSQL on loopback; CLIENTS devices (MQTTnet's client) spread over them send
# telemetry at QoS 1, each waiting for every PUBACK; node 1 is killed with SIGKILL KILL_AFTER seconds in. Its devices
# reconnect to the next node and send again what was not acknowledged. Afterwards every acknowledged point is looked
# for through node 0's API. Prints the generator's summary (missing points, the time from the kill to each moved
# device's next acknowledgement) and keeps the JSON, the nodes' logs (timestamped), the generator's per-second
# timeline (timeline.csv: acknowledged, devices waiting over a second) and per-second CPU of each node, PostgreSQL
# and the generator (samples.csv) in bench/results/cluster-kill-*.
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
    Logging__Console__FormatterName=simple "Logging__Console__FormatterOptions__TimestampFormat=HH:mm:ss.fff " \
    Cluster__Enabled=true Cluster__ClusterId=bench Cluster__SiloPort=$((BASE_PORT + 200 + i)) Cluster__AdvertisedAddress=127.0.0.1 \
    $NODE_ENV dotnet "$TAIHU_DLL" >"$results/node$i.log" 2>&1 &
  node_pids[i]=$!
  pids+=("${node_pids[i]}")
  # The first node makes the tables; the others start once it listens.
  wait_port $((BASE_PORT + i))
  if [ "$i" -gt 0 ]; then others+=("$((BASE_PORT + i)):${node_pids[i]}"); fi
done
sleep 3 # the nodes see each other

# CPU ticks (user + system) of a process, or of all the postgres user's processes.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0 p; for p in $(pgrep -u postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
# Per second while the generator runs: each node's, PostgreSQL's and the generator's share of a core (%), and the
# PostgreSQL sessions running a statement, and waiting on a lock, at that moment (samples.csv, beside the timeline).
sample() {
  local hz; hz=$(getconf CLK_TCK)
  echo "time,$(for i in $(seq 0 $((NODES - 1))); do printf 'node%s,' "$i"; done)postgres,generator,pg_active,pg_lock_waits"
  local -A last=()
  local before; before=$(date +%s%N)
  while kill -0 "$1" 2>/dev/null; do
    local line now at elapsed; now=$(date -u +%H:%M:%S); at=$(date +%s%N)
    elapsed=$(( (at - before) / 1000000 )); before=$at
    [ "$elapsed" -gt 0 ] || elapsed=1
    line="$now"
    for key in "${node_pids[@]}" pg "$1"; do
      local t; if [ "$key" = pg ]; then t=$(pg_ticks); else t=$(ticks "$key"); fi
      # A process gone (the killed node) reads 0: its share is shown as 0, not negative.
      local d=$(( t - ${last[$key]:-$t} )); [ "$d" -ge 0 ] || d=0
      line="$line,$(( d * 100000 / hz / elapsed ))"
      last[$key]=$t
    done
    line="$line,$(psql -qtA -h 127.0.0.1 -p "$PGPORT" -U postgres -d taihu -c "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null | tr '|' ',')"
    echo "$line"
    sleep 1
  done
}

extra=()
if [ "$PERSISTENT" = 1 ]; then extra=(--persistent); fi
if [ "$SPREAD" = 1 ]; then extra+=(--spread); fi
dotnet "$BENCH_DLL" node-kill --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION" --kill-after "$KILL_AFTER" \
  --port "$BASE_PORT" --other-nodes "$(IFS=,; echo "${others[*]}")" --api "http://127.0.0.1:$((BASE_PORT + 100))" \
  --admin-password "$PASSWORD" ${extra[@]+"${extra[@]}"} --quiet --json "$results/node-kill.json" --timeline "$results/timeline.csv" \
  >"$results/node-kill.txt" 2>&1 &
generator=$!
sample "$generator" >"$results/samples.csv" 2>/dev/null &
sampler=$!
wait "$generator" || true
wait "$sampler" || true
tail -5 "$results/node-kill.txt"
jq -r '"devices \(.publishers), \(.expected) messages acknowledged, \(.lost) acknowledged points missing; \(.note)"' "$results/node-kill.json" 2>/dev/null || echo "no result: see $results/node-kill.txt"
echo "results: $results (load $(cut -d' ' -f1-3 /proc/loadavg))"
