#!/usr/bin/env bash
# What keeping the devices found by their credentials saves (Security:DeviceCacheSeconds): one Taihu (embedded
# default, Release) with the cache (30 s, the default) and without it (0), back to back, ROUNDS rounds each:
#  - the HTTP device API: wrk POSTs a small telemetry JSON to /api/v1/{token}/telemetry over CONNECTIONS
#    connections for DURATION seconds (each request carries the token, as ThingsBoard's HTTP devices do);
#  - MQTT connects with a device's token as user name: taihu-bench connect-storm --username {token} at RATE a
#    second, with our client and MQTTnet's, and Mosquitto beside them (anonymous; it ignores the user name).
# Prints one line per run: requests or connects made per second, p99, and the server's CPU per request or
# connection (its /proc CPU time over the run divided by what it did).
#
#   bench/device-lookup.sh                     # ROUNDS=2 DURATION=10 CONNECTIONS=32 RATE=1000 CLIENTS="taihu mqttnet"
#
# Needs root for apt-get (it installs mosquitto and wrk when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
RATE=${RATE:-1000}
CLIENTS=${CLIENTS:-"taihu mqttnet"}
results="$root/bench/results/device-lookup-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq wrk >/dev/null
fi
# shellcheck source=bench/common.sh
source "$root/bench/common.sh"

cpu_seconds() { # pid -> user+system CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

start_taihu() { # cache seconds -> pid
  local data; data=$(mktemp -d)
  env Listeners__DataDirectory="$data" Listeners__BindAddress=127.0.0.1 Listeners__TcpPort=1885 Listeners__TlsPort=-1 \
    Listeners__WebSocketPort=-1 Listeners__SecureWebSocketPort=-1 Listeners__HttpPort=18080 Logging__LogLevel__Default=Warning \
    Broker__SysInterval=0 Security__AdminPassword=bench-admin-password Security__DeviceCacheSeconds="$1" \
    dotnet "$TAIHU_DLL" >"$results/taihu-$1.log" 2>&1 &
  echo $!
}

# A tenant with one device whose access token is printed.
make_device() {
  python3 - <<'PY'
import json, urllib.request, uuid
base = "http://127.0.0.1:18080"
def call(method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **({"X-Authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None
login = lambda user, password: call("POST", "/api/auth/login", {"username": user, "password": password})["token"]
run = uuid.uuid4().hex[:8]
sys_token = login("sysadmin@taihu.local", "bench-admin-password")
tenant = call("POST", "/api/tenant", {"title": "lookup-" + run}, sys_token)["id"]["id"]
email, password = f"lookup-{run}@bench.local", "bench-" + uuid.uuid4().hex
call("POST", "/api/user?sendActivationMail=false", {"email": email, "authority": "TENANT_ADMIN", "password": password,
                                                  "tenantId": {"id": tenant, "entityType": "TENANT"}}, sys_token)
admin = login(email, password)
token = "lookup-" + run
call("POST", "/api/device?accessToken=" + token, {"name": "lookup meter", "type": "meter"}, admin)
print(token)
PY
}

cat >"$results/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"temperature":21.5,"humidity":48}'
wrk.headers["Content-Type"] = "application/json"
EOF

http_run() { # cache round
  local pid token before after out="$results/http.$1.$2"
  pid=$(start_taihu "$1"); pids+=("$pid"); wait_port 18080; wait_port 1885
  token=$(make_device)
  # Warm-up (the JIT, the pools), not measured.
  wrk -t2 -c"$CONNECTIONS" -d3s -s "$results/post.lua" "http://127.0.0.1:18080/api/v1/$token/telemetry" >/dev/null
  before=$(cpu_seconds "$pid")
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$results/post.lua" "http://127.0.0.1:18080/api/v1/$token/telemetry" >"$out.txt"
  after=$(cpu_seconds "$pid")
  kill "$pid"; wait_port_closed 18080
  python3 - "$out.txt" "$1" "$2" "$before" "$after" <<'PY'
import re, sys
path, cache, rnd, before, after = sys.argv[1:]
text = open(path).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = re.search(r"99%\s+([\d.]+\w+)", text).group(1)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
cpu = float(after) - float(before)
print(f"taihu cache {cache:>2} s  http  round {rnd}: {rate:7.0f} requests/s, p99 {p99}, {errors.group(1) if errors else 0} refused, "
      f"server CPU {cpu / requests * 1e6:.0f} µs a request")
PY
}

mqtt_run() { # broker(taihu|mosquitto) cache client round
  local pid token=ignored port out="$results/mqtt.$1.$2.$3.$4"
  if [ "$1" = mosquitto ]; then
    "$MOSQUITTO" -c "$root/bench/mosquitto.conf" >"$results/mosquitto.log" 2>&1 &
    pid=$!; port=1884
  else
    pid=$(start_taihu "$2"); port=1885; wait_port 18080
    token=$(make_device)
  fi
  pids+=("$pid"); wait_port "$port"
  dotnet "$BENCH_DLL" connect-storm --rate "$RATE" --clients 200 --client "$3" --port "$port" --username "$token" --duration 3 --quiet >/dev/null 2>&1 || true
  dotnet "$BENCH_DLL" connect-storm --rate "$RATE" --clients 200 --client "$3" --port "$port" --username "$token" --pid "$pid" \
    --duration "$DURATION" --quiet --json "$out.json" >"$out.txt" 2>&1 || true
  kill "$pid"; wait_port_closed "$port"
  python3 - "$out.json" "$1" "$2" "$3" "$4" "$DURATION" <<'PY'
import json, sys
path, broker, cache, client, rnd, duration = sys.argv[1:]
name = "mosquitto      " if broker == "mosquitto" else f"taihu cache {cache:>2} s"
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{name}  mqtt  {client:7} round {rnd}: no result ({e})"); sys.exit()
made = r['connections']
cpu = r.get('brokerCpuSecondsPerMillion')
cpu_text = f"{cpu:.0f} µs" if cpu else "?"
print(f"{name}  mqtt  {client:7} round {rnd}: {made / float(duration):7.0f} connects/s, {r['connectFailures']} failed, "
      f"p99 {r.get('connectP99Ms') or 0:.2f} ms, server CPU {cpu_text} a connection")
PY
}

for round in $(seq 1 "$ROUNDS"); do
  for cache in 30 0; do
    http_run "$cache" "$round"
  done
done
for round in $(seq 1 "$ROUNDS"); do
  for client in $CLIENTS; do
    mqtt_run mosquitto - "$client" "$round"
    for cache in 30 0; do
      mqtt_run taihu "$cache" "$client" "$round"
    done
  done
done
echo "results: $results"
