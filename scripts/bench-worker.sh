#!/usr/bin/env bash
# Side-by-side benchmark of the minion worker and DuckDB on the same Parquet input.
#
#   scripts/bench-worker.sh            # ~20M rows in 200 segments (the recorded run)
#   ROWS=2000000 SEGMENTS=20 scripts/bench-worker.sh   # a quick run
#   WORKER_BIN=/path/to/minion-worker scripts/bench-worker.sh   # another build, not rebuilt
#   CASES="rollup-erase rollup-sketch" BUDGET=512MiB DUCKDB_MEMORY=512MiB scripts/bench-worker.sh
#       # the cost of sketch metrics: an hourly rollup by d1, d2 that erases d3..d6, plain and
#       # with a theta and an HLL sketch of d6 derived before it is erased
#
# Generates events (6 dimensions of cardinality 10..1M, 3 metrics, millisecond timestamps
# over one day) with DuckDB, then runs (a) rollup with 1h rounding and sum/min/max,
# (b) concat sorted by a dimension, (c) dedup (the default CASES), with `minion-worker` (release build) and with
# DuckDB (`COPY (SELECT …) TO … (FORMAT parquet)`), checks that both wrote the same number of
# rows, and prints wall time, peak RSS (`/usr/bin/time -v`) and the throughput ratio.
# DuckDB is installed from PyPI into ${BENCH_VENV:-$HOME/.cache/minion-bench-venv}.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROWS="${ROWS:-20000000}"
SEGMENTS="${SEGMENTS:-200}"
THREADS="${THREADS:-$(nproc)}"
BUDGET="${BUDGET:-2GiB}"
CASES="${CASES:-rollup concat dedup}"
DUCKDB_MEMORY="${DUCKDB_MEMORY:-2GiB}"
WORK="${BENCH_DIR:-${TMPDIR:-/tmp}/minion-bench}"
VENV="${BENCH_VENV:-$HOME/.cache/minion-bench-venv}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { echo "bench: $*" >&2; }

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import duckdb" 2>/dev/null; then
  log "installing duckdb into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check duckdb
fi
PY="$VENV/bin/python"

if [[ -n "${WORKER_BIN:-}" ]]; then
  # Another build of the worker (e.g. an earlier commit's, to compare in the same run).
  WORKER="$WORKER_BIN"
else
  log "building minion-worker (release)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p minion-worker --bin minion-worker)
  WORKER="$TARGET/release/minion-worker"
fi

mkdir -p "$WORK"
TABLE="$WORK/table"
if [[ ! -f "$TABLE/.complete-$ROWS-$SEGMENTS" ]]; then
  log "generating $ROWS rows in $SEGMENTS segments under $TABLE"
  rm -rf "$TABLE"
  mkdir -p "$TABLE/in"
  "$PY" - "$TABLE/in" "$ROWS" "$SEGMENTS" "$THREADS" <<'PY'
import sys, duckdb
out, rows, segments, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()
con.execute(f"SET threads={threads}")
per = rows // segments
day0 = 1_700_006_400_000
for s in range(segments):
    lo = s * per
    con.execute(f"""
      COPY (
        SELECT
          'c' || (hash(i, 1) % 10)        AS d1,
          'r' || (hash(i, 2) % 100)       AS d2,
          CAST(hash(i, 3) % 1000 AS INTEGER) AS d3,
          'p' || (hash(i, 4) % 10000)     AS d4,
          CAST(hash(i, 5) % 100000 AS BIGINT) AS d5,
          'u' || (hash(i, 6) % 1000000)   AS d6,
          CAST({day0} + (i * 86400000 // {rows}) + hash(i, 7) % 1000 AS BIGINT) AS ts,
          CAST(hash(i, 8) % 100 AS BIGINT) AS m1,
          CAST(hash(i, 9) % 10000 AS DOUBLE) / 100 AS m2,
          CAST(hash(i, 10) % 1000 AS BIGINT) AS m3
        FROM range({lo}, {lo + per}) t(i)
      ) TO '{out}/seg-{s:04d}.parquet' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)
    """)
PY
  touch "$TABLE/.complete-$ROWS-$SEGMENTS"
fi

