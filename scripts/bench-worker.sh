#!/usr/bin/env bash
# Side-by-side benchmark of the minion worker and DuckDB on the same Parquet input, under the
# same memory limit and the same output contract (zstd Parquet, sorted as the worker sorts).
#
#   scripts/bench-worker.sh            # both shapes at 512 MiB and 2 GiB (the recorded run)
#   SHAPES=events BUDGETS=512MiB ROWS=2000000 SEGMENTS=20 scripts/bench-worker.sh   # a quick run
#   WORKER_BIN=/path/to/minion-worker scripts/bench-worker.sh   # another build, not rebuilt
#   SHAPES=events CASES="rollup-erase rollup-sketch" BUDGETS=512MiB scripts/bench-worker.sh
#       # the cost of sketch metrics: an hourly rollup by d1, d2 that erases d3..d6, plain and
#       # with a theta and an HLL sketch of d6 derived before it is erased
#
# Shapes (generated once with DuckDB under $BENCH_DIR/<shape>):
#   events  ROWS (20M) rows in SEGMENTS (200) segments: 6 dimensions of cardinality 10..1M,
#           3 metrics, millisecond timestamps over one day; sorted column d6 (1M values).
#   wide    WIDE_ROWS (8M) rows in WIDE_SEGMENTS (100) segments: 11 dimensions, strings of
#           2..70 bytes (URLs, user agents), a 30 % null campaign, 4 metrics (one 10 % null);
#           sorted column sid, a session id (~5M distinct values in 8M rows).
# Cases: (a) rollup with 1h rounding and sum/min/max, sorted by every dimension and the time
# (the worker's rollup order), (b) concat sorted by the sorted column, (c) dedup sorted by the
# sorted column (the default CASES). Each budget in BUDGETS is the worker's --memory-budget
# and DuckDB's memory_limit (DUCKDB_MEMORY overrides the latter). The script checks that both
# wrote the same number of rows, that the worker stayed within its bounds (peak RSS <= budget
# + 64 MiB, spill <= 2x input), and prints wall time, peak RSS (`/usr/bin/time -v`) and the
# throughput ratio. DuckDB is installed from PyPI into ${BENCH_VENV:-$HOME/.cache/minion-bench-venv}.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROWS="${ROWS:-20000000}"
SEGMENTS="${SEGMENTS:-200}"
WIDE_ROWS="${WIDE_ROWS:-8000000}"
WIDE_SEGMENTS="${WIDE_SEGMENTS:-100}"
THREADS="${THREADS:-$(nproc)}"
SHAPES="${SHAPES:-events wide}"
# BUDGET (one budget) is still understood.
BUDGETS="${BUDGETS:-${BUDGET:-512MiB 2GiB}}"
CASES="${CASES:-rollup concat dedup}"
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

