#!/usr/bin/env bash
# Idle CPU of Taihu and Mosquitto measured at the same time (issue 10 item 5): both brokers run side by side, each
# with 10,000 connections of its own generator that ping once per keep-alive period, and both brokers' CPU is read
# over the same windows. Whatever else the machine (or its host) does in a window, both brokers meet it, so the
# windows pair up; one broker after the other (bench/idle.sh) met different minutes, and its runs spread by 40%.
#
#   bench/idle-together.sh                         # 10 windows of 60 s after 120 s of settling
#   WINDOWS=5 WINDOW=60 SETTLE=120 CLIENTS=10000 KEEP_ALIVE=60 bench/idle-together.sh
#   BUILD_ENV="DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT=1" bench/idle-together.sh   # extra environment for Taihu
#   PING_TICK=1 bench/idle-together.sh             # each ping sent about when due, not in bursts every 50 ms
#
# Prints one line per window (each broker's share of one core, %) and the medians; the two generators' own
# summaries and the brokers' logs go to bench/results/idle-together-<time>/. Ports 1984 (Mosquitto) and 1985
# (Taihu, HTTP 18985), as bench/idle.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
WINDOWS=${WINDOWS:-10}
WINDOW=${WINDOW:-60}
SETTLE=${SETTLE:-120}
CLIENTS=${CLIENTS:-10000}
KEEP_ALIVE=${KEEP_ALIVE:-60}
results="$root/bench/results/idle-together-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
ulimit -n 20000

port_free 1984 && port_free 1985 || { echo "port 1984 or 1985 is taken" >&2; exit 1; }

sed 's/^listener 1884 /listener 1984 /' "$root/bench/mosquitto.conf" >"$results/mosquitto.conf"
"$MOSQUITTO" -c "$results/mosquitto.conf" >"$results/mosquitto.log" 2>&1 &
mosquitto_pid=$!
pids+=("$mosquitto_pid")
# shellcheck disable=SC2046,SC2086
env $(taihu_env) Listeners__TcpPort=1985 Listeners__HttpPort=18985 ${BUILD_ENV:-} dotnet "$TAIHU_DLL" >"$results/taihu.log" 2>&1 &
taihu_pid=$!
pids+=("$taihu_pid")
wait_port 1984
wait_port 1985
sleep 3

# Both generators hold their connections for the whole measurement (and report over it themselves as well).
hold=$((WINDOWS * WINDOW))
for broker in mosquitto taihu; do
  if [ "$broker" = mosquitto ]; then port=1984; pid=$mosquitto_pid; else port=1985; pid=$taihu_pid; fi
  dotnet "$BENCH_DLL" idle --clients "$CLIENTS" --warmup "$SETTLE" --duration "$hold" --keep-alive "$KEEP_ALIVE" \
    --ping-tick "${PING_TICK:-50}" --port "$port" --pid "$pid" --quiet --json "$results/$broker.json" >"$results/$broker.txt" 2>&1 &
  pids+=("$!")
done

# CPU ticks (utime + stime) of a process.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# The generators connect, then settle for SETTLE seconds; the windows start after that (and a few seconds for the
# connects themselves).
sleep $((SETTLE + 10))
printf 'window\tmosquitto %%\ttaihu %%\tload\n' | tee "$results/windows.tsv"
for w in $(seq 1 "$WINDOWS"); do
  m0=$(ticks "$mosquitto_pid"); t0=$(ticks "$taihu_pid")
  sleep "$WINDOW"
  m1=$(ticks "$mosquitto_pid"); t1=$(ticks "$taihu_pid")
  awk -v w="$w" -v m=$((m1 - m0)) -v t=$((t1 - t0)) -v s="$WINDOW" -v hz="$hz" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "%d\t%.2f\t%.2f\t%s\n", w, 100 * m / hz / s, 100 * t / hz / s, load }' | tee -a "$results/windows.tsv"
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m=$(tail -n +2 "$results/windows.tsv" | cut -f2 | median)
t=$(tail -n +2 "$results/windows.tsv" | cut -f3 | median)
lower=$(tail -n +2 "$results/windows.tsv" | awk -F'\t' '$3 <= $2' | wc -l)
echo "median of $WINDOWS windows: mosquitto $m %, taihu $t % of one core; taihu at or below mosquitto in $lower of $WINDOWS windows"
echo "results: $results"
