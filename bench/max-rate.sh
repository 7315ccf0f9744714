#!/usr/bin/env bash
# Highest offered fan-in rate each broker delivers at QoS 1 with nothing lost, the broker pinned to one core and the
# generator to the other (taskset). Steps up through RATES with short probes, stops at the first rate a broker does
# not carry, then confirms the highest carried rate for CONFIRM seconds (60 by default). Mosquitto and Taihu run
# at their default limits, which the output states.
#
#   bench/max-rate.sh
#   RATES="20000 40000 60000" PROBE=10 CONFIRM=60 BROKERS=taihu bench/max-rate.sh
#
# "Carried" means: 0 lost after the drain, 0 duplicates, the generator kept its pace (no skipped sends) and the
# delivered rate is at least 99% of the offered rate. Results (JSON per run) go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
RATES=${RATES:-"20000 30000 40000 50000 60000 70000 80000 90000 100000"}
PROBE=${PROBE:-10}
CONFIRM=${CONFIRM:-60}
BROKER_CPU=${BROKER_CPU:-0}
GENERATOR_CPU=${GENERATOR_CPU:-1}
BROKERS=${BROKERS:-"mosquitto taihu"}
results="$root/bench/results/max-rate-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BENCH=(taskset -c "$GENERATOR_CPU" dotnet $BENCH_DLL)

run_rate() { # broker rate seconds label -> exit 0 when carried
  local broker=$1 rate=$2 seconds=$3 label=$4 pid port json
  pid=$(start_pinned_broker "$broker"); pids+=("$pid"); port=$(broker_port "$broker")
  wait_port "$port"
  json="$results/$broker.$rate.$label.json"
  "${BENCH[@]}" fan-in --publishers 50 --subscribers 1 --qos 1 --rate "$rate" --port "$port" --pid "$pid" \
    --duration "$seconds" --warmup 3 --quiet --json "$json" >"$results/$broker.$rate.$label.txt" 2>&1 || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  python3 - "$json" "$rate" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(1)
rate = float(sys.argv[2])
ok = r["lost"] == 0 and r["duplicates"] == 0 and r["pacedMessagesSkipped"] == 0 and r["deliveredPerSecond"] >= 0.99 * rate
print(f'  {int(rate):>7} msg/s offered: delivered {r["deliveredPerSecond"]:,.0f}/s, lost {r["lost"]}, '
      f'p99 {r["latencyP99Ms"]} ms, broker CPU {r["brokerCpuPercent"]:.0f}%, generator CPU {r["generatorCpuPercent"]:.0f}%'
      f' -> {"carried" if ok else "NOT carried"}')
sys.exit(0 if ok else 1)
EOF
}

summary="$results/summary.txt"
for broker in $BROKERS; do
  echo "== $broker: probing ${PROBE} s per rate" | tee -a "$summary"
  best=0
  for rate in $RATES; do
    if run_rate "$broker" "$rate" "$PROBE" probe | tee -a "$summary"; [ "${PIPESTATUS[0]}" -eq 0 ]; then best=$rate; else break; fi
  done
  # Confirm for CONFIRM seconds, stepping down through the carried rates if the long run fails.
  confirmed=0
  for rate in $(echo "$RATES" | tr ' ' '\n' | sort -rn); do
    [ "$rate" -gt "$best" ] && continue
    echo "== $broker: confirming $rate msg/s for ${CONFIRM} s" | tee -a "$summary"
    if run_rate "$broker" "$rate" "$CONFIRM" confirm | tee -a "$summary"; [ "${PIPESTATUS[0]}" -eq 0 ]; then confirmed=$rate; break; fi
  done
  echo "RESULT $broker: highest lossless QoS 1 fan-in rate sustained ${CONFIRM} s = $confirmed msg/s" | tee -a "$summary"
done
echo "limits: Mosquitto 2.0 defaults (max_inflight_messages 20, max_queued_messages 1000);" \
  "Taihu defaults (MaximumInflightMessages 100, MaximumQueuedMessages 1000, MaximumOutboundQueue 10000);" \
  "generator: 50 publishers with 100 unacknowledged each, 1 subscriber" | tee -a "$summary"
echo "results: $results"
