#!/usr/bin/env bash
# Lightweight RPC across the nodes of a cluster (issue 16): taihu-bench rpc (two-way calls through the REST API,
# each answered by its device) against one Taihu on PostgreSQL without the cluster, and against a cluster of two
# nodes with the devices on the node that takes the API calls ("same node") and on the other one ("across"), in
# turn (ROUNDS rounds), with taihu-bench's own client and MQTTnet's. Prints one line per run (calls answered, lost,
# p50/p99 from the call to its HTTP response) and keeps the JSON in bench/results/cluster-rpc-*.
# Mosquitto has no RPC: there is no peer to run beside it here.
#
#   bench/cluster-rpc.sh
#   DEVICES=2000 RATE=500 ROUNDS=1 CLIENTS=mqttnet bench/cluster-rpc.sh
#   TAIHU_DLL=/tmp/before/Taihu.Server.dll BENCH_DLL=/tmp/bench/taihu-bench.dll bench/cluster-rpc.sh   # given builds
#
# Ports: MQTT BASE_PORT.. (one per node), HTTP BASE_PORT+100.., silo BASE_PORT+200.., PostgreSQL BASE_PORT+300.
# Needs root (it installs postgresql when missing and runs it as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
ROUNDS=${ROUNDS:-2}
DEVICES=${DEVICES:-1000}
RATE=${RATE:-200}
DURATION=${DURATION:-20}
BASE_PORT=${BASE_PORT:-27000}
CLIENTS=${CLIENTS:-"taihu mqttnet"}
MODES=${MODES:-"single same-node across"}
PASSWORD=bench-admin-password
results="$root/bench/results/cluster-rpc-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh" # builds what is not given, and stops what is in $pids at the end
echo "server: $TAIHU_DLL"

PGPORT=$((BASE_PORT + 300))
start_private_postgres "$PGPORT" 200

stop_nodes() { for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done; pids=(); }

start_node() { # index cluster(true|false) log -> pid
  local i=$1 data; data=$(mktemp -d)
  # shellcheck disable=SC2046
  env $(taihu_env) Listeners__TcpPort=$((BASE_PORT + i)) Listeners__HttpPort=$((BASE_PORT + 100 + i)) Listeners__DataDirectory="$data" \
    Listeners__Hj212Port=-1 Listeners__Jt808Port=-1 Listeners__CoapPort=-1 Security__AllowAnonymousMqtt=false Security__AdminPassword=$PASSWORD \
    Storage__Provider=PostgreSql "Storage__ConnectionString=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=taihu;Maximum Pool Size=30" \
    Cluster__Enabled="$2" Cluster__ClusterId=bench Cluster__SiloPort=$((BASE_PORT + 200 + i)) Cluster__AdvertisedAddress=127.0.0.1 \
    dotnet "$TAIHU_DLL" >"$3" 2>&1 &
  echo $!
}

run_one() { # mode client round
  local mode=$1 client=$2 round=$3 n=2 devices_on=0 cluster=true out
  case $mode in single) n=1; cluster=false ;; across) devices_on=1 ;; esac
  out="$results/$mode.$client.$round"
  psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "DROP DATABASE IF EXISTS taihu WITH (FORCE)" -c "CREATE DATABASE taihu"
  for i in $(seq 0 $((n - 1))); do
    # The first node makes the tables; the others start once it listens.
    pids+=("$(start_node "$i" "$cluster" "$out.node$i.log")")
    wait_port $((BASE_PORT + i)); wait_port $((BASE_PORT + 100 + i))
  done
  if [ "$cluster" = true ]; then sleep 3; fi # the nodes see each other
  dotnet "$BENCH_DLL" rpc --client "$client" --clients "$DEVICES" --rate "$RATE" --duration "$DURATION" --warmup 5 \
    --port $((BASE_PORT + devices_on)) --api "http://127.0.0.1:$((BASE_PORT + 100))" --admin-password "$PASSWORD" \
    --pid "${pids[0]}" --quiet --json "$out.json" >"$out.txt" 2>&1 || true
  stop_nodes
  for i in $(seq 0 $((n - 1))); do wait_port_closed $((BASE_PORT + i)); done
  python3 - "$out.json" "$mode" "$client" "$round" <<'PY'
import json, sys
path, mode, client, rnd = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{mode:9} {client:8} round {rnd}: no result ({e})"); sys.exit()
print(f"{mode:9} {client:8} round {rnd}: answered {r['delivered']}/{r['sent']} lost {r['lost']} p50 {r['latencyP50Ms']:.2f} p99 {r['latencyP99Ms']:.2f} ms "
      f"(load {open('/proc/loadavg').read().split()[0]})")
PY
}

for client in $CLIENTS; do
  for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do run_one "$mode" "$client" "$round"; done
  done
done
echo "results: $results"
