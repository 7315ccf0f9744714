#!/usr/bin/env bash
# Message flow across the nodes of a cluster (issue 16): NODES Taihu nodes (Release, defaults otherwise) on one
# private PostgreSQL on loopback, against one Taihu on the same PostgreSQL without the cluster and against Mosquitto
# (bench/mosquitto.conf), with the same generator and load, in turn (ROUNDS rounds), with taihu-bench's own client
# and MQTTnet's. On the cluster, subscriber i connects to node i and publisher i to
# node i+1 (taihu-bench --other-nodes), so that messages cross nodes; the CPU is the nodes' together. Prints one line
# per run (delivered, lost, CPU-seconds per million delivered, p50/p99) and keeps the JSON in bench/results/cluster-*.
#
#   bench/cluster.sh                                   # 3 nodes, the four scenarios below, both clients, 2 rounds
#   CLIENTS="taihu mqttnet" SCENARIOS="fan-in-qos1" ROUNDS=3 bench/cluster.sh
#   CLIENTS=taihu SCENARIOS="fan-in-qos1-15k pairs-qos0-15k pairs-qos1-15k" ROUNDS=1 bench/cluster.sh   # 15,000 devices
#   MODES=cluster NODE_ENV="Cluster__AckAfterForward=false" SCENARIOS="pairs-qos1" bench/cluster.sh     # the cluster only, a setting changed
#
# Ports: MQTT BASE_PORT.. (one per node), HTTP BASE_PORT+100.., silo BASE_PORT+200.., PostgreSQL BASE_PORT+300.
# Needs root (it installs postgresql when missing and runs it as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
NODES=${NODES:-3}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
DRAIN=${DRAIN:-10}
BASE_PORT=${BASE_PORT:-26000}
CLIENTS=${CLIENTS:-"taihu mqttnet"}
declare -A SCENARIO_ARGS=(
  [fan-in-qos0]="fan-in --publishers 60 --subscribers 1 --qos 0 --rate 20000"
  [fan-in-qos1]="fan-in --publishers 60 --subscribers 1 --qos 1 --rate 10000"
  [pairs-qos0]="pairs --clients 300 --qos 0 --rate 20000"
  [pairs-qos1]="pairs --clients 300 --qos 1 --rate 10000"
  # The issue's size: 15,000 devices (connections) spread over the nodes, each sending about once a second.
  [fan-in-qos1-15k]="fan-in --publishers 15000 --subscribers 1 --qos 1 --rate 10000"
  [pairs-qos0-15k]="pairs --clients 7500 --qos 0 --rate 7500"
  [pairs-qos1-15k]="pairs --clients 7500 --qos 1 --rate 7500"
)
SCENARIOS=${SCENARIOS:-"fan-in-qos0 fan-in-qos1 pairs-qos0 pairs-qos1"}
MODES=${MODES:-"mosquitto single cluster"} # which of Mosquitto, one Taihu and the cluster run
NODE_ENV=${NODE_ENV:-}                     # extra settings for every Taihu (NAME=value ...)
results="$root/bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"

PGPORT=$((BASE_PORT + 300))
start_private_postgres "$PGPORT" 300

start_node() { # index cluster(true|false) -> pid
  local i=$1 data; data=$(mktemp -d)
  # shellcheck disable=SC2046,SC2086
  env $(taihu_env) Listeners__TcpPort=$((BASE_PORT + i)) Listeners__HttpPort=$((BASE_PORT + 100 + i)) Listeners__DataDirectory="$data" \
    Listeners__Hj212Port=-1 Listeners__Jt808Port=-1 Listeners__CoapPort=-1 \
    Storage__Provider=PostgreSql "Storage__ConnectionString=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=taihu;Maximum Pool Size=30" \
    Cluster__Enabled="$2" Cluster__ClusterId=bench Cluster__SiloPort=$((BASE_PORT + 200 + i)) Cluster__AdvertisedAddress=127.0.0.1 \
    $NODE_ENV dotnet "$TAIHU_DLL" >"$results/node$i.log" 2>&1 &
  echo $!
}

