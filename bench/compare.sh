#!/usr/bin/env bash
# Runs each load scenario against Mosquitto and Taihu alternately (A/B/B/A, ROUNDS rounds), with the same
# generator, and rewrites the comparison table in docs/benchmarks.md.
#
#   bench/compare.sh                 # all scenarios, 5 rounds, with both generator clients
#   ROUNDS=3 SCENARIOS="fan-in-qos0 pairs-qos0" bench/compare.sh
#   CLIENTS=mqttnet bench/compare.sh # only the MQTTnet client
#
# Every scenario runs with taihu-bench's own client and with the MQTTnet 5 client (--client mqttnet): our own
# client's timing can hide what another client finds (a subscriber that falls behind, for one).
# Needs root for apt-get (it installs mosquitto when missing). Results (JSON per run) go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
# Seconds the generator waits after publishing stops for what is still on its way; what has not arrived then
# counts as lost. The brokers' queues can hold seconds of traffic on a loaded 2-core machine.
DRAIN=${DRAIN:-10}
results="$root/bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BENCH="dotnet $BENCH_DLL"

# name | generator arguments (host and port are added per broker). Offered rates are fixed at levels both brokers
# carry without loss on this 2-core machine, so that CPU-seconds per delivered message compare the same work;
# "as fast as possible" runs mostly measure how each broker buffers or pushes back, not its cost per message.
declare -A SCENARIO_ARGS=(
  [fan-in-qos0-50k]="fan-in --publishers 50 --subscribers 1 --qos 0 --rate 50000"
  [fan-in-qos1-10k]="fan-in --publishers 50 --subscribers 1 --qos 1 --rate 10000"
  [pairs-qos0-50k]="pairs --clients 100 --qos 0 --rate 50000"
  [fan-out-1000]="fan-out --subscribers 1000 --qos 0 --rate 100"
)
SCENARIOS=${SCENARIOS:-"fan-in-qos0-50k fan-in-qos1-10k pairs-qos0-50k fan-out-1000"}
CLIENTS=${CLIENTS:-"taihu mqttnet"}
DOC=${DOC:-docs/benchmarks.md} # where the table goes (a scratch copy for a smoke run)


start_mosquitto() {
  "$MOSQUITTO" -c "$root/bench/mosquitto.conf" >"$results/mosquitto.log" 2>&1 &
  echo $!
}
start_taihu() {
  # shellcheck disable=SC2046
  env $(taihu_env) dotnet "$TAIHU_DLL" >"$results/taihu.log" 2>&1 &
  echo $!
}

run_one() { # broker scenario client round
  local broker=$1 scenario=$2 client=$3 round=$4 pid port
  if [ "$broker" = mosquitto ]; then pid=$(start_mosquitto); port=1884; else pid=$(start_taihu); port=1885; fi
  pids+=("$pid")
  wait_port "$port"
  # shellcheck disable=SC2086
  local metrics=()
  if [ "$broker" = taihu ]; then metrics=(--metrics-url http://127.0.0.1:18080/metrics); fi
  $BENCH ${SCENARIO_ARGS[$scenario]} --client "$client" --port "$port" --pid "$pid" --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" "${metrics[@]}" \
    --quiet --json "$results/$scenario.$client.$broker.$round.json" >"$results/$scenario.$client.$broker.$round.txt" 2>&1 || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

for scenario in $SCENARIOS; do
  for client in $CLIENTS; do
    for round in $(seq 1 "$ROUNDS"); do
      if [ $((round % 2)) -eq 1 ]; then order="mosquitto taihu"; else order="taihu mosquitto"; fi
      for broker in $order; do
        echo "== $scenario ($client client) round $round: $broker"
        run_one "$broker" "$scenario" "$client" "$round"
      done
    done
  done
done

python3 bench/summarize.py "$results" "$DOC" "bench/compare.sh (ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP DRAIN=$DRAIN SCENARIOS=\"$SCENARIOS\" CLIENTS=\"$CLIENTS\")"
echo "results: $results"
