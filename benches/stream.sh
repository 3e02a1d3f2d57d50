#!/usr/bin/env bash
# Live streams at scale: memory per idle /v1/stream/positions connection and post-to-received
# latency at 1,000 subscribers (BENCH_SUBSCRIBERS), against `fleetstream run` (release) on a nisshi
# broker (memory storage) and ClickHouse 18.16 that this script starts and stops.
# Environment: BENCH_SUBSCRIBERS (1000), BENCH_FIXES (200), BENCH_EVERY_MS (50).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
fs_scratch_dir
fs_ensure_tools
fs_ensure_nisshi
fs_say "building release binaries"
cargo build --release -q --bin fleetstream -p fleetstream
cargo build --release -q -p fleetstream-benches --bin stream_load
fs_bench_services "fleetstream and the subscribers"
FLEETSTREAM_BIN=$FS_TARGET/release/fleetstream FLEETSTREAM_BROKERS=$FS_BROKERS \
  FLEETSTREAM_CLICKHOUSE_URL=$FS_CLICKHOUSE_URL RUST_LOG=warn "$FS_TARGET/release/stream_load" "$@"
