#!/usr/bin/env bash
# Issue 11's benchmarks (docs/benchmarks.md, "Platform: RPC and the live API"), each against Taihu in Release on a
# fresh data directory (SQLite), on MQTT port $MQTT_PORT (2883) and HTTP port $HTTP_PORT (28080), so that it never
# meets the other scripts' servers (1884, 1885, 18080, ...):
#   1. rpc:            $RPC_DEVICES devices connected, two-way calls through the REST API at $RPC_RATE calls/s
#   2. rpc-persistent: $PERSISTENT_CALLS calls to each of $PERSISTENT_DEVICES offline devices, server stopped with
#                      SIGTERM and started again on the same data directory, then the devices connect
#   3. live:           $LIVE_SUBSCRIBERS WebSocket subscribers while devices send $LIVE_RATE msg/s of 5 keys
#
#   bench/control.sh                      # the issue's sizes
#   RPC_DEVICES=500 RPC_RATE=100 PERSISTENT_DEVICES=500 LIVE_SUBSCRIBERS=100 LIVE_RATE=2000 bench/control.sh   # a smoke test
#   ONLY=live bench/control.sh            # one of rpc, rpc-persistent, live
#   RPC_CLIENTS=mqttnet ONLY=rpc bench/control.sh   # the rpc devices' client: taihu, mqttnet and mqttjs (npm mqtt) by default, in turn
#   SOURCE_ADDRESSES=127.0.0.2,127.0.0.3 bench/control.sh   # devices connect from these local addresses, round robin
#   TAIHU_DLL=/tmp/before/Taihu.Server.dll BENCH_DLL=/tmp/bench/taihu-bench.dll bench/control.sh   # given builds (nothing is built)
#   SERVER_ENV="DOTNET_GCgen0size=0x4000000" ONLY=rpc bench/control.sh   # extra environment for the server only (not the generator)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
MQTT_PORT=${MQTT_PORT:-2883}
HTTP_PORT=${HTTP_PORT:-28080}
RPC_DEVICES=${RPC_DEVICES:-10000}
RPC_RATE=${RPC_RATE:-1000}
RPC_DURATION=${RPC_DURATION:-30}
RPC_CLIENTS=${RPC_CLIENTS:-"taihu mqttnet mqttjs"}
PERSISTENT_DEVICES=${PERSISTENT_DEVICES:-10000}
PERSISTENT_CALLS=${PERSISTENT_CALLS:-10}
PERSISTENT_DEADLINE=${PERSISTENT_DEADLINE:-300}
LIVE_SUBSCRIBERS=${LIVE_SUBSCRIBERS:-1000}
LIVE_RATE=${LIVE_RATE:-20000}
LIVE_DURATION=${LIVE_DURATION:-60}
ONLY=${ONLY:-}
SOURCE_ADDRESSES=${SOURCE_ADDRESSES:-}
PASSWORD=bench-admin-password
results="$root/bench/results/control-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

for port in "$MQTT_PORT" "$HTTP_PORT"; do
  if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    echo "port $port is in use: stop what listens there or choose MQTT_PORT / HTTP_PORT" >&2
    exit 1
  fi
done

[ -n "${TAIHU_DLL:-}" ] || dotnet build -c Release src/Taihu.Server -v q -nologo >/dev/null
[ -n "${BENCH_DLL:-}" ] || dotnet build -c Release tools/Taihu.Bench -v q -nologo >/dev/null
BENCH=(dotnet "${BENCH_DLL:-tools/Taihu.Bench/bin/Release/net10.0/taihu-bench.dll}")
TAIHU_DLL=${TAIHU_DLL:-"src/Taihu.Server/bin/Release/net10.0/Taihu.Server.dll"}
echo "server: $TAIHU_DLL"

pid=
stop_server() { # SIGTERM, then wait until the process and its ports are gone
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "server $pid did not stop within 30 s" >&2; kill -KILL "$pid"; fi
  fi
  pid=
  for port in "$MQTT_PORT" "$HTTP_PORT"; do
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null || break; sleep 0.1; done
  done
}
trap stop_server EXIT

