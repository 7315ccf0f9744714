#!/usr/bin/env bash
# Soak: QoS 1 fan-in (50 publishers, 1 subscriber) held for DURATION seconds (600 by default) at the rate
# bench/max-rate.sh finds for Mosquitto in the same run, against Mosquitto and Taihu, with each generator client.
# For every run it reports what was lost, what the broker itself dropped (Taihu's counter), and the broker's
# resident memory at minute 2 and at the end, sampled from /proc every 10 s; the run passes when nothing is lost
# and the memory at the end is within 10% of minute 2.
#
#   bench/soak.sh                               # max-rate.sh for Mosquitto first, then 10 minutes per run
#   RATE=50000 DURATION=600 bench/soak.sh       # a given rate, no max-rate.sh
#   RATE=10000 DURATION=180 CLIENTS=mqttnet BROKERS=taihu bench/soak.sh
#
# As in max-rate.sh, the broker is pinned to core BROKER_CPU (0) and the generator to GENERATOR_CPU (1) by taskset.
# Results (JSON per run, memory samples, summary.txt) go to bench/results/soak-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DURATION=${DURATION:-600}
BROKER_CPU=${BROKER_CPU:-0}
GENERATOR_CPU=${GENERATOR_CPU:-1}
BROKERS=${BROKERS:-"mosquitto taihu"}
CLIENTS=${CLIENTS:-"taihu mqttnet"}
results="$root/bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
summary="$results/summary.txt"

if [ -z "${RATE:-}" ]; then
  echo "== finding Mosquitto's highest lossless rate (bench/max-rate.sh, BROKERS=mosquitto)" | tee -a "$summary"
  BROKERS=mosquitto CONFIRM=${CONFIRM:-60} bench/max-rate.sh | tee "$results/max-rate.txt"
  RATE=$(sed -n 's/^RESULT mosquitto: .* = \([0-9]*\) msg\/s$/\1/p' "$results/max-rate.txt" | tail -1)
  if [ -z "$RATE" ] || [ "$RATE" -eq 0 ]; then
    echo "max-rate.sh found no lossless rate for Mosquitto" >&2
    exit 1
  fi
fi

# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BENCH=(taskset -c "$GENERATOR_CPU" dotnet $BENCH_DLL)

sample_memory() { # pid file: resident kB every 10 s, "seconds kB" per line, until the process is gone
  local pid=$1 file=$2 start
  start=$(date +%s)
  while [ -r "/proc/$pid/status" ]; do
    echo "$(( $(date +%s) - start )) $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" >>"$file"
    sleep 10
  done
}

echo "== soak: QoS 1 fan-in at $RATE msg/s for $DURATION s per run; broker on core $BROKER_CPU, generator on core $GENERATOR_CPU" | tee -a "$summary"
for client in $CLIENTS; do
  for broker in $BROKERS; do
    pid=$(start_pinned_broker "$broker"); pids+=("$pid")
    port=$(broker_port "$broker"); metrics=(); [ "$broker" = taihu ] && metrics=(--metrics-url http://127.0.0.1:18080/metrics)
    wait_port "$port"
    name="$broker.$client"
    sample_memory "$pid" "$results/$name.rss" &
    sampler=$!
    "${BENCH[@]}" fan-in --publishers 50 --subscribers 1 --qos 1 --rate "$RATE" --client "$client" --port "$port" --pid "$pid" \
      --duration "$DURATION" --warmup 5 --drain 10 "${metrics[@]}" --quiet --json "$results/$name.json" >"$results/$name.txt" 2>&1 || true
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    python3 - "$results/$name.json" "$results/$name.rss" "$broker" "$client" "$RATE" <<'EOF' | tee -a "$summary"
import json, sys
path, rss_path, broker, client, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
samples = []
for line in open(rss_path):
    parts = line.split()
    if len(parts) == 2:
        samples.append((int(parts[0]), int(parts[1])))
try:
    r = json.load(open(path))
except Exception:
    print(f"{broker:9} {client:7} no result (see {path[:-5]}.txt)")
    sys.exit(0)
# Minute 2 of the measured window: the broker started about 5 s (warm-up) before it.
at2 = next((kb for s, kb in samples if s >= 125), None)
end = samples[-1][1] if samples else None
growth = (end - at2) / at2 * 100 if at2 and end else None
dropped = r.get("brokerDropped")
ok = r["lost"] == 0 and growth is not None and growth <= 10
print(f"{broker:9} {client:7} delivered {r['deliveredPerSecond']:>9,.0f}/s of {rate:,.0f}, lost {r['lost']:,}, "
      f"broker dropped {'n/a' if dropped is None else f'{dropped:,}'}, skipped by the generator {r['pacedMessagesSkipped']:,}, "
      f"p99 {r['latencyP99Ms']} ms, RSS minute 2 {'n/a' if at2 is None else f'{at2 // 1024} MiB'}, end {'n/a' if end is None else f'{end // 1024} MiB'} "
      f"({'n/a' if growth is None else f'{growth:+.1f}%'}) -> {'pass' if ok else 'FAIL'}")
EOF
  done
done
echo "results: $results"
