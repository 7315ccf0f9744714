#!/usr/bin/env bash
# Issue 12's rule pipeline benchmark (docs/benchmarks.md, "Rules"): durable ingest from DEVICES devices with and
# without three alarm rules on their profile (taihu-bench telemetry --rules: SIMPLE, DURATION, REPEATING, evaluated on
# every message; one device in 100 raises and clears one alarm), on SQLite in Release, a fresh data directory per run, the two runs back to
# back. Prints the ingest rate of each and, with rules, the server's histogram of the delay from the commit of
# the data that raised an alarm to the alarm written (taihu_rules_alarm_delay, milliseconds).
#
#   bench/rules.sh
#   DEVICES=10000 INFLIGHT=2 DURATION=30 ROUNDS=1 bench/rules.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DEVICES=${DEVICES:-10000}
INFLIGHT=${INFLIGHT:-2}
MQTT_PORT=${MQTT_PORT:-1885}   # the server's MQTT and HTTP ports
HTTP_PORT=${HTTP_PORT:-18080}
DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-1}
results="$root/bench/results/rules-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BENCH=(dotnet "$BENCH_DLL")
ulimit -n 20000 2>/dev/null || true

for round in $(seq 1 "$ROUNDS"); do
  for mode in none rules; do
    wait_port_closed "$MQTT_PORT"
    data=$(mktemp -d)
    env Listeners__DataDirectory="$data" Listeners__BindAddress=127.0.0.1 Listeners__TcpPort="$MQTT_PORT" Listeners__TlsPort=-1 \
      Listeners__WebSocketPort=-1 Listeners__SecureWebSocketPort=-1 Listeners__HttpPort="$HTTP_PORT" Listeners__Hj212Port=-1 \
      Listeners__Jt808Port=-1 Listeners__CoapPort=-1 Logging__LogLevel__Default=Warning \
      Security__AdminPassword=bench-admin-password dotnet "$TAIHU_DLL" >"$results/taihu-$mode-$round.log" 2>&1 &
    pid=$!; pids+=("$pid"); wait_port "$MQTT_PORT"; wait_port "$HTTP_PORT"
    flag=(); [ "$mode" = rules ] && flag=(--rules)
    echo "== load: $(uptime)"
    echo "== round $round, $mode: $DEVICES devices, QoS 1, 5 keys, $INFLIGHT in flight each, ${DURATION}s"
    "${BENCH[@]}" telemetry --port "$MQTT_PORT" --api "http://127.0.0.1:$HTTP_PORT" --admin-password bench-admin-password --clients "$DEVICES" \
      --inflight "$INFLIGHT" --duration "$DURATION" --warmup 5 --pid "$pid" --metrics-url "http://127.0.0.1:$HTTP_PORT"/metrics --quiet \
      "${flag[@]}" --json "$results/telemetry-$mode-$round.json" | grep -E "delivered msg|broker CPU|note" || true
    curl -s "http://127.0.0.1:$HTTP_PORT"/metrics > "$results/metrics-$mode-$round.txt"
    if [ "$mode" = rules ]; then
      python3 - "$results/metrics-$mode-$round.txt" <<'PY'
import re, sys
buckets = []; count = 0; total = 0.0; devices = changes = 0
for line in open(sys.argv[1]):
    m = re.match(r'taihu_rules_alarm_delay_milliseconds_bucket\{.*le="([^"]+)".*\} (\S+)', line)
    if m: buckets.append((float('inf') if m.group(1) == '+Inf' else float(m.group(1)), float(m.group(2))))
    m = re.match(r'taihu_rules_alarm_delay_milliseconds_count\S* (\S+)', line)
    if m: count = float(m.group(1))
    m = re.match(r'taihu_rules_alarm_delay_milliseconds_sum\S* (\S+)', line)
    if m: total = float(m.group(1))
    m = re.match(r'taihu_rules_devices\S* (\S+)', line)
    if m: devices = float(m.group(1))
    m = re.match(r'taihu_rules_alarm_changes\S* (\S+)', line)
    if m: changes += float(m.group(1))
def q(p):
    for le, c in buckets:
        if c >= p * count: return le
print(f"alarms raised by rules: {count:.0f} (alarm changes {changes:.0f}), devices with rule state {devices:.0f}; "
      f"commit to alarm written: mean {total / max(count, 1):.1f} ms, p50 <= {q(0.5)} ms, p99 <= {q(0.99)} ms (histogram bucket bounds)")
PY
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
  done
done
echo "results: $results"
