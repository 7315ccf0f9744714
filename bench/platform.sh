#!/usr/bin/env bash
# The platform's benchmarks (docs/benchmarks.md, "Platform"): durable telemetry ingest from 1,000 devices and the
# latency of telemetry reads, on SQLite and on PostgreSQL. Starts Taihu in Release on a fresh data directory for
# each run, and a private PostgreSQL 15 cluster (Debian's postgresql package; installed when missing).
#
#   bench/platform.sh
#   DEVICES=1000 DURATION=20 bench/platform.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DEVICES=${DEVICES:-1000}
DURATION=${DURATION:-20}
QUERY_DEVICES=${QUERY_DEVICES:-10000}
POINTS=${POINTS:-1000000}
results="$root/bench/results/platform-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
BENCH=(dotnet "$BENCH_DLL")

start_private_postgres 55432
PG="Host=127.0.0.1;Port=55432;Username=postgres;Database=taihu;Maximum Pool Size=50"

start_platform() { # provider -> pid
  local data; data=$(mktemp -d)
  local storage=()
  if [ "$1" = postgres ]; then
    psql -q -h 127.0.0.1 -p 55432 -U postgres -c "DROP DATABASE IF EXISTS taihu WITH (FORCE)" -c "CREATE DATABASE taihu"
    storage=(Storage__Provider=PostgreSql "Storage__ConnectionString=$PG")
  fi
  env "${storage[@]}" Listeners__DataDirectory="$data" Listeners__BindAddress=127.0.0.1 Listeners__TcpPort=1885 Listeners__TlsPort=-1 \
    Listeners__WebSocketPort=-1 Listeners__SecureWebSocketPort=-1 Listeners__HttpPort=18080 Logging__LogLevel__Default=Warning \
    Security__AdminPassword=bench-admin-password dotnet "$TAIHU_DLL" >"$results/taihu-$1.log" 2>&1 &
  echo $!
}

for provider in sqlite postgres; do
  for inflight in 1 10; do
    pid=$(start_platform "$provider"); pids+=("$pid"); wait_port 1885
    echo "== telemetry: $DEVICES devices, QoS 1, 5 keys, $inflight in flight each, $provider"
    "${BENCH[@]}" telemetry --port 1885 --api http://127.0.0.1:18080 --admin-password bench-admin-password --clients "$DEVICES" \
      --inflight "$inflight" --duration "$DURATION" --warmup 5 --pid "$pid" --metrics-url http://127.0.0.1:18080/metrics --quiet \
      --json "$results/telemetry-$provider-$inflight.json" | grep -E "delivered msg|broker CPU|note|points|committed" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  pid=$(start_platform "$provider"); pids+=("$pid"); wait_port 1885
  echo "== queries: latest among $QUERY_DEVICES devices, 1-hour AVG over $POINTS points, $provider"
  "${BENCH[@]}" queries --api http://127.0.0.1:18080 --admin-password bench-admin-password --clients "$QUERY_DEVICES" --points "$POINTS" \
    --duration 10 --quiet --json "$results/queries-$provider.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
echo "results: $results"
