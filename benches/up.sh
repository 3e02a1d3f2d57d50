#!/usr/bin/env bash
# The embedded stack (`fleetstream up`, release build) from an empty data directory: time to
# ready, RSS idle, replay of a recorded file at full speed (default: the NY Harbor week), time
# until the API shows the last fix of every vessel, RSS after, and time to ready again on a
# restart with the data on disk. Argument: [file].
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
FILE=${1:-$ROOT/data/nyharbor-2020-12-week1.csv.gz}
scripts/setup
cargo build --release -q --bin fleetstream
BIN=${CARGO_TARGET_DIR:-target}/release/fleetstream
fs_scratch_dir
API_PORT=$(fs_free_port) INGEST_PORT=$(fs_free_port)
start() {
  rm -f "$FS_RUN_DIR/up.out"
  "$BIN" up --data-dir "$FS_RUN_DIR/data" --broker-port "$(fs_free_port)" --api-listen "127.0.0.1:$API_PORT" \
    --ingest-listen "127.0.0.1:$INGEST_PORT" --osmand-listen "" >"$FS_RUN_DIR/up.out" 2>"$FS_RUN_DIR/up.err" &
  UP_PID=$!
  FS_PIDS+=("$UP_PID")
  until grep -q "^ready in" "$FS_RUN_DIR/up.out" 2>/dev/null; do sleep 0.05; done
  grep "^ready in" "$FS_RUN_DIR/up.out"
}
rss() { echo "$(($(awk '/VmRSS/{print $2}' "/proc/$UP_PID/status") / 1024)) MB (fleetstream, with ClickHouse inside) + $(($(awk '/VmRSS/{print $2}' "/proc/$(pgrep -P "$UP_PID" nisshi)/status") / 1024)) MB (broker)"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/{print int($2/1048576)}' /proc/meminfo) GiB; file: $FILE"
start
sleep 2
echo "RSS idle: $(rss)"
LAST=$(zcat -f "$FILE" | tail -n +2 | cut -d, -f1 | sort | tail -1)
DEVICES=$(zcat -f "$FILE" | tail -n +2 | cut -d, -f2 | sort -u | wc -l)
t0=$(date +%s.%N)
"$BIN" replay "$FILE" --ingest-url "http://127.0.0.1:$INGEST_PORT" 2>&1 | tail -1
until curl -sf "http://127.0.0.1:$API_PORT/v1/devices/latest?limit=10000" | python3 -c "
import json, sys
d = json.load(sys.stdin)['devices']
sys.exit(0 if len(d) == $DEVICES and max(x['fix_time'] for x in d).startswith('${LAST%Z}') else 1)"; do sleep 0.5; done
echo "all $DEVICES devices at their last fix ($LAST) through the API $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s after the replay started"
echo "RSS after: $(rss)"
kill -INT "$UP_PID"; wait "$UP_PID"
echo "restart with the data on disk:"
start
sleep 2
echo "RSS idle: $(rss)"
kill -INT "$UP_PID"; wait "$UP_PID"
echo "data directory: $(du -sh "$FS_RUN_DIR/data" | cut -f1)"