# Specs for the three cases.
"$PY" - "$TABLE" "$WORK" <<'PY'
import json, os, sys, duckdb
table, work = sys.argv[1], sys.argv[2]
files = sorted(f for f in os.listdir(f"{table}/in") if f.endswith(".parquet"))
# Row counts from the footers, as the operator's planner takes them from the catalog.
rows = dict(duckdb.sql(f"SELECT file_name, num_rows FROM parquet_file_metadata('{table}/in/*.parquet')").fetchall())
inputs = [{"path": f"in/{f}", "rows": rows[f"{table}/in/{f}"], "bytes": os.path.getsize(f"{table}/in/{f}")} for f in files]
def col(name, t, role="dimension"):
    return {"name": name, "dataType": t, "role": role}
schema = {
    "columns": [col("d1", "STRING"), col("d2", "STRING"), col("d3", "INT"), col("d4", "STRING"),
                col("d5", "LONG"), col("d6", "STRING"), col("ts", "LONG", "dateTime"),
                col("m1", "LONG", "metric"), col("m2", "DOUBLE", "metric"), col("m3", "LONG", "metric")],
    "timeColumn": "ts", "timeUnit": "MILLISECONDS", "sortedColumn": "d6",
}
loc = {"name": "events", "uri": f"file://{table}", "schema": schema}
erase = ["d3", "d4", "d5", "d6"]
sketches = {"s_theta": "distinctCountThetaSketch", "s_hll": "distinctCountHLL"}
sketch_schema = dict(schema, columns=schema["columns"] + [col(m, "BYTES", "metric") for m in sketches])
sketch_loc = dict(loc, schema=sketch_schema)
cases = {
    "rollup": {"mergeType": "rollup", "roundBucketMs": 3600000,
               "aggregationTypes": {"m1": "sum", "m2": "min", "m3": "max"}},
    "concat": {"mergeType": "concat"},
    "dedup": {"mergeType": "dedup"},
    "rollup-erase": {"mergeType": "rollup", "roundBucketMs": 3600000, "eraseDimensionValues": erase,
                     "aggregationTypes": {"m1": "sum", "m2": "min", "m3": "max"}},
    "rollup-sketch": {"mergeType": "rollup", "roundBucketMs": 3600000, "eraseDimensionValues": erase,
                      "aggregationTypes": {"m1": "sum", "m2": "min", "m3": "max", **sketches},
                      "deriveMetrics": {m: "d6" for m in sketches}},
}
for name, processing in cases.items():
    processing["maxRecordsPerSegment"] = 5000000
    where = sketch_loc if "deriveMetrics" in processing else loc
    spec = {"apiVersion": "minion.dev/v1alpha1", "taskType": "MergeRollupTask", "namespace": "bench",
            "taskRun": f"bench-{name}", "subtask": 0, "attempt": 1, "source": where, "destination": where,
            "inputs": inputs, "processing": processing,
            "output": {"stagingPrefix": f"data/bench-{name}/0-1"}}
    with open(f"{work}/{name}.json", "w") as f:
        json.dump(spec, f)
PY

INPUT_BYTES=$(du -sb "$TABLE/in" | cut -f1)
declare -A SQL
SQL[rollup]="SELECT d1, d2, d3, d4, d5, d6, ts // 3600000 * 3600000 AS ts, sum(m1) AS m1, min(m2) AS m2, max(m3) AS m3 FROM read_parquet('$TABLE/in/*.parquet') GROUP BY ALL"
SQL[concat]="SELECT * FROM read_parquet('$TABLE/in/*.parquet') ORDER BY d6"
SQL[dedup]="SELECT DISTINCT * FROM read_parquet('$TABLE/in/*.parquet')"
ERASED_SQL="d1, d2, NULL::INTEGER AS d3, NULL::VARCHAR AS d4, NULL::BIGINT AS d5, NULL::VARCHAR AS d6, ts // 3600000 * 3600000 AS ts, sum(m1) AS m1, min(m2) AS m2, max(m3) AS m3"
SQL[rollup-erase]="SELECT $ERASED_SQL FROM read_parquet('$TABLE/in/*.parquet') GROUP BY d1, d2, ts // 3600000"
# DuckDB has no mergeable sketch to write without an extension: its HLL estimate of d6 is the
# nearest it computes (a number, not a sketch another engine can union).
SQL[rollup-sketch]="SELECT $ERASED_SQL, approx_count_distinct(d6) AS s_hll FROM read_parquet('$TABLE/in/*.parquet') GROUP BY d1, d2, ts // 3600000"

