# Shared by bench/compare.sh and bench/max-rate.sh (sourced from the repository root): installs Mosquitto when
# missing, builds Taihu and the generator in Release, and defines where they are.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mosquitto >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# Either may be given (a copy of an earlier build, to compare builds back to back); what is not given is built.
[ -n "${TAIHU_DLL:-}" ] || dotnet build -c Release src/Taihu.Server -v q -nologo >/dev/null
[ -n "${BENCH_DLL:-}" ] || dotnet build -c Release tools/Taihu.Bench -v q -nologo >/dev/null
BENCH_DLL=${BENCH_DLL:-"tools/Taihu.Bench/bin/Release/net10.0/taihu-bench.dll"}
TAIHU_DLL=${TAIHU_DLL:-"src/Taihu.Server/bin/Release/net10.0/Taihu.Server.dll"}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Waits until nothing listens on port $1 any more. A broker started in $(...) is not this shell's child, so `wait`
# cannot wait for it: without this, the next run could start while the last broker still holds the port.
wait_port_closed() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null || return 0; sleep 0.1; done; echo "port $1 is still open" >&2; return 1; }

# True when nothing listens on TCP port $1.
port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }

# The environment that makes Taihu a plain broker on 127.0.0.1:1885 (HTTP 18080) with anonymous clients allowed
# and a fresh data directory: `env $(taihu_env) dotnet "$TAIHU_DLL"`.
taihu_env() {
  local data; data=$(mktemp -d)
  echo Listeners__BindAddress=127.0.0.1 Listeners__TcpPort=1885 Listeners__TlsPort=-1 Listeners__WebSocketPort=-1 \
    Listeners__SecureWebSocketPort=-1 Listeners__HttpPort=18080 Listeners__DataDirectory="$data" \
    Logging__LogLevel__Default=Warning Broker__SysInterval=0 Security__AllowAnonymousMqtt=true
}

# The port each broker listens on in these scripts.
broker_port() { if [ "$1" = mosquitto ]; then echo 1884; else echo 1885; fi; }

# Starts a broker pinned to core $BROKER_CPU (taskset), its log in $results; prints its pid.
start_pinned_broker() { # broker -> pid
  if [ "$1" = mosquitto ]; then
    taskset -c "$BROKER_CPU" "$MOSQUITTO" -c "$root/bench/mosquitto.conf" >"$results/mosquitto.log" 2>&1 &
  else
    # shellcheck disable=SC2046
    env $(taihu_env) taskset -c "$BROKER_CPU" dotnet "$TAIHU_DLL" >"$results/taihu.log" 2>&1 &
  fi
  echo $!
}

# Starts a private PostgreSQL cluster (Debian's postgresql package, installed when missing) on 127.0.0.1:$1 with
# max_connections $2 (default 200), in a fresh directory, and makes the EXIT trap stop it and remove the directory.
# PG_OPTIONS adds server settings (`-c name=value ...`).
# Needs root (it runs PostgreSQL as the postgres user).
start_private_postgres() { # port [max_connections]
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgdir=$(mktemp -d)
  chown postgres "$pgdir"
  runuser -u postgres -- "$PGBIN/initdb" -D "$pgdir/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $1 -k $pgdir -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_connections=${2:-200} ${PG_OPTIONS:-}" start >/dev/null
  trap 'cleanup; stop_private_postgres' EXIT
}
stop_private_postgres() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