start_server() { # data directory, log name -> sets $pid, waits for both ports
  Listeners__DataDirectory="$1" Listeners__BindAddress=127.0.0.1 Listeners__TcpPort="$MQTT_PORT" Listeners__TlsPort=-1 \
    Listeners__WebSocketPort=-1 Listeners__SecureWebSocketPort=-1 Listeners__HttpPort="$HTTP_PORT" Logging__LogLevel__Default=Warning \
    Security__AdminPassword=$PASSWORD env ${SERVER_ENV:-} dotnet "$TAIHU_DLL" >>"$results/taihu-$2.log" 2>&1 &
  pid=$!
  for port in "$MQTT_PORT" "$HTTP_PORT"; do
    for _ in $(seq 1 600); do
      (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || { echo "the server exited; see $results/taihu-$2.log" >&2; exit 1; }
      sleep 0.1
    done
  done
}

COMMON=(--port "$MQTT_PORT" --api "http://127.0.0.1:$HTTP_PORT" --admin-password $PASSWORD --quiet)
if [ -n "$SOURCE_ADDRESSES" ]; then COMMON+=(--source-addresses "$SOURCE_ADDRESSES"); fi
summary=()
row() { # name json -> a line of the summary
  summary+=("$(/usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
head = f"all SUCCESSFUL in {r['durationSeconds']:6.1f} s" if name == "rpc-persistent" else f"p99 {r['latencyP99Ms']:8.2f} ms"
print(f"{name:<16} {head}  sent {r['sent']:>9,}  answered/delivered {r['delivered']:>9,}  lost {r['lost']:>6,}  | {r.get('note') or ''}")
if name == "live":
    mib = lambda b: f"{b / 1048576:.0f}" if b is not None else "?"
    ack = r.get('acknowledgedPerSecond') or 0
    points = ack * 5  # taihu-bench live's default of 5 keys a message
    cpu = r.get('brokerCpuPercent')
    per_million = r.get('brokerCpuSecondsPerMillion')
    alloc = r.get('brokerAllocatedBytesPerDelivered')
    print(f"{'':<16} acknowledged {ack:,.0f} msg/s ({points:,.0f} points/s) of {r['offeredRate']:,.0f} offered;"
          f" publish to frame p50 {r['latencyP50Ms']:.1f} ms, p99 {r['latencyP99Ms']:.1f} ms;"
          f" VmRSS first/last/max {mib(r.get('brokerResidentStartBytes'))}/{mib(r.get('brokerResidentBytes'))}/{mib(r.get('brokerResidentMaxBytes'))} MiB;"
          f" server CPU {cpu if cpu is not None else float('nan'):.0f}%"
          + (f", {per_million:.1f} CPU-s per million points" if per_million is not None else "")
          + (f", {alloc:.0f} B allocated per point" if alloc is not None else ""))
    import re
    m = re.search(r"commit to frame \(the server's histogram[^)]*\): ([^;]*)", r.get('note') or '')
    if m:
        print(f"{'':<16} commit to frame (server): {m.group(1)}")
PY
)")
}

if [ -z "$ONLY" ] || [ "$ONLY" = rpc ]; then
  # Once per device client: taihu-bench's own, then MQTTnet (third-party firmware's timing), each on a fresh server.
  for client in $RPC_CLIENTS; do
    echo "== rpc ($client devices): $RPC_DEVICES devices, $RPC_RATE two-way calls/s for $RPC_DURATION s  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    data=$(mktemp -d); start_server "$data" "rpc-$client"
    "${BENCH[@]}" rpc "${COMMON[@]}" --client "$client" --clients "$RPC_DEVICES" --rate "$RPC_RATE" --duration "$RPC_DURATION" --warmup 5 --pid "$pid" \
      --metrics-url "http://127.0.0.1:$HTTP_PORT/metrics" --json "$results/rpc-$client.json" || true
    echo "   (load at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
    stop_server; rm -rf "$data"
    [ -f "$results/rpc-$client.json" ] && row "rpc ($client)" "$results/rpc-$client.json"
  done
fi

if [ -z "$ONLY" ] || [ "$ONLY" = rpc-persistent ]; then
  echo "== rpc-persistent: $PERSISTENT_CALLS calls to each of $PERSISTENT_DEVICES offline devices, restart, deliver  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  data=$(mktemp -d); start_server "$data" rpc-persistent
  "${BENCH[@]}" rpc-persistent "${COMMON[@]}" --phase create --clients "$PERSISTENT_DEVICES" --calls "$PERSISTENT_CALLS" \
    --state "$results/rpc-persistent.state.json" --json "$results/rpc-persistent-create.json"
  stop_server
  echo "   server stopped (SIGTERM); starting it again on the same data directory"
  started=$(date +%s.%N); start_server "$data" rpc-persistent
  echo "   listening again after $(echo "$(date +%s.%N) - $started" | bc) s"
  "${BENCH[@]}" rpc-persistent "${COMMON[@]}" --phase deliver --duration "$PERSISTENT_DEADLINE" --state "$results/rpc-persistent.state.json" \
    --json "$results/rpc-persistent.json" || true
  stop_server; rm -rf "$data"
  [ -f "$results/rpc-persistent.json" ] && row rpc-persistent "$results/rpc-persistent.json"
fi

if [ -z "$ONLY" ] || [ "$ONLY" = live ]; then
  echo "== live: $LIVE_SUBSCRIBERS WebSocket subscribers, $LIVE_RATE msg/s x 5 keys for $LIVE_DURATION s  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  data=$(mktemp -d); start_server "$data" live
  "${BENCH[@]}" live "${COMMON[@]}" --clients "$LIVE_SUBSCRIBERS" --rate "$LIVE_RATE" --duration "$LIVE_DURATION" --warmup 5 --pid "$pid" \
    --metrics-url "http://127.0.0.1:$HTTP_PORT/metrics" --json "$results/live.json" || true
  echo "   (load at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
  stop_server; rm -rf "$data"
  [ -f "$results/live.json" ] && row live "$results/live.json"
fi

echo
echo "== summary (load at the end: $(cut -d' ' -f1-3 /proc/loadavg)); results in $results"
printf '%s\n' "${summary[@]}"