# Runs a command under /usr/bin/time -v; prints "<wall seconds> <peak RSS KiB>".
measure() {
  local out="$WORK/time.txt"
  /usr/bin/time -v -o "$out" "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out")
  echo "$wall $rss"
}

BUDGET_BYTES=$("$PY" -c "
import re, sys
m = re.fullmatch(r'(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?', '$BUDGET')
units = {None: 1, 'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30, 'KB': 10**3, 'MB': 10**6, 'GB': 10**9}
print(int(m.group(1)) * units[m.group(2)])")
# The worker's bounds: peak RSS within the budget plus its fixed 64 MiB overhead, spill files
# within twice the input at any moment.
RSS_LIMIT_KIB=$(((BUDGET_BYTES + (64 << 20)) / 1024))
SPILL_LIMIT=$((2 * INPUT_BYTES))

printf '\n%-8s %10s %12s %10s %12s %14s %10s %10s %12s\n' case rows worker_s worker_MiB duckdb_s duckdb_MiB "speed(x)" rss_ratio spill/input
for case in $CASES; do
  rm -rf "$TABLE/data/bench-$case" "$WORK/duck-$case.parquet"
  read -r w_wall w_rss < <(measure "$WORKER" run --spec "$WORK/$case.json" --memory-budget "$BUDGET" --spill-dir "$WORK/spill")
  w_spill=$(grep -o 'peak_spill_bytes=[0-9]*' "$WORK/last.log" | tail -1 | cut -d= -f2)
  log "$case: worker ${w_wall}s, ${w_rss} KiB, spill peak ${w_spill} bytes"
  if ((w_rss > RSS_LIMIT_KIB)); then
    echo "bench: $case: worker peak RSS ${w_rss} KiB exceeds the budget + 64 MiB (${RSS_LIMIT_KIB} KiB)" >&2
    exit 1
  fi
  if ((w_spill > SPILL_LIMIT)); then
    echo "bench: $case: worker spill peak ${w_spill} bytes exceeds twice the input (${SPILL_LIMIT})" >&2
    exit 1
  fi
  w_rows=$("$PY" -c "import json; print(json.load(open('$TABLE/data/bench-$case/0-1/_manifest.json'))['outputRows'])")
  read -r d_wall d_rss < <(measure "$PY" -c "
import duckdb
con = duckdb.connect()
con.execute(\"SET threads=$THREADS\")
con.execute(\"SET memory_limit='$DUCKDB_MEMORY'\")
con.execute(\"SET temp_directory='$WORK/duck-tmp'\")
con.execute(\"\"\"COPY (${SQL[$case]}) TO '$WORK/duck-$case.parquet' (FORMAT parquet, COMPRESSION zstd)\"\"\")
")
  log "$case: duckdb ${d_wall}s, ${d_rss} KiB"
  d_rows=$("$PY" -c "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('$WORK/duck-$case.parquet')\").fetchall()[0][0])")
  if [[ "$w_rows" != "$d_rows" ]]; then
    echo "bench: $case: row counts differ: worker $w_rows, duckdb $d_rows" >&2
    exit 1
  fi
  printf '%-8s %10s %12.2f %10.0f %12.2f %14.0f %10.2f %10.2f %12.2f\n' "$case" "$w_rows" "$w_wall" "$((w_rss / 1024))" "$d_wall" "$((d_rss / 1024))" \
    "$(echo "$d_wall / $w_wall" | bc -l)" "$(echo "$w_rss / $d_rss" | bc -l)" "$(echo "$w_spill / $INPUT_BYTES" | bc -l)"
done
echo
echo "input: $ROWS rows in $SEGMENTS segments, $((INPUT_BYTES / 1024 / 1024)) MiB; threads $THREADS; worker budget $BUDGET; duckdb memory_limit $DUCKDB_MEMORY"
echo "speed(x) = DuckDB wall time / worker wall time (>= 1 means the worker is at least as fast)"
