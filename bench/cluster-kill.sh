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
#   SOURCES=250 bench/cluster-kill.sh                      # devices connect from 250 addresses, not all from 127.0.0.1
#                                                          # (each address has its own authentication allowance)
#                                                          # (as behind a load balancer), not all to the next node
#   NODE_ENV="Cluster__ProbeTimeout=00:00:01 Cluster__NumMissedProbesLimit=2" bench/cluster-kill.sh
#   PG_STATEMENTS=1 bench/cluster-kill.sh                  # also PostgreSQL's statements by time, the 15 s after the
#                                                          # kill (pg_stat_statements: pg-statements-after-kill.txt)
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
SOURCES=${SOURCES:-0} # devices connect from this many loopback addresses (127.0.1.1 ..), in turn; 0: all from 127.0.0.1
BASE_PORT=${BASE_PORT:-27000}
NODE_ENV=${NODE_ENV:-}
POOL=${POOL:-30} # each node's PostgreSQL connections at most
PASSWORD=bench-admin-password
results="$root/bench/results/cluster-kill-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
# The nodes are stopped with SIGKILL at the end: a graceful stop of an Orleans node can take over a minute, and the
# next run would meet it on its ports.
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
ulimit -n 20000

PG_STATEMENTS=${PG_STATEMENTS:-0}
PGPORT=$((BASE_PORT + 300))
# A node of the last run may still be shutting down (it is stopped with SIGTERM): a new node would meet it on its
# silo port and fail to join. Wait for every port of this run to be free.
for port in $PGPORT $(for i in $(seq 0 $((NODES - 1))); do echo $((BASE_PORT + i)) $((BASE_PORT + 100 + i)) $((BASE_PORT + 200 + i)); done); do
  for _ in $(seq 1 120); do port_free "$port" && break; sleep 0.5; done
  port_free "$port" || { echo "port $port is still in use (a node of an earlier run?)" >&2; exit 1; }
done
if [ "$PG_STATEMENTS" = 1 ]; then PG_OPTIONS="${PG_OPTIONS:-} -c shared_preload_libraries=pg_stat_statements"; fi
start_private_postgres "$PGPORT" 300
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE taihu"
if [ "$PG_STATEMENTS" = 1 ]; then psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d taihu -c "CREATE EXTENSION pg_stat_statements"; fi

node_pids=()
others=()
for i in $(seq 0 $((NODES - 1))); do
  data=$(mktemp -d)
  # shellcheck disable=SC2046,SC2086
  env $(taihu_env) Listeners__TcpPort=$((BASE_PORT + i)) Listeners__HttpPort=$((BASE_PORT + 100 + i)) Listeners__DataDirectory="$data" \
    Listeners__Hj212Port=-1 Listeners__Jt808Port=-1 Listeners__CoapPort=-1 Security__AllowAnonymousMqtt=false Security__AdminPassword=$PASSWORD \
    Storage__Provider=PostgreSql "Storage__ConnectionString=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=taihu;Maximum Pool Size=$POOL" \
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