# Generates a shape's segments once: generate <shape> <dir> <rows> <segments>.
generate() {
  local shape="$1" dir="$2" rows="$3" segments="$4"
  if [[ -f "$dir/.complete-$rows-$segments" ]]; then
    return
  fi
  log "generating $shape: $rows rows in $segments segments under $dir"
  rm -rf "$dir"
  mkdir -p "$dir/in"
  "$PY" - "$shape" "$dir/in" "$rows" "$segments" "$THREADS" <<'PY'
import sys, duckdb
shape, out, rows, segments, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
con = duckdb.connect()
con.execute(f"SET threads={threads}")
per = rows // segments
day0 = 1_700_006_400_000
ts = f"CAST({day0} + (i * 86400000 // {rows}) + hash(i, 7) % 1000 AS BIGINT) AS ts"
events = f"""
  'c' || (hash(i, 1) % 10)        AS d1,
  'r' || (hash(i, 2) % 100)       AS d2,
  CAST(hash(i, 3) % 1000 AS INTEGER) AS d3,
  'p' || (hash(i, 4) % 10000)     AS d4,
  CAST(hash(i, 5) % 100000 AS BIGINT) AS d5,
  'u' || (hash(i, 6) % 1000000)   AS d6,
  {ts},
  CAST(hash(i, 8) % 100 AS BIGINT) AS m1,
  CAST(hash(i, 9) % 10000 AS DOUBLE) / 100 AS m2,
  CAST(hash(i, 10) % 1000 AS BIGINT) AS m3"""
wide = f"""
  'sess-' || lpad(CAST(hash(i, 11) % {rows} AS VARCHAR), 12, '0') AS sid,
  'https://shop.example.com/catalog/' || (hash(i, 12) % 50000) || '/item?ref=home' AS url,
  'Mozilla/5.0 (X11; Linux x86_64; build ' || (hash(i, 13) % 200) || ') AppleWebKit/537.36 Chrome/' || (hash(i, 14) % 100) AS ua,
  chr(65 + CAST(hash(i, 15) % 26 AS INTEGER)) || chr(65 + CAST(hash(i, 16) % 8 AS INTEGER)) AS country,
  'city-' || (hash(i, 17) % 20000) AS city,
  'https://ref' || (hash(i, 18) % 1000) || '.example.org/' AS referrer,
  CAST(hash(i, 19) % 50 AS INTEGER) AS device,
  'os-' || (hash(i, 20) % 20) AS os,
  '7.' || (hash(i, 21) % 50) || '.' || (hash(i, 22) % 10) AS app_version,
  CASE WHEN hash(i, 23) % 10 < 3 THEN NULL ELSE 'campaign-' || (hash(i, 24) % 10000) END AS campaign,
  CAST(hash(i, 25) % 100000 AS BIGINT) AS uid,
  {ts},
  CAST(hash(i, 8) % 100 AS BIGINT) AS m1,
  CAST(hash(i, 9) % 10000 AS DOUBLE) / 100 AS m2,
  CAST(hash(i, 10) % 1000 AS BIGINT) AS m3,
  CASE WHEN hash(i, 26) % 10 = 0 THEN NULL ELSE CAST(hash(i, 27) % 100000 AS DOUBLE) / 1000 END AS m4"""
columns = events if shape == "events" else wide
for s in range(segments):
    lo = s * per
    con.execute(f"""
      COPY (SELECT {columns} FROM range({lo}, {lo + per}) t(i))
      TO '{out}/seg-{s:04d}.parquet' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)
    """)
PY
  touch "$dir/.complete-$rows-$segments"
}

# Writes the worker's specs of a shape: specs <shape> <dir>; prints the DuckDB sort orders
# (rollup, the others) as two lines.
specs() {
  "$PY" - "$1" "$2" <<'PY'
import json, os, sys, duckdb
shape, table = sys.argv[1], sys.argv[2]
files = sorted(f for f in os.listdir(f"{table}/in") if f.endswith(".parquet"))
# Row counts from the footers, as the operator's planner takes them from the catalog.
rows = dict(duckdb.sql(f"SELECT file_name, num_rows FROM parquet_file_metadata('{table}/in/*.parquet')").fetchall())
inputs = [{"path": f"in/{f}", "rows": rows[f"{table}/in/{f}"], "bytes": os.path.getsize(f"{table}/in/{f}")} for f in files]
def col(name, t, role="dimension"):
    return {"name": name, "dataType": t, "role": role}
if shape == "events":
    columns = [col("d1", "STRING"), col("d2", "STRING"), col("d3", "INT"), col("d4", "STRING"),
               col("d5", "LONG"), col("d6", "STRING"), col("ts", "LONG", "dateTime"),
               col("m1", "LONG", "metric"), col("m2", "DOUBLE", "metric"), col("m3", "LONG", "metric")]
    sorted_column = "d6"
else:
    columns = [col("sid", "STRING"), col("url", "STRING"), col("ua", "STRING"), col("country", "STRING"),
               col("city", "STRING"), col("referrer", "STRING"), col("device", "INT"), col("os", "STRING"),
               col("app_version", "STRING"), col("campaign", "STRING"), col("uid", "LONG"),
               col("ts", "LONG", "dateTime"), col("m1", "LONG", "metric"), col("m2", "DOUBLE", "metric"),
               col("m3", "LONG", "metric"), col("m4", "DOUBLE", "metric")]
    sorted_column = "sid"
schema = {"columns": columns, "timeColumn": "ts", "timeUnit": "MILLISECONDS", "sortedColumn": sorted_column}
loc = {"name": "events", "uri": f"file://{table}", "schema": schema}
erase = ["d3", "d4", "d5", "d6"]
sketches = {"s_theta": "distinctCountThetaSketch", "s_hll": "distinctCountHLL"}
sketch_schema = dict(schema, columns=schema["columns"] + [col(m, "BYTES", "metric") for m in sketches])
sketch_loc = dict(loc, schema=sketch_schema)
aggregations = {"m1": "sum", "m2": "min", "m3": "max"}
if shape == "wide":
    aggregations["m4"] = "sum"
cases = {
    "rollup": {"mergeType": "rollup", "roundBucketMs": 3600000, "aggregationTypes": aggregations},
    "concat": {"mergeType": "concat"},
    "dedup": {"mergeType": "dedup"},
}
if shape == "events":
    cases["rollup-erase"] = {"mergeType": "rollup", "roundBucketMs": 3600000, "eraseDimensionValues": erase,
                             "aggregationTypes": aggregations}
    cases["rollup-sketch"] = {"mergeType": "rollup", "roundBucketMs": 3600000, "eraseDimensionValues": erase,
                              "aggregationTypes": {**aggregations, **sketches},
                              "deriveMetrics": {m: "d6" for m in sketches}}
for name, processing in cases.items():
    processing["maxRecordsPerSegment"] = 5000000
    where = sketch_loc if "deriveMetrics" in processing else loc
    spec = {"apiVersion": "minion.dev/v1alpha1", "taskType": "MergeRollupTask", "namespace": "bench",
            "taskRun": f"bench-{name}", "subtask": 0, "attempt": 1, "source": where, "destination": where,
            "inputs": inputs, "processing": processing,
            "output": {"stagingPrefix": f"data/bench-{name}/0-1"}}
    with open(f"{table}/{name}.json", "w") as f:
        json.dump(spec, f)
# The worker's rollup order: every dimension in schema order, then the time.
print(", ".join(c["name"] for c in columns if c["role"] == "dimension") + ", ts")
print(sorted_column)
PY
}

