"""Reads the sketch metrics minion wrote with Apache DataSketches' C++ library (the Python
`datasketches` package), for tests/tests/task_types.rs: the bytes must be what Java and C++
DataSketches read, and values must hash as they hash them.

Usage: check_sketches.py INPUT.json, where INPUT is
  {"segments": [parquet path, ...], "group_by": [column, ...], "lg_k": {"theta": n, "hll": n},
   "raw": {"<group key>": [user, ...], ...}}
with the group key the values of group_by joined by "|". Prints one JSON line per row:
  {"key", "theta", "theta_from_raw", "hll_registers_equal", "kll_n", "kll_min", "kll_max",
   "avg_sum", "avg_count"}
where theta is the estimate of the row's theta sketch, theta_from_raw the estimate of the sketch
C++ builds from the raw values (through a union, which keeps the k smallest hashes), and hll_registers_equal whether adding C++'s HLL sketch of the
raw values to the row's changes nothing (HLL union is a register-wise maximum).
"""

import json
import struct
import sys

import datasketches as ds
import pyarrow.parquet as pq


def main():
    spec = json.load(open(sys.argv[1]))
    lg_theta, lg_hll = spec["lg_k"]["theta"], spec["lg_k"]["hll"]
    for path in spec["segments"]:
        table = pq.read_table(path).to_pylist()
        for row in table:
            key = "|".join(str(row[c]) for c in spec["group_by"])
            users = spec["raw"][key]
            theta = ds.compact_theta_sketch.deserialize(row["users_theta"])
            raw_theta = ds.update_theta_sketch(lg_theta)
            raw_hll = ds.hll_sketch(lg_hll, ds.tgt_hll_type.HLL_8)
            for u in users:
                raw_theta.update(u)
                raw_hll.update(u)
            # A union keeps the k smallest hashes, as the rollup's unions did; an update
            # sketch may keep more until it rebuilds.
            trimmed = ds.theta_union(lg_theta)
            trimmed.update(raw_theta)
            ours = ds.hll_sketch.deserialize(row["users_hll"])
            alone = ds.hll_union(lg_hll)
            alone.update(ours)
            both = ds.hll_union(lg_hll)
            both.update(ours)
            both.update(raw_hll)
            kll = ds.kll_doubles_sketch.deserialize(row["latency_kll"])
            avg_sum, avg_count = struct.unpack(">dq", row["latency_avg"])
            print(json.dumps({
                "key": key,
                "theta": theta.get_estimate(),
                "theta_from_raw": trimmed.get_result().get_estimate(),
                "hll_registers_equal": alone.get_result().get_estimate()
                == both.get_result().get_estimate(),
                "kll_n": kll.n,
                "kll_min": kll.get_min_value(),
                "kll_max": kll.get_max_value(),
                "avg_sum": avg_sum,
                "avg_count": avg_count,
            }))


if __name__ == "__main__":
    main()
