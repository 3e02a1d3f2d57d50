#!/usr/bin/env bash
# Runs the live-endpoint benchmark against a ClickHouse 18.16 server that this script starts and
# stops. Argument: [seconds per polling run].
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
fs_scratch_dir
fs_ensure_tools
cargo build --release -q -p fleetstream-benches --bin live_load
fs_start_clickhouse "$FS_RUN_DIR/clickhouse"
FLEETSTREAM_CLICKHOUSE_URL=$FS_CLICKHOUSE_URL RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/release/live_load" "$@"