# Per second while the generator runs: each node's, PostgreSQL's and the generator's share of a core (%), the
# PostgreSQL sessions running a statement and waiting on a lock at that moment, and each node's MQTT clients
# connected (its own count, from /metrics) (samples.csv, beside the timeline). One awk reads every process's CPU
# ticks, so that a loaded machine still gets a sample a second.
sample() {
  set +e # a sample that fails (a process gone between listing and reading it) is not the end of the run
  local hz; hz=$(getconf CLK_TCK)
  local n; n=$(seq 0 $((NODES - 1)))
  echo "time,$(for i in $n; do printf 'node%s,' "$i"; done)postgres,generator,pg_active,pg_lock_waits,$(for i in $n; do printf 'connected%s,' "$i"; done | sed 's/,$//')"
  local -a last=()
  local before; before=$(date +%s%N)
  local reset_at=0 dumped=0
  while kill -0 "$1" 2>/dev/null; do
    local now at elapsed; now=$(date -u +%H:%M:%S.%N | cut -c1-10); at=$(date +%s%N)
    elapsed=$(( (at - before) / 1000000 )); before=$at
    [ "$elapsed" -gt 0 ] || elapsed=1
    # Ticks (user + system) of each node, all of the postgres user's processes together, and the generator; a
    # process gone (the killed node) reads 0 and its share is shown as 0, not negative.
    local -a t
    # shellcheck disable=SC2207
    t=($(cat $(printf '/proc/%s/stat ' "${node_pids[@]}" "$1" $(pgrep -u postgres)) 2>/dev/null | awk -v nodes="${node_pids[*]}" -v gen="$1" '
      BEGIN { n = split(nodes, p, " "); for (i = 1; i <= n; i++) idx[p[i]] = i; idx[gen] = n + 2 }
      { v = $14 + $15; if ($1 in idx) s[idx[$1]] += v; else s[n + 1] += v }
      END { for (i = 1; i <= n + 2; i++) printf "%d ", s[i] }'))
    local line="$now" i
    for i in "${!t[@]}"; do
      local d=$(( t[i] - ${last[i]:-${t[i]}} )); [ "$d" -ge 0 ] || d=0
      line="$line,$(( d * 100000 / hz / elapsed ))"
      last[i]=${t[i]}
    done
    line="$line,$(psql -qtA -h 127.0.0.1 -p "$PGPORT" -U postgres -d taihu -c "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null | tr '|' ',')"
    line="$line,$(curl -s -m 1 -w '\n#end\n' $(for i in $n; do printf 'http://127.0.0.1:%s/metrics ' $((BASE_PORT + 100 + i)); done) 2>/dev/null |
      awk '/^taihu_mqtt_connections[{ ]/ { c = $NF } /^#end/ { printf "%s%s", sep, (c == "" ? 0 : c); sep = ","; c = "" }')"
    echo "$line"
    # The nodes' stage timings (/metrics) at the kill and 15 s later (stage-diff.py prints what was recorded in
    # between); with PG_STATEMENTS=1 also what PostgreSQL spent its time on in those 15 s.
    if [ "$reset_at" = 0 ] && ! kill -0 "${node_pids[1]}" 2>/dev/null; then
      if [ "$PG_STATEMENTS" = 1 ]; then
        psql -qtA -h 127.0.0.1 -p "$PGPORT" -U postgres -d taihu -c "SELECT pg_stat_statements_reset()" >/dev/null 2>&1
      fi
      for i in $n; do [ "$i" = 1 ] || curl -s -m 2 "http://127.0.0.1:$((BASE_PORT + 100 + i))/metrics" >"$results/metrics-at-kill-$i.txt"; done
      reset_at=$(date +%s)
    elif [ "$reset_at" != 0 ] && [ "$dumped" = 0 ] && [ $(( $(date +%s) - reset_at )) -ge 15 ]; then
      for i in $n; do [ "$i" = 1 ] || curl -s -m 2 "http://127.0.0.1:$((BASE_PORT + 100 + i))/metrics" >"$results/metrics-after-kill-$i.txt"; done
      if [ "$PG_STATEMENTS" = 1 ]; then
        psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d taihu -c "SELECT calls, round(total_exec_time) AS total_ms, round(mean_exec_time::numeric, 2) AS mean_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 30" >"$results/pg-statements-after-kill.txt" 2>&1
      fi
      dumped=1
    fi
    sleep 1
  done
}

extra=()
if [ "$PERSISTENT" = 1 ]; then extra=(--persistent); fi
if [ "$SPREAD" = 1 ]; then extra+=(--spread); fi
if [ "$SOURCES" -gt 0 ]; then extra+=(--source-addresses "$(seq -s, -f '127.0.1.%g' 1 "$SOURCES")"); fi
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
for i in $(seq 0 $((NODES - 1))); do
  if [ -s "$results/metrics-after-kill-$i.txt" ]; then
    echo "node $i, the 15 s after the kill:"
    python3 "$root/bench/stage-diff.py" "$results/metrics-at-kill-$i.txt" "$results/metrics-after-kill-$i.txt" connect. read. ingest.
  fi
done
echo "results: $results (load $(cut -d' ' -f1-3 /proc/loadavg))"
