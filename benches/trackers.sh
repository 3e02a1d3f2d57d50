#!/usr/bin/env bash
# Thousands of Teltonika trackers held open on `fleetstream ingest` (release build), each sending a
# frame of one record every BENCH_INTERVAL s (default 5) for BENCH_SECONDS (default 60), through
# `fleetstream simulate --protocol teltonika` in a process of its own: ingest's memory per
# connection (its RSS with the connections open minus its RSS idle, over the connections open),
# records/s answered, answer latency p50/p99 (a frame is answered once its record is durable) and
# ingest's CPU. Starts its own nisshi broker (memory storage). Argument: trackers (default 10000).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
TRACKERS=${1:-10000}
RUN_SECONDS=${BENCH_SECONDS:-60}
INTERVAL=${BENCH_INTERVAL:-5}
fs_scratch_dir
fs_ensure_tools
fs_ensure_nisshi
fs_say "building the release binary"
cargo build --release -q --bin fleetstream -p fleetstream
# One descriptor per tracker on each side (ingest and the simulator are separate processes).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fs_start_broker "$FS_RUN_DIR/broker" memory
BIN=${CARGO_TARGET_DIR:-target}/release/fleetstream
http=$(fs_free_port)
teltonika=$(fs_free_port)
FLEETSTREAM_BROKERS=$FS_BROKERS FLEETSTREAM_INGEST_LISTEN=127.0.0.1:$http \
  FLEETSTREAM_TELTONIKA_LISTEN=127.0.0.1:$teltonika FLEETSTREAM_OSMAND_LISTEN='' FLEETSTREAM_GT06_LISTEN='' \
  FLEETSTREAM_TCP_MAX_CONNECTIONS=$((TRACKERS * 2)) RUST_LOG=warn "$BIN" ingest >"$FS_RUN_DIR/ingest.log" 2>&1 &
INGEST=$!
FS_PIDS+=("$INGEST")
fs_wait_port "$teltonika" "$INGEST" "fleetstream ingest" || { tail -20 "$FS_RUN_DIR/ingest.log" >&2; exit 1; }
sleep 2

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$INGEST/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$INGEST/stat"; }
open_connections() {
  curl -sf "http://127.0.0.1:$http/metrics" |
    awk '/^fleetstream_ingest_tcp_connections_open\{protocol="teltonika"\}/ {print $2}'
}

idle_kb=$(rss_kb)
cpu_before=$(cpu_ticks)
fs_say "machine: $(nproc) cores; broker, ingest and the $TRACKERS simulated trackers share them"
fs_say "ingest idle: $((idle_kb / 1024)) MB RSS; $TRACKERS trackers, a frame each every $INTERVAL s, for $RUN_SECONDS s"
"$BIN" simulate --protocol teltonika --tracker-addr "127.0.0.1:$teltonika" --vehicles "$TRACKERS" \
  --interval "$INTERVAL" --duration "$RUN_SECONDS" 2>"$FS_RUN_DIR/simulate.log" &
SIM=$!
FS_PIDS+=("$SIM")
# Memory per connection is read at the middle of the run: every tracker connected, frames flowing.
sleep $((RUN_SECONDS / 2))
mid_kb=$(rss_kb)
mid_open=$(open_connections)
wait "$SIM"
cpu_after=$(cpu_ticks)
peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$INGEST/status")
answered=$(grep '^simulated:' "$FS_RUN_DIR/simulate.log" || tail -3 "$FS_RUN_DIR/simulate.log")

fs_say "with $mid_open connections open: $((mid_kb / 1024)) MB RSS, peak $((peak_kb / 1024)) MB"
awk -v idle="$idle_kb" -v mid="$mid_kb" -v open="$mid_open" \
  'BEGIN { printf "[fleetstream] memory per connection (under load): %.1f KB\n", (mid - idle) / open }' >&2
fs_say "${answered#simulated: }"
awk -v ticks=$((cpu_after - cpu_before)) -v hz="$(getconf CLK_TCK)" -v s="$RUN_SECONDS" \
  'BEGIN { printf "[fleetstream] ingest CPU: %.1f s over the run (%.0f%% of one core)\n", ticks / hz, 100 * ticks / hz / s }' >&2
