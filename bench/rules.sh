#!/usr/bin/env bash
# Issue 12's rule pipeline benchmark (docs/benchmarks.md, "Rules"): durable ingest from DEVICES devices with and
# without three alarm rules on their profile (taihu-bench telemetry --rules: SIMPLE, DURATION, REPEATING, evaluated on
# every message; one device in 100 raises and clears one alarm), on SQLite in Release, a fresh data directory per run, the two runs back to
# back. Beside them, a third-party publisher: THIRD devices (created with the bench's, in the same profile), each a
# mosquitto_pub at QoS 1 sending k0 = 0, 1, ... 40 every half second, which crosses the Sequence rule's threshold
# (20) during the window, so each of them raises and clears an alarm too (counted by the bench through the API).
# Prints the load average, the ingest rate of each, the server's CPU and allocations per message and, with rules,
# the server's histogram of the delay from the commit of the data that raised an alarm to the alarm written
# (taihu_rules_alarm_delay, milliseconds).
#
#   bench/rules.sh
#   DEVICES=10000 INFLIGHT=2 DURATION=30 ROUNDS=1 THIRD=5 MQTT_PORT=1885 HTTP_PORT=18080 bench/rules.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DEVICES=${DEVICES:-10000}
INFLIGHT=${INFLIGHT:-2}
MQTT_PORT=${MQTT_PORT:-1885}   # the server's MQTT and HTTP ports
HTTP_PORT=${HTTP_PORT:-18080}
DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-1}
THIRD=${THIRD:-5}
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
    tokens="$results/third-party-$mode-$round.tokens"
    "${BENCH[@]}" telemetry --port "$MQTT_PORT" --api "http://127.0.0.1:$HTTP_PORT" --admin-password bench-admin-password --clients "$DEVICES" \
      --inflight "$INFLIGHT" --duration "$DURATION" --warmup 5 --pid "$pid" --metrics-url "http://127.0.0.1:$HTTP_PORT"/metrics --quiet \
      --third-party-token-file "$tokens" --third-party-devices "$THIRD" "${flag[@]}" --json "$results/telemetry-$mode-$round.json" \
      >"$results/telemetry-$mode-$round.txt" 2>&1 &
    bench=$!
    # The third party starts once the bench's devices are connected (the file appears then).
    for _ in $(seq 1 1200); do [ -f "$tokens" ] && break; kill -0 "$bench" 2>/dev/null || break; sleep 0.5; done
    third=()
    if [ -f "$tokens" ] && [ "$THIRD" -gt 0 ]; then
      while read -r token; do
        ( for i in $(seq 0 40); do echo "{\"k0\":$i}"; sleep 0.5; done \
          | mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -u "$token" -t v1/devices/me/telemetry -l ) &
        third+=($!)
      done < "$tokens"
    fi
    wait "$bench" || true
    for p in "${third[@]}"; do wait "$p" || true; done
    grep -E "delivered msg|broker CPU|allocations" "$results/telemetry-$mode-$round.txt" || cat "$results/telemetry-$mode-$round.txt"
    # The note whole (the table wraps it): points committed and, with rules, the third party's alarms.
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("note:", d.get("note") or d.get("Note"))' \
      "$results/telemetry-$mode-$round.json" 2>/dev/null || true
    echo "== load after: $(uptime)"
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
    # The time of each stage of the alarm path and of the writers it meets, when the server measures them.
    python3 - "$results/metrics-$mode-$round.txt" <<'PY'
import re, sys
stages = {}
for line in open(sys.argv[1]):
    if not line.startswith('taihu_stage_duration_milliseconds'): continue
    stage = re.search(r'stage="([^"]+)"', line)
    if not stage: continue
    s = stages.setdefault(stage.group(1), {'b': [], 'count': 0, 'sum': 0.0})
    value = float(line.rsplit(' ', 1)[1])
    le = re.search(r'le="([^"]+)"', line)
    if line.startswith('taihu_stage_duration_milliseconds_bucket') and le:
        s['b'].append((float('inf') if le.group(1) == '+Inf' else float(le.group(1)), value))
    elif line.startswith('taihu_stage_duration_milliseconds_count'): s['count'] = value
    elif line.startswith('taihu_stage_duration_milliseconds_sum'): s['sum'] = value
def q(s, p):
    for le, c in s['b']:
        if c >= p * s['count']: return le
    return float('nan')
def top(s):
    last = 0
    for le, c in s['b']:
        if c >= s['count']: return le
    return float('nan')
if stages: print(f"{'stage':24} {'count':>8} {'mean':>9} {'p50<=':>7} {'p99<=':>7} {'max<=':>7}")
for name in sorted(stages):
    s = stages[name]
    if s['count'] == 0: continue
    print(f"{name:24} {s['count']:8.0f} {s['sum'] / s['count']:9.2f} {q(s, .5):7g} {q(s, .99):7g} {top(s):7g}")
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
  done
done
echo "results: $results"
