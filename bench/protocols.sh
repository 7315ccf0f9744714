#!/usr/bin/env bash
# JT/T 808 terminals and HJ 212 stations (docs/benchmarks.md, issue 14), each load driven by two clients at once
# against one server: taihu-bench's own (C#) and a third-party one written from the standards in Python
# (bench/thirdparty/jt808_fleet.py, hj212_fleet.py; /usr/bin/python3, standard library only). Starts Taihu in
# Release on a fresh data directory (HTTP, JT/T 808 and HJ 212 listeners only), runs the JT/T 808 pair, then the
# HJ 212 pair, and prints both results of each. Each client makes its own tenant and provisioning profile.
#
#   bench/protocols.sh
#   TERMINALS=10000 PY_TERMINALS=1000 STATIONS=2000 PY_STATIONS=200 DURATION=60 bench/protocols.sh
#   HTTP_PORT=21580 JT808_PORT=21508 HJ212_PORT=21512 bench/protocols.sh    # other ports
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TERMINALS=${TERMINALS:-9000}      # taihu-bench's terminals
PY_TERMINALS=${PY_TERMINALS:-1000} # the Python fleet's
INTERVAL=${INTERVAL:-10}           # seconds between a terminal's location reports
HEARTBEAT=${HEARTBEAT:-30}
STATIONS=${STATIONS:-1800}
PY_STATIONS=${PY_STATIONS:-200}
HJ_INTERVAL=${HJ_INTERVAL:-60}     # seconds between a station's minute-data uploads
HJ_DURATION=${HJ_DURATION:-120}    # two uploads a station: the first creates its device, the second is plain ingest
DURATION=${DURATION:-60}
# The Python terminals register in seconds, taihu-bench's take longer and warm up for 15 s: the Python fleet keeps
# sending for this long, so that it covers taihu-bench's whole measured window.
PY_DURATION=${PY_DURATION:-$((DURATION + 40))}
HTTP_PORT=${HTTP_PORT:-18080}
JT808_PORT=${JT808_PORT:-16808}
HJ212_PORT=${HJ212_PORT:-19212}
PASSWORD=bench-admin-password
PYTHON=/usr/bin/python3
results="$root/bench/results/protocols-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

dotnet build -c Release src/Taihu.Server -v q -nologo >/dev/null
dotnet build -c Release tools/Taihu.Bench -v q -nologo >/dev/null
BENCH=(dotnet "$root/tools/Taihu.Bench/bin/Release/net10.0/taihu-bench.dll")
TAIHU_DLL="$root/src/Taihu.Server/bin/Release/net10.0/Taihu.Server.dll"

for port in "$HTTP_PORT" "$JT808_PORT" "$HJ212_PORT"; do
  if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then echo "port $port is in use: stop what listens there first" >&2; exit 1; fi
done

data=$(mktemp -d)
Listeners__DataDirectory="$data" Listeners__BindAddress=127.0.0.1 Listeners__TcpPort=-1 Listeners__TlsPort=-1 \
  Listeners__WebSocketPort=-1 Listeners__SecureWebSocketPort=-1 Listeners__CoapPort=-1 Listeners__HttpPort="$HTTP_PORT" \
  Listeners__Jt808Port="$JT808_PORT" Listeners__Hj212Port="$HJ212_PORT" Logging__LogLevel__Default=Warning \
  Security__AdminPassword="$PASSWORD" dotnet "$TAIHU_DLL" >"$results/taihu.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for port in "$HJ212_PORT" "$JT808_PORT" "$HTTP_PORT"; do
  for _ in $(seq 1 150); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.2; done
done
api="http://127.0.0.1:$HTTP_PORT"

echo "== JT/T 808: $TERMINALS taihu-bench terminals and $PY_TERMINALS Python terminals, a location every $INTERVAL s," \
  "heartbeats every $HEARTBEAT s, $DURATION s ($(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
"${BENCH[@]}" jt808 --api "$api" --admin-password "$PASSWORD" --jt808-port "$JT808_PORT" --clients "$TERMINALS" \
  --interval "$INTERVAL" --heartbeat "$HEARTBEAT" --duration "$DURATION" --warmup 15 --quiet --pid "$server" \
  --metrics-url "$api/metrics" --json "$results/jt808-taihu-bench.json" >"$results/jt808-taihu-bench.txt" 2>&1 &
csharp=$!
"$PYTHON" bench/thirdparty/jt808_fleet.py --port "$JT808_PORT" --api "$api" --admin-password "$PASSWORD" \
  --terminals "$PY_TERMINALS" --interval "$INTERVAL" --heartbeat "$HEARTBEAT" --duration "$PY_DURATION" --verify 100 \
  --json "$results/jt808-python.json" >"$results/jt808-python.txt" 2>&1 &
python=$!
status=0
wait "$csharp" || status=1
wait "$python" || status=1
echo "-- taihu-bench jt808"; cat "$results/jt808-taihu-bench.txt"
echo "-- bench/thirdparty/jt808_fleet.py"; cat "$results/jt808-python.txt"

echo "== HJ 212: $STATIONS taihu-bench stations and $PY_STATIONS Python stations, minute data every $HJ_INTERVAL s," \
  "$HJ_DURATION s ($(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
"${BENCH[@]}" hj212 --port "$HJ212_PORT" --api "$api" --admin-password "$PASSWORD" --stations "$STATIONS" \
  --interval "$HJ_INTERVAL" --duration "$HJ_DURATION" --verify "$STATIONS" --json "$results/hj212-taihu-bench.json" \
  >"$results/hj212-taihu-bench.txt" 2>&1 &
csharp=$!
"$PYTHON" bench/thirdparty/hj212_fleet.py --port "$HJ212_PORT" --api "$api" --admin-password "$PASSWORD" \
  --stations "$PY_STATIONS" --interval "$HJ_INTERVAL" --duration "$HJ_DURATION" --verify "$PY_STATIONS" \
  --json "$results/hj212-python.json" >"$results/hj212-python.txt" 2>&1 &
python=$!
wait "$csharp" || status=1
wait "$python" || status=1
echo "-- taihu-bench hj212"; cat "$results/hj212-taihu-bench.txt"
echo "-- bench/thirdparty/hj212_fleet.py"; cat "$results/hj212-python.txt"
echo "results in $results; load $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
