# shellcheck shell=bash
# Installs, starts and stops the real services fleetstream runs and is tested against:
# nisshi (a Kafka-protocol broker, built once with the preinstalled nightly toolchain and cached),
# Debian's ClickHouse server (alone, or two of them as a 2-shard cluster with Debian's ZooKeeper),
# and chDB (current ClickHouse as a library, from PyPI's chdb-core).
# Sourced by scripts/test, scripts/up and the benches; the versions come from versions.env.
#
# Every function prints what it does on stderr; services get free loopback ports and their own
# directory, so several runs can share a machine.

FS_CACHE_DIR=${FLEETSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetstream}
# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/../../versions.env"
FS_NISSHI_VERSION=$NISSHI_VERSION
FS_NISSHI_FEATURES=$NISSHI_FEATURES
FS_NISSHI_HOME=$FS_CACHE_DIR/nisshi-$FS_NISSHI_VERSION-${FS_NISSHI_FEATURES//,/-}
FS_NISSHI=$FS_NISSHI_HOME/bin/nisshi
FS_CHDB_VERSION=$CHDB_VERSION
FS_CHDB_SHA256=$CHDB_SHA256
FS_CHDB_HOME=$FS_CACHE_DIR/chdb-core-$FS_CHDB_VERSION
FS_CHDB_LIB=$FS_CHDB_HOME/chdb/_chdb.abi3.so
FS_ZOOKEEPER_JAR=/usr/share/java/zookeeper.jar
FS_PIDS=()

fs_say() {
  if [ -t 2 ]; then printf '\033[1m[fleetstream]\033[0m %s\n' "$*" >&2; else printf '[fleetstream] %s\n' "$*" >&2; fi
}

fs_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until a TCP port on 127.0.0.1 accepts connections (or the owning pid died).
fs_wait_port() {
  local port=$1 pid=$2 what=$3 tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { fs_say "$what exited during start-up"; return 1; }
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || { fs_say "$what did not open port $port within 30 s"; return 1; }
    sleep 0.1
  done
}

fs_apt_install() {
  fs_say "installing Debian packages: $*"
  if [ -z "${FS_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    FS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

fs_ensure_tools() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  command -v flock >/dev/null || missing+=(util-linux)
  command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
  # The ClickHouse cluster's coordination (replicated tables, ON CLUSTER DDL); brings Java.
  [ -f "$FS_ZOOKEEPER_JAR" ] || missing+=(zookeeper)
  # librdkafka is built with TLS and SASL against the system's OpenSSL; the TLS tests make their
  # certificates with the openssl command.
  [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  command -v openssl >/dev/null || missing+=(openssl)
  # The dashboard's end-to-end test runs the page in headless Chromium.
  command -v chromium >/dev/null || missing+=(chromium chromium-driver)
  # scripts/test checks the shell scripts before the tests.
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  if [ ${#missing[@]} -gt 0 ]; then fs_apt_install "${missing[@]}"; fi
}

# Builds the broker once per machine. It needs rustc >= 1.96 and stable here is 1.95, so this one
# tool is built with the preinstalled nightly toolchain; our own code stays on stable.
fs_ensure_nisshi() {
  [ -x "$FS_NISSHI" ] && return 0
  mkdir -p "$FS_CACHE_DIR"
  exec 9>"$FS_CACHE_DIR/nisshi.lock"
  flock 9
  if [ ! -x "$FS_NISSHI" ]; then
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
      fs_say "the nightly Rust toolchain is missing; it is needed once to build the nisshi broker"
      return 1
    fi
    fs_say "one-time set-up: building the nisshi $FS_NISSHI_VERSION Kafka-protocol broker (features $FS_NISSHI_FEATURES)"
    fs_say "  about 15-25 min on 2 cores; cached in $FS_NISSHI_HOME; cargo's progress follows"
    local start=$SECONDS
    rm -rf "$FS_NISSHI_HOME.partial"
    cargo +nightly install nisshi --version "$FS_NISSHI_VERSION" --locked --no-default-features \
      --features "$FS_NISSHI_FEATURES" --root "$FS_NISSHI_HOME.partial" \
      --target-dir "$FS_CACHE_DIR/nisshi-target" >&2
    mv "$FS_NISSHI_HOME.partial" "$FS_NISSHI_HOME"
    fs_say "nisshi built in $((SECONDS - start)) s"
  fi
  flock -u 9
}

# Installs chDB's engine library once per machine (a 181 MB wheel from PyPI, pinned by hash,
# unpacked to 534 MB) and the Python runtime library its driver needs. Sets FS_CHDB_LIB.
fs_ensure_chdb() {
  # grep without -q reads all of ldconfig's output: with pipefail, an early exit would SIGPIPE it.
  if ! ldconfig -p 2>/dev/null | grep 'libpython3\.11\.so\.1\.0' >/dev/null; then
    fs_apt_install libpython3.11
  fi
  [ -f "$FS_CHDB_LIB" ] && return 0
  mkdir -p "$FS_CACHE_DIR"
  exec 8>"$FS_CACHE_DIR/chdb.lock"
  flock 8
  if [ ! -f "$FS_CHDB_LIB" ]; then
    fs_say "one-time set-up: downloading chDB $FS_CHDB_VERSION (current ClickHouse as a library, 181 MB) from PyPI"
    local partial=$FS_CHDB_HOME.partial start=$SECONDS
    rm -rf "$partial" && mkdir -p "$partial/wheel"
    echo "chdb-core==$FS_CHDB_VERSION --hash=sha256:$FS_CHDB_SHA256" >"$partial/requirements.txt"
    python3 -m pip download --no-deps --only-binary=:all: --require-hashes --progress-bar on \
      -r "$partial/requirements.txt" -d "$partial/wheel" >&2
    fs_say "unpacking chDB into $FS_CHDB_HOME"
    python3 -m zipfile -e "$partial"/wheel/chdb_core-*.whl "$partial"
    rm -rf "$partial/wheel"
    mv "$partial" "$FS_CHDB_HOME"
    fs_say "chDB installed in $((SECONDS - start)) s"
  fi
  flock -u 8
}

# fs_start_broker DIR ENGINE: ENGINE is `memory` (fast, tests) or `sqlite` (durable).
# Sets FS_BROKERS and FS_BROKER_PID.
fs_start_broker() {
  local dir=$1 engine=${2:-memory} port
  mkdir -p "$dir"
  port=$(fs_free_port)
  local storage="memory://nisshi/"
  [ "$engine" = sqlite ] && storage="sqlite://nisshi.db"
  (cd "$dir" && exec "$FS_NISSHI" broker \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$storage" --group-initial-rebalance-delay 0s >"$dir/broker.log" 2>&1) &
  FS_BROKER_PID=$!
  FS_PIDS+=("$FS_BROKER_PID")
  fs_wait_port "$port" "$FS_BROKER_PID" "nisshi broker" || { tail -20 "$dir/broker.log" >&2; return 1; }
  FS_BROKERS=127.0.0.1:$port
  fs_say "broker (nisshi, $engine) on $FS_BROKERS, pid $FS_BROKER_PID, log $dir/broker.log"
}

# fs_start_clickhouse DIR [CONFIG TCP_PORT]: Debian's ClickHouse 18.16 on free ports (or the
# given TCP port) with its data in DIR, configured by CONFIG (by default Debian's).
# Sets FS_CLICKHOUSE_URL and FS_CLICKHOUSE_PID.
fs_start_clickhouse() {
  local dir=$1 config=${2:-/etc/clickhouse-server/config.xml} tcp=${3:-} http inter
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
  http=$(fs_free_port); inter=$(fs_free_port)
  [ -n "$tcp" ] || tcp=$(fs_free_port)
  (cd "$dir" && exec clickhouse-server --config-file="$config" -- \
      --path="$dir/data/" --tmp_path="$dir/tmp/" --user_files_path="$dir/user_files/" \
      --format_schema_path="$dir/format_schemas/" \
      --http_port="$http" --tcp_port="$tcp" --interserver_http_port="$inter" \
      --logger.log="$dir/server.log" --logger.errorlog="$dir/server.err.log" --logger.console=0 \
      >"$dir/stdout.log" 2>&1) &
  FS_CLICKHOUSE_PID=$!
  FS_PIDS+=("$FS_CLICKHOUSE_PID")
  fs_wait_port "$http" "$FS_CLICKHOUSE_PID" "clickhouse-server" || { tail -20 "$dir/server.err.log" "$dir/stdout.log" >&2; return 1; }
  FS_CLICKHOUSE_URL=http://127.0.0.1:$http
  local version
  version=$(curl -sf "$FS_CLICKHOUSE_URL/?query=SELECT%20version()")
  fs_say "ClickHouse $version on $FS_CLICKHOUSE_URL, pid $FS_CLICKHOUSE_PID, log $dir/server.log"
}

# fs_start_zookeeper DIR: Debian's ZooKeeper, standalone, on a free loopback port with its data in
# DIR. Sets FS_ZOOKEEPER_PORT and FS_ZOOKEEPER_PID.
fs_start_zookeeper() {
  local dir=$1
  mkdir -p "$dir/data"
  FS_ZOOKEEPER_PORT=$(fs_free_port)
  cat >"$dir/zoo.cfg" <<EOF
tickTime=500
dataDir=$dir/data
clientPort=$FS_ZOOKEEPER_PORT
clientPortAddress=127.0.0.1
maxSessionTimeout=30000
admin.enableServer=false
EOF
  (cd "$dir" && exec java -Xmx256m -cp "$FS_ZOOKEEPER_JAR:/etc/zookeeper/conf" \
      org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1) &
  FS_ZOOKEEPER_PID=$!
  FS_PIDS+=("$FS_ZOOKEEPER_PID")
  fs_wait_port "$FS_ZOOKEEPER_PORT" "$FS_ZOOKEEPER_PID" "zookeeper" || { tail -20 "$dir/zookeeper.log" >&2; return 1; }
  fs_say "ZooKeeper on 127.0.0.1:$FS_ZOOKEEPER_PORT, pid $FS_ZOOKEEPER_PID, log $dir/zookeeper.log"
}

# fs_start_clickhouse_cluster DIR NAME: a ClickHouse cluster NAME of two 18.16 servers, one shard
# each (one replica), coordinated by a ZooKeeper of its own: <remote_servers>, <macros> ({shard},
# {replica}) and <distributed_ddl> (ON CLUSTER), in a config.d beside a copy of Debian's config.
# Sets FS_CLUSTER_URLS (space-separated, shard 1 first).
fs_start_clickhouse_cluster() {
  local dir=$1 name=$2 shard tries tcp_ports=() shards=""
  fs_start_zookeeper "$dir/zookeeper"
  tcp_ports=("$(fs_free_port)" "$(fs_free_port)")
  for shard in 1 2; do
    shards+="<shard><internal_replication>true</internal_replication>"
    shards+="<replica><host>127.0.0.1</host><port>${tcp_ports[$((shard - 1))]}</port></replica></shard>"
  done
  FS_CLUSTER_URLS=""
  for shard in 1 2; do
    local server=$dir/shard$shard
    mkdir -p "$server/config.d"
    cp /etc/clickhouse-server/config.xml "$server/config.xml"
    ln -sf /etc/clickhouse-server/users.xml "$server/users.xml"
    cat >"$server/config.d/cluster.xml" <<EOF
<yandex>
  <remote_servers><$name>$shards</$name></remote_servers>
  <zookeeper><node><host>127.0.0.1</host><port>$FS_ZOOKEEPER_PORT</port></node></zookeeper>
  <macros><shard>$shard</shard><replica>replica1</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
EOF
    fs_start_clickhouse "$server" "$server/config.xml" "${tcp_ports[$((shard - 1))]}"
    # Replicated tables and ON CLUSTER need the server's ZooKeeper session: wait for it.
    tries=0
    until curl -sf "$FS_CLICKHOUSE_URL/" --data-binary "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -lt 100 ] || { fs_say "ClickHouse shard $shard has no ZooKeeper session after 10 s"; return 1; }
      sleep 0.1
    done
    FS_CLUSTER_URLS+="${FS_CLUSTER_URLS:+ }$FS_CLICKHOUSE_URL"
  done
  fs_say "ClickHouse cluster $name: 2 shards x 1 replica at $FS_CLUSTER_URLS"
}

# Makes a scratch directory FS_RUN_DIR and, on exit, stops the services and removes it.
fs_scratch_dir() {
  FS_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fleetstream.XXXXXX")
  trap 'fs_stop_all; rm -rf "$FS_RUN_DIR"' EXIT
}

# fs_bench_services SHARERS: what a benchmark of whole services runs on, in the scratch
# directory: the open-file limit raised (a thousand connections on each side), a broker (memory
# storage) and ClickHouse 18.16 started; FS_TARGET is where the release binaries are. Says what
# shares the machine's cores (SHARERS, besides the broker and ClickHouse).
fs_bench_services() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  fs_start_broker "$FS_RUN_DIR/broker" memory
  fs_start_clickhouse "$FS_RUN_DIR/clickhouse"
  # shellcheck disable=SC2034 # read by the bench scripts that call this
  FS_TARGET=${CARGO_TARGET_DIR:-target}
  fs_say "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; the broker, ClickHouse, $1 share them"
}

# Stops every service this shell started: SIGTERM, then SIGKILL after 10 s; ZooKeeper last, since
# a ClickHouse server that lost it waits for it on shutdown.
fs_stop_all() {
  local pid rest=()
  for pid in "${FS_PIDS[@]}"; do
    [ "$pid" = "${FS_ZOOKEEPER_PID:-}" ] || rest+=("$pid")
  done
  fs_stop "${rest[@]}"
  [ -z "${FS_ZOOKEEPER_PID:-}" ] || fs_stop "$FS_ZOOKEEPER_PID"
  FS_PIDS=()
}

# fs_stop PID...: SIGTERM to all, then SIGKILL to those still running 10 s later.
fs_stop() {
  local pid
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      fs_say "pid $pid did not stop within 10 s of SIGTERM; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}
