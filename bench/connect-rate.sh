#!/usr/bin/env bash
# Connects per second, plain TCP and TLS: one Taihu (embedded default, Release) and Mosquitto (bench/mosquitto.conf
# plus a TLS listener), the same RSA 2048 certificate for both, taihu-bench connect-storm with its own client and
# MQTTnet's, in turn (ROUNDS rounds). Each connection is TCP, the TLS handshake when on, CONNECT, CONNACK and
# DISCONNECT; each measured run follows WARMUP seconds of the same connects. Prints one line per run: connections made per second, failures, connect latency p50/p99 and the
# broker's CPU per connection (its /proc CPU time over the run divided by the connections made); the JSON of each
# run is kept in bench/results/connect-*.
#
# BROKERS="mosquitto taihu cluster" adds a cluster: NODES Taihu nodes (default 3) on a private PostgreSQL, the storm
# against node 0 (each CONNECT then claims its client's session in its session registry partition, on whichever node
# Orleans placed it); its CPU per connection is the nodes' together.
#
#   bench/connect-rate.sh                       # RATES="500 1000" ROUNDS=2 DURATION=10 CLIENTS="taihu mqttnet" BROKERS="mosquitto taihu"
#   RATES=2000 CLIENTS=taihu bench/connect-rate.sh
#   RATES=1000 BROKERS="mosquitto taihu cluster" bench/connect-rate.sh
#
# Needs root for apt-get (it installs mosquitto and, for a cluster, postgresql when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
RATES=${RATES:-"500 1000"}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-5} # seconds of connects before each measured run
CLIENTS=${CLIENTS:-"taihu mqttnet"}
CONCURRENCY=${CONCURRENCY:-200} # connects in progress at once, at most
BROKERS=${BROKERS:-"mosquitto taihu"}
NODES=${NODES:-3}
PGPORT=${PGPORT:-26300}
results="$root/bench/results/connect-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"

# One certificate for both brokers: RSA 2048, as most device fleets still use.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$results/key.pem" -out "$results/cert.pem" 2>/dev/null
chmod 644 "$results/key.pem"
cat "$root/bench/mosquitto.conf" >"$results/mosquitto.conf"
cat >>"$results/mosquitto.conf" <<EOF

listener 8884 127.0.0.1
certfile $results/cert.pem
keyfile $results/key.pem
EOF

if [[ " $BROKERS " == *" cluster "* ]]; then
  start_private_postgres "$PGPORT" 300
fi

start() { # broker -> pid
  if [ "$1" = mosquitto ]; then
    "$MOSQUITTO" -c "$results/mosquitto.conf" >"$results/mosquitto.log" 2>&1 &
  else
    # shellcheck disable=SC2046
    env $(taihu_env) Listeners__TlsPort=8885 Listeners__CertificatePath="$results/cert.pem" Listeners__CertificateKeyPath="$results/key.pem" \
      dotnet "$TAIHU_DLL" >"$results/taihu.log" 2>&1 &
  fi
  echo $!
}

start_node() { # index -> pid; node 0 takes the storm on 1885 (TLS 8885), the others listen elsewhere
  local i=$1 tcp=$((1885 + 10 * $1)) tls=$((8885 + 10 * $1))
  # shellcheck disable=SC2046
  env $(taihu_env) Listeners__TcpPort=$tcp Listeners__TlsPort=$tls Listeners__HttpPort=$((18080 + i)) \
    Listeners__CertificatePath="$results/cert.pem" Listeners__CertificateKeyPath="$results/key.pem" \
    Listeners__Hj212Port=-1 Listeners__Jt808Port=-1 Listeners__CoapPort=-1 \
    Storage__Provider=PostgreSql "Storage__ConnectionString=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=taihu;Maximum Pool Size=30" \
    Cluster__Enabled=true Cluster__ClusterId=bench Cluster__SiloPort=$((26200 + i)) Cluster__AdvertisedAddress=127.0.0.1 \
    dotnet "$TAIHU_DLL" >"$results/node$i.log" 2>&1 &
  echo $!
}

