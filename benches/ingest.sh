#!/usr/bin/env bash
# Runs the ingest load benchmark against a local nisshi broker (memory storage) that this script
# starts and stops. Arguments: [positions for the batch-of-100 run] [requests in flight].
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
fs_scratch_dir
fs_ensure_tools
fs_ensure_nisshi
cargo build --release -q -p fleetstream-benches --bin ingest_load
fs_start_broker "$FS_RUN_DIR/broker" memory
FLEETSTREAM_BROKERS=$FS_BROKERS RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/release/ingest_load" "$@"