# Runs a command under /usr/bin/time -v; prints "<wall seconds> <peak RSS KiB>".
measure() {
  local out="$WORK/time.txt"
  /usr/bin/time -v -o "$out" "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out")
  echo "$wall $rss"
}

bytes_of() {
  "$PY" -c "
import re
m = re.fullmatch(r'(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?', '$1')
units = {None: 1, 'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30, 'KB': 10**3, 'MB': 10**6, 'GB': 10**9}
print(int(m.group(1)) * units[m.group(2)])"
}

SUMMARY="$WORK/summary.txt"
FAILURES="$WORK/failures.txt"
: >"$SUMMARY"
: >"$FAILURES"
for shape in $SHAPES; do
  TABLE="$WORK/$shape"
  case "$shape" in
    events) generate events "$TABLE" "$ROWS" "$SEGMENTS"; shape_rows=$ROWS; shape_segments=$SEGMENTS ;;
    wide) generate wide "$TABLE" "$WIDE_ROWS" "$WIDE_SEGMENTS"; shape_rows=$WIDE_ROWS; shape_segments=$WIDE_SEGMENTS ;;
    *) echo "bench: unknown shape $shape (events, wide)" >&2; exit 2 ;;
  esac
  { read -r ROLLUP_ORDER; read -r SORTED; } < <(specs "$shape" "$TABLE")
  INPUT_BYTES=$(du -sb "$TABLE/in" | cut -f1)
  SRC="read_parquet('$TABLE/in/*.parquet')"
  declare -A SQL
  if [[ "$shape" == events ]]; then
    SQL[rollup]="SELECT d1, d2, d3, d4, d5, d6, ts // 3600000 * 3600000 AS ts, sum(m1) AS m1, min(m2) AS m2, max(m3) AS m3 FROM $SRC GROUP BY ALL ORDER BY $ROLLUP_ORDER"
  else
    SQL[rollup]="SELECT * EXCLUDE (ts, m1, m2, m3, m4), ts // 3600000 * 3600000 AS ts, sum(m1) AS m1, min(m2) AS m2, max(m3) AS m3, sum(m4) AS m4 FROM $SRC GROUP BY ALL ORDER BY $ROLLUP_ORDER"
  fi
  SQL[concat]="SELECT * FROM $SRC ORDER BY $SORTED"
  SQL[dedup]="SELECT DISTINCT * FROM $SRC ORDER BY $SORTED"
  ERASED_SQL="d1, d2, NULL::INTEGER AS d3, NULL::VARCHAR AS d4, NULL::BIGINT AS d5, NULL::VARCHAR AS d6, ts // 3600000 * 3600000 AS ts, sum(m1) AS m1, min(m2) AS m2, max(m3) AS m3"
  SQL[rollup-erase]="SELECT $ERASED_SQL FROM $SRC GROUP BY d1, d2, ts // 3600000 ORDER BY d1, d2, ts"
  # DuckDB has no mergeable sketch to write without an extension: its HLL estimate of d6 is
  # the nearest it computes (a number, not a sketch another engine can union).
  SQL[rollup-sketch]="SELECT $ERASED_SQL, approx_count_distinct(d6) AS s_hll FROM $SRC GROUP BY d1, d2, ts // 3600000 ORDER BY d1, d2, ts"

  for budget in $BUDGETS; do
    BUDGET_BYTES=$(bytes_of "$budget")
    DUCK_MEMORY="${DUCKDB_MEMORY:-$budget}"
    # The worker's bounds: peak RSS within the budget plus its fixed 64 MiB overhead, spill
    # files within twice the input at any moment.
    RSS_LIMIT_KIB=$(((BUDGET_BYTES + (64 << 20)) / 1024))
    SPILL_LIMIT=$((2 * INPUT_BYTES))
    {
      echo
      echo "shape $shape: $shape_rows rows in $shape_segments segments, $((INPUT_BYTES / 1024 / 1024)) MiB; threads $THREADS; worker budget $budget; duckdb memory_limit $DUCK_MEMORY"
      printf '%-14s %10s %10s %10s %10s %11s %9s %11s %7s\n' case rows worker_s worker_MiB duckdb_s duckdb_MiB "speed(x)" spill/input bounds
    } | tee -a "$SUMMARY"
    for case in $CASES; do
      if [[ ! -f "$TABLE/$case.json" ]]; then
        log "$shape: no case $case"
        continue
      fi
      rm -rf "$TABLE/data/bench-$case" "$WORK/duck-$case.parquet" "$WORK/duck-tmp"
      read -r w_wall w_rss < <(measure "$WORKER" run --spec "$TABLE/$case.json" --memory-budget "$budget" --spill-dir "$WORK/spill")
      w_spill=$(grep -o 'peak_spill_bytes=[0-9]*' "$WORK/last.log" | tail -1 | cut -d= -f2)
      log "$shape $budget $case: worker ${w_wall}s, ${w_rss} KiB, spill peak ${w_spill} bytes"
      # A crossed bound is reported in the table and fails the script at the end.
      bounds=ok
      if ((w_rss > RSS_LIMIT_KIB)); then
        echo "bench: $shape $budget $case: worker peak RSS ${w_rss} KiB exceeds the budget + 64 MiB (${RSS_LIMIT_KIB} KiB)" | tee -a "$FAILURES" >&2
        bounds=RSS
      fi
      if ((w_spill > SPILL_LIMIT)); then
        echo "bench: $shape $budget $case: worker spill peak ${w_spill} bytes exceeds twice the input (${SPILL_LIMIT})" | tee -a "$FAILURES" >&2
        bounds=spill
      fi
      w_rows=$("$PY" -c "import json; print(json.load(open('$TABLE/data/bench-$case/0-1/_manifest.json'))['outputRows'])")
      read -r d_wall d_rss < <(measure "$PY" -c "
import duckdb
con = duckdb.connect()
con.execute(\"SET threads=$THREADS\")
con.execute(\"SET memory_limit='$DUCK_MEMORY'\")
con.execute(\"SET temp_directory='$WORK/duck-tmp'\")
con.execute(\"\"\"COPY (${SQL[$case]}) TO '$WORK/duck-$case.parquet' (FORMAT parquet, COMPRESSION zstd)\"\"\")
")
      log "$shape $budget $case: duckdb ${d_wall}s, ${d_rss} KiB"
      d_rows=$("$PY" -c "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('$WORK/duck-$case.parquet')\").fetchall()[0][0])")
      if [[ "$w_rows" != "$d_rows" ]]; then
        echo "bench: $shape $case: row counts differ: worker $w_rows, duckdb $d_rows" >&2
        exit 1
      fi
      printf '%-14s %10s %10.2f %10.0f %10.2f %11.0f %9.2f %11.2f %7s\n' "$case" "$w_rows" "$w_wall" "$((w_rss / 1024))" "$d_wall" "$((d_rss / 1024))" \
        "$(echo "$d_wall / $w_wall" | bc -l)" "$(echo "$w_spill / $INPUT_BYTES" | bc -l)" "$bounds" | tee -a "$SUMMARY"
    done
  done
  rm -rf "$TABLE/data" "$WORK/duck-"*.parquet "$WORK/duck-tmp"
done
echo
echo "speed(x) = DuckDB wall time / worker wall time (>= 1 means the worker is at least as fast)"
echo "summary: $SUMMARY"
if [[ -s "$FAILURES" ]]; then
  echo "bench: the worker crossed a bound:" >&2
  cat "$FAILURES" >&2
  exit 1
fi
