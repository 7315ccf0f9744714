#!/usr/bin/env bash
# Issue 12's webhook benchmark (docs/benchmarks.md, "Integrations: webhook delivery"): a webhook integration
# (TELEMETRY) to a receiver inside taihu-bench (Kestrel on 127.0.0.1, checking every signature), DEVICES devices
# publishing telemetry at QoS 1 (INFLIGHT in flight each, RATE msg/s in all, 0 = as fast as acknowledged), and beside
# them a third-party publisher (mosquitto_pub -l at QoS 1, THIRD messages from one more device). Each message has
# its own ts, so that none is merged into another's point (an event holds a run of a device's messages). After the DURATION-s
# window the receiver is stopped for DOWNTIME s while the devices go on, then started again: the run waits until every
# acknowledged message's event arrived and reports the rate, the catch-up, duplicates and order per device.
# Taihu in Release on SQLite, a fresh data directory; the load average is printed before and after.
#
#   bench/integrations.sh                               # DEVICES=500 INFLIGHT=1 RATE=0 DURATION=20 DOWNTIME=60 THIRD=2000
#   DOWNTIME=10 DURATION=10 bench/integrations.sh       # a short run
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DEVICES=${DEVICES:-500}
INFLIGHT=${INFLIGHT:-1}
RATE=${RATE:-0}
MQTT_PORT=${MQTT_PORT:-1885}   # the server's MQTT and HTTP ports
HTTP_PORT=${HTTP_PORT:-18080}
RECEIVER_PORT=${RECEIVER_PORT:-0}   # the webhook receiver's (0: a free one)
DURATION=${DURATION:-20}
DOWNTIME=${DOWNTIME:-60}
THIRD=${THIRD:-2000}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-64}   # the server's Integrations:MaxInFlight (its default is 64)
results="$root/bench/results/integrations-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BENCH=(dotnet "$BENCH_DLL")
ulimit -n 20000 2>/dev/null || true

wait_port_closed "$MQTT_PORT"
data=$(mktemp -d)
env Listeners__DataDirectory="$data" Listeners__BindAddress=127.0.0.1 Listeners__TcpPort="$MQTT_PORT" Listeners__TlsPort=-1 \
  Listeners__WebSocketPort=-1 Listeners__SecureWebSocketPort=-1 Listeners__HttpPort="$HTTP_PORT" Listeners__Hj212Port=-1 Listeners__Jt808Port=-1 \
  Listeners__CoapPort=-1 Logging__LogLevel__Default=Warning \
  Security__AdminPassword=bench-admin-password Integrations__MaxInFlight="$MAX_IN_FLIGHT" dotnet "$TAIHU_DLL" >"$results/taihu.log" 2>&1 &
pid=$!; pids+=("$pid"); wait_port "$MQTT_PORT"; wait_port "$HTTP_PORT"
echo "== load before: $(uptime)"
echo "== $DEVICES devices, QoS 1, $INFLIGHT in flight each, Integrations:MaxInFlight $MAX_IN_FLIGHT, rate $RATE (0: as fast as acknowledged), ${DURATION}s window, receiver down ${DOWNTIME}s; mosquitto_pub: $THIRD messages"
token_file="$results/third-party.token"
"${BENCH[@]}" webhook --port "$MQTT_PORT" --api "http://127.0.0.1:$HTTP_PORT" --admin-password bench-admin-password --clients "$DEVICES" \
  --inflight "$INFLIGHT" --rate "$RATE" --duration "$DURATION" --warmup 5 --downtime "$DOWNTIME" --receiver-port "$RECEIVER_PORT" --pid "$pid" --quiet \
  --third-party-token-file "$token_file" --third-party-messages "$THIRD" --json "$results/webhook.json" >"$results/webhook.txt" 2>&1 &
bench=$!
# The server's own view once a second: events waiting in the outbox, sent, and committed points.
( while kill -0 "$bench" 2>/dev/null; do
    echo "$(date -u +%T) $(curl -s "http://127.0.0.1:$HTTP_PORT"/metrics | grep -E '^taihu_(integration_(outbox|sent_total|lag)|ingest_points_total)' | sed 's/{[^}]*}//' | tr '\n' ' ')"
    sleep 1
  done ) >"$results/server-metrics.txt" 2>&1 &
# The third party: mosquitto_pub reads one message a line and publishes each at QoS 1 on one connection.
for _ in $(seq 1 1200); do [ -f "$token_file" ] && break; kill -0 "$bench" 2>/dev/null || break; sleep 0.5; done
# Each message under its own ts (a day ago plus its number), as the bench's devices send theirs.
base=$(( $(date +%s%3N) - 86400000 ))
[ -f "$token_file" ] && seq 0 $((THIRD - 1)) | awk -v b="$base" '{ printf "{\"ts\":%.0f,\"values\":{\"k0\":%d}}\n", b + $1, $1 }' | mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -u "$(cat "$token_file")" -t v1/devices/me/telemetry -l
status=0; wait "$bench" || status=$?
echo "== load after: $(uptime)"
grep -E "delivered|lost|note|broker CPU|generator CPU" "$results/webhook.txt" || cat "$results/webhook.txt"
curl -s "http://127.0.0.1:$HTTP_PORT"/metrics | grep -E '^taihu_integration' > "$results/metrics.txt" || true
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$data"
echo "results: $results"
exit "$status"