cpu_seconds() { # pid... -> their user+system CPU seconds together
  local total=0 pid
  for pid in "$@"; do
    total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{print t + ($14 + $15) / hz}' "/proc/$pid/stat")
  done
  echo "$total"
}

run_one() { # broker transport client rate round
  local broker=$1 transport=$2 client=$3 rate=$4 round=$5 pid port base tls=() node_pids=() before after
  if [ "$broker" = cluster ]; then
    psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "DROP DATABASE IF EXISTS taihu WITH (FORCE)" -c "CREATE DATABASE taihu"
    for i in $(seq 0 $((NODES - 1))); do
      # The first node makes the tables; the others start once it listens.
      node_pids[i]=$(start_node "$i"); pids+=("${node_pids[i]}")
      wait_port $((1885 + 10 * i))
    done
    sleep 3 # the nodes see each other
    pid=${node_pids[0]}
  else
    pid=$(start "$broker"); pids+=("$pid"); node_pids=("$pid")
  fi
  if [ "$broker" = mosquitto ]; then base=1884; else base=1885; fi
  port=$base
  wait_port "$port"
  if [ "$transport" = tls ]; then
    if [ "$broker" = mosquitto ]; then port=8884; else port=8885; fi
    wait_port "$port"
    tls=(--tls --ca-file "$results/cert.pem")
  fi
  local out="$results/$broker.$transport.$client.$rate.$round"
  # A warm-up storm first, not measured: a node that takes over a dead node's devices has been running for a while
  # (for Taihu, the JIT has compiled the connect path by then).
  dotnet "$BENCH_DLL" connect-storm --rate "$rate" --clients "$CONCURRENCY" --client "$client" --port "$port" "${tls[@]}" \
    --duration "$WARMUP" --quiet >/dev/null 2>&1 || true
  before=$(cpu_seconds "${node_pids[@]}")
  dotnet "$BENCH_DLL" connect-storm --rate "$rate" --clients "$CONCURRENCY" --client "$client" --port "$port" "${tls[@]}" --pid "$pid" \
    --duration "$DURATION" --quiet --json "$out.json" >"$out.txt" 2>&1 || true
  after=$(cpu_seconds "${node_pids[@]}")
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait_port_closed "$base"
  for i in $(seq 1 $((${#node_pids[@]} - 1))); do wait_port_closed $((1885 + 10 * i)); done
  python3 - "$out.json" "$broker" "$transport" "$client" "$rate" "$round" "$DURATION" "$before" "$after" <<'PY'
import json, sys
path, broker, transport, client, rate, rnd, duration, before, after = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{broker:9} {transport:5} {client:7} {rate:>5}/s round {rnd}: no result ({e})"); sys.exit()
made = r['connections']
cpu = r.get('brokerCpuSecondsPerMillion')
if broker == "cluster" and made > 0:
    cpu = (float(after) - float(before)) / made * 1e6  # every node's CPU over the run, per connection made
print(f"{broker:9} {transport:5} {client:7} {rate:>5}/s round {rnd}: {made / float(duration):7.0f} connects/s, {r['connectFailures']} failed, "
      f"p50 {r.get('connectP50Ms') or 0:.2f} p99 {r.get('connectP99Ms') or 0:.2f} ms, broker CPU {r.get('brokerCpuPercent') or 0:.0f}% = "
      f"{(cpu or 0):.0f} us per connection{' (all nodes)' if broker == 'cluster' else ''}, generator CPU {r.get('generatorCpuPercent') or 0:.0f}% (load {open('/proc/loadavg').read().split()[0]})")
PY
}

for rate in $RATES; do
  for transport in plain tls; do
    for client in $CLIENTS; do
      for round in $(seq 1 "$ROUNDS"); do
        # Each round in the other order, so that neither broker always runs first.
        order=$BROKERS; if [ $((round % 2)) -eq 0 ]; then order=$(echo "$BROKERS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
        for broker in $order; do run_one "$broker" "$transport" "$client" "$rate" "$round"; done
      done
    done
  done
done
echo "results: $results"
