#!/usr/bin/env bash
# Idle connections, Taihu builds beside Mosquitto in the same run (issue 10 item 5): resident memory per connection
# at 19,000 connections, and broker CPU with 10,000 connections that each ping once per keep-alive period (60 s).
# One broker at a time, a fresh process for each measurement; in each round Mosquitto and every build run in turn.
#
#   bench/idle.sh                                    # Mosquitto and this tree's Release build, 3 rounds
#   BUILDS="old=/tmp/old/src/Taihu.Server/bin/Release/net10.0 new=src/Taihu.Server/bin/Release/net10.0" bench/idle.sh
#   ROUNDS=1 TESTS=cpu bench/idle.sh                 # TESTS: "mem cpu" (default), "mem", "cpu"
#   KEEP_ALIVE=0 TESTS=cpu bench/idle.sh             # no keep alive, no pings (default 60 s, one ping per period)
#   CPU_WARMUP=150 TESTS=cpu bench/idle.sh           # measure later after the clients connect (default 40 s)
#   BUILDS="taihu=DIR one=DIR" BUILD_ENV_one="DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT=1" bench/idle.sh
#                                                    # BUILD_ENV_<label>: environment for that build's server only
#
# Each line printed is one run: round, broker, test, value, and the load average when it ended (the machine is
# shared: read the load beside the number). Ports 1984 (Mosquitto) and 1985 (Taihu, HTTP 18985), away from
# compare.sh's. Results (JSON per run) go to bench/results/idle-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
ROUNDS=${ROUNDS:-3}
KEEP_ALIVE=${KEEP_ALIVE:-60}
# Seconds the CPU test waits after the clients are connected before it measures (the runtime's tiered compilation
# of what the pings run is still going on in the first minute).
CPU_WARMUP=${CPU_WARMUP:-40}
TESTS=${TESTS:-"mem cpu"}
results="$root/bench/results/idle-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BENCH="dotnet $BENCH_DLL"
BUILDS=${BUILDS:-"taihu=$(dirname "$TAIHU_DLL")"}

mosquitto_conf="$results/mosquitto.conf"
sed 's/^listener 1884 /listener 1984 /' "$root/bench/mosquitto.conf" >"$mosquitto_conf"


run_one() { # round broker(label) dir test
  local round=$1 label=$2 dir=$3 test=$4 pid port args
  if [ "$label" = mosquitto ]; then
    port=1984
    port_free $port || { echo "port $port busy" >&2; return 1; }
    "$MOSQUITTO" -c "$mosquitto_conf" >"$results/$label.$test.$round.log" 2>&1 &
    pid=$!
  else
    port=1985
    port_free $port || { echo "port $port busy" >&2; return 1; }
    # shellcheck disable=SC2046
    local extra="BUILD_ENV_${label//-/_}"
    # shellcheck disable=SC2086
    env $(taihu_env) Listeners__TcpPort=$port Listeners__HttpPort=18985 ${!extra:-} dotnet "$dir/Taihu.Server.dll" >"$results/$label.$test.$round.log" 2>&1 &
    pid=$!
  fi
  pids+=("$pid")
  wait_port "$port"
  sleep 3 # start-up work (JIT, the platform's first queries) out of the way before the first sample
  if [ "$test" = mem ]; then
    args="--clients 19000 --duration 10 --keep-alive $KEEP_ALIVE"
  else
    args="--clients 10000 --warmup $CPU_WARMUP --duration 60 --keep-alive $KEEP_ALIVE"
  fi
  # shellcheck disable=SC2086
  $BENCH idle $args --port "$port" --pid "$pid" --quiet --json "$results/$label.$test.$round.json" >"$results/$label.$test.$round.txt" 2>&1 || true
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  local value
  if [ "$test" = mem ]; then
    value=$(jq -r '"\(.brokerBytesPerConnection / 1024 * 100 | round / 100) KB/conn (\(.connections) conns, \(.connectFailures) failed)"' "$results/$label.$test.$round.json" 2>/dev/null || echo "failed")
  else
    value=$(jq -r '"\(.brokerCpuPercent * 100 | round / 100) % CPU (\(.connections) conns; \(.note))"' "$results/$label.$test.$round.json" 2>/dev/null || echo "failed")
  fi
  printf '%s\t%s\t%s\t%s\tload %s\n' "$round" "$label" "$test" "$value" "$load" | tee -a "$results/summary.tsv"
}

for round in $(seq 1 "$ROUNDS"); do
  for test in $TESTS; do
    run_one "$round" mosquitto - "$test"
    for build in $BUILDS; do
      run_one "$round" "${build%%=*}" "${build#*=}" "$test"
    done
  done
done
echo "results: $results"
