#!/usr/bin/env bash
# The whole pipeline, measured: (a) one processor draining a pre-filled topic against the raw
# insert rate of ClickHouse, (b) ingest and processor under sustained load, (c) post-to-queryable
# latency idle and under load, (d) CPU per million positions and peak RSS of each service.
# Starts its own nisshi broker (memory storage) and ClickHouse 18.16, builds release binaries.
# (f) runs the embedded stack (`fleetstream up`: nisshi on SQLite, chDB) under the load of (b).
# Arguments: `drain`, `load`, `many`, `up` (default all). BENCH_SECONDS sets the length of (b) and
# (f) (default 20).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
fs_scratch_dir
fs_ensure_tools
fs_ensure_nisshi
fs_ensure_chdb
fs_say "building release binaries"
cargo build --release -q --bin fleetstream -p fleetstream
cargo build --release -q -p fleetstream-benches --bin pipeline
fs_bench_services "the services and the load generator"
FS_BROKER_PID=$FS_BROKER_PID FS_CLICKHOUSE_PID=$FS_CLICKHOUSE_PID \
  FLEETSTREAM_BIN=$FS_TARGET/release/fleetstream FLEETSTREAM_BROKERS=$FS_BROKERS \
  FLEETSTREAM_CLICKHOUSE_URL=$FS_CLICKHOUSE_URL RUST_LOG=warn "$FS_TARGET/release/pipeline" "$@"
