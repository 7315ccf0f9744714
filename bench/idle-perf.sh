#!/usr/bin/env bash
# Idle connections counted per ping (issue 10): system calls, context switches and CPU of each broker under
# `perf stat`, while 10,000 taihu-bench idle clients (keep alive 60 s: about 10,000 pings a minute) are held.
# Mosquitto first, then Taihu's Release build, one at a time, ports 25884/25885 (HTTP 25080).
#
#   bench/idle-perf.sh                 # prints, per broker, the perf counts over 60 s and the load average
#   BROKERS=taihu bench/idle-perf.sh   # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BROKERS=${BROKERS:-"mosquitto taihu"}
results="$root/bench/results/idle-perf-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }

for broker in $BROKERS; do
  if [ "$broker" = mosquitto ]; then
    sed 's/^listener 1884 /listener 25884 /' "$root/bench/mosquitto.conf" >"$results/mosquitto.conf"
    "$MOSQUITTO" -c "$results/mosquitto.conf" >"$results/mosquitto.log" 2>&1 &
    pid=$!; port=25884
  else
    # shellcheck disable=SC2046
    env $(taihu_env) Listeners__TcpPort=25885 Listeners__HttpPort=25080 Listeners__Hj212Port=-1 Listeners__Jt808Port=-1 \
      Listeners__CoapPort=-1 dotnet "$TAIHU_DLL" >"$results/taihu.log" 2>&1 &
    pid=$!; port=25885
  fi
  wait_port "$port"
  sleep 3
  dotnet "$BENCH_DLL" idle --clients 10000 --warmup 60 --duration 70 --keep-alive 60 --port "$port" --pid "$pid" \
    --quiet --json "$results/$broker.json" >"$results/$broker.txt" 2>&1 &
  bench=$!
  sleep 75 # the connects and a first round of pings out of the way
  perf stat -e context-switches,raw_syscalls:sys_enter,task-clock -p "$pid" -- sleep 60 2>"$results/$broker.perf"
  wait "$bench" || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  echo "== $broker (load $(cut -d' ' -f1-3 /proc/loadavg)); 10,000 clients ping about 10,000 times in the 60 s"
  grep -E "context-switches|sys_enter|task-clock" "$results/$broker.perf"
done
echo "results: $results"