run_one() { # mode(mosquitto|single|cluster) scenario client round
  local mode=$1 scenario=$2 client=$3 round=$4 n=1 others=() node_pids=()
  if [ "$mode" = mosquitto ]; then
    sed "s/^listener 1884 /listener $BASE_PORT /" "$root/bench/mosquitto.conf" >"$results/mosquitto.conf"
    "$MOSQUITTO" -c "$results/mosquitto.conf" >"$results/mosquitto.log" 2>&1 &
    node_pids[0]=$!; pids+=("${node_pids[0]}")
    wait_port "$BASE_PORT"
    OTHER_ARG=()
    report "$mode" "$scenario" "$client" "$round" "${node_pids[@]}"
    return
  fi
  psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "DROP DATABASE IF EXISTS taihu WITH (FORCE)" -c "CREATE DATABASE taihu"
  if [ "$mode" = cluster ]; then n=$NODES; fi
  for i in $(seq 0 $((n - 1))); do
    # The first node makes the tables; the others start once it listens.
    node_pids[i]=$(start_node "$i" "$([ "$mode" = cluster ] && echo true || echo false)"); pids+=("${node_pids[i]}")
    wait_port $((BASE_PORT + i))
    if [ "$i" -gt 0 ]; then others+=("$((BASE_PORT + i)):${node_pids[i]}"); fi
  done
  local other_arg=(); if [ ${#others[@]} -gt 0 ]; then other_arg=(--other-nodes "$(IFS=,; echo "${others[*]}")"); fi
  if [ "$mode" = cluster ]; then sleep 3; fi # the nodes see each other and exchange their (empty) route tables
  OTHER_ARG=(${other_arg[@]+"${other_arg[@]}"})
  report "$mode" "$scenario" "$client" "$round" "${node_pids[@]}"
  for i in $(seq 0 $((n - 1))); do wait_port_closed $((BASE_PORT + i)); done
}

report() { # mode scenario client round pid... (OTHER_ARG: the generator's --other-nodes, if any): runs the load, stops the brokers, prints a line
  local mode=$1 scenario=$2 client=$3 round=$4; shift 4
  local out="$results/$scenario.$client.$mode.$round" metrics=()
  # Taihu's own drop count (node 0's, where the subscribers of fan-in are), so that a loss says whether the broker dropped.
  if [ "$mode" != mosquitto ]; then metrics=(--metrics-url "http://127.0.0.1:$((BASE_PORT + 100))/metrics"); fi
  # shellcheck disable=SC2086
  dotnet "$BENCH_DLL" ${SCENARIO_ARGS[$scenario]} --client "$client" --port "$BASE_PORT" --pid "$1" ${OTHER_ARG[@]+"${OTHER_ARG[@]}"} ${metrics[@]+"${metrics[@]}"} \
    --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" --quiet --json "$out.json" >"$out.txt" 2>&1 || true
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  wait_port_closed "$BASE_PORT"
  python3 - "$out.json" "$scenario" "$client" "$mode" "$round" <<'PY'
import json, sys
path, scenario, client, mode, rnd = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{scenario:12} {client:8} {mode:8} round {rnd}: no result ({e})"); sys.exit()
print(f"{scenario:12} {client:8} {mode:8} round {rnd}: delivered {r['delivered']}/{r['expected']} lost {r['lost']} dup {r['duplicates']} "
      f"cpu-s/M {r['brokerCpuSecondsPerMillion']} p50 {r['latencyP50Ms']} p99 {r['latencyP99Ms']} ms, resident {r['brokerResidentBytes'] / 1048576:.0f} MiB, "
      f"dropped by the broker {r.get('brokerDropped')} "
      f"(load {open('/proc/loadavg').read().split()[0]})")
PY
}

for scenario in $SCENARIOS; do
  for client in $CLIENTS; do
    for round in $(seq 1 "$ROUNDS"); do
      if [ $((round % 2)) -eq 1 ]; then order="mosquitto single cluster"; else order="cluster single mosquitto"; fi
      for mode in $order; do
        case " $MODES " in *" $mode "*) run_one "$mode" "$scenario" "$client" "$round" ;; esac
      done
    done
  done
done
echo "results: $results"
