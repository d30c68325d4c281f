"""Writes Delta tables with the Python `deltalake` package (delta-rs), another Delta writer
than the operator's, for tests/tests/external_delta.rs.

Usage: write_delta.py STEPS.json — a JSON list of steps, run in order:
  {"op": "write", "uri": U, "columns": [[name, type], ...], "rows": [[v, ...], ...],
   "mode": "append"|"overwrite", "partition_by": [col, ...], "configuration": {k: v}}
  {"op": "delete", "uri": U, "predicate": "clicks = 3"}
  {"op": "checkpoint", "uri": U}
  {"op": "set_properties", "uri": U, "properties": {k: v}}
  {"op": "deletion_vector", "uri": U, "rows": [i, ...]}
      hand-writes a deletion vector marking rows of the first live file deleted (the Python
      package writes none: its deletes rewrite files), as a new commit.
Types: long, int, double, string. Prints one JSON line per table: its version and protocol.
"""

import json
import os
import struct
import sys
import time
import uuid
import zlib

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

TYPES = {"long": pa.int64(), "int": pa.int32(), "double": pa.float64(), "string": pa.string()}


def arrow_table(columns, rows):
    schema = pa.schema([pa.field(name, TYPES[t], nullable=True) for name, t in columns])
    data = {name: [r[i] for r in rows] for i, (name, _) in enumerate(columns)}
    return pa.table(data, schema=schema)


Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85(data):
    out = []
    for i in range(0, len(data), 4):
        (n,) = struct.unpack(">I", data[i : i + 4])
        chunk = []
        for _ in range(5):
            chunk.append(Z85[n % 85])
            n //= 85
        out.extend(reversed(chunk))
    return "".join(out)


def roaring_bitmap_array(rows):
    """Delta's RoaringBitmapArray: magic, bitmap count, then (key, portable 32-bit roaring)."""
    rows = sorted(set(rows))
    assert rows and rows[-1] < 65536, "one array container is enough for the tests"
    bitmap = struct.pack("<II", 12346, 1)  # SERIAL_COOKIE_NO_RUNCONTAINER, one container
    bitmap += struct.pack("<HH", 0, len(rows) - 1)  # key 0, cardinality - 1
    bitmap += struct.pack("<I", len(bitmap) + 4)  # offset of the container
    bitmap += b"".join(struct.pack("<H", r) for r in rows)
    return struct.pack("<iq", 1681511377, 1) + struct.pack("<i", 0) + bitmap


def deletion_vector(uri, rows):
    dt = DeltaTable(uri)
    path = dt.file_uris()[0]
    relative = os.path.relpath(path.removeprefix("file://"), uri.removeprefix("file://"))
    add = next(a for a in all_adds(uri) if a["path"] == relative)
    dv_id = uuid.uuid4()
    data = roaring_bitmap_array(rows)
    blob = b"\x01" + struct.pack(">i", len(data)) + data + struct.pack(">I", zlib.crc32(data))
    root = uri.removeprefix("file://")
    with open(os.path.join(root, f"deletion_vector_{dv_id}.bin"), "wb") as f:
        f.write(blob)
    now = int(time.time() * 1000)
    descriptor = {
        "storageType": "u",
        "pathOrInlineDv": z85(dv_id.bytes),
        "offset": 1,
        "sizeInBytes": len(data),
        "cardinality": len(set(rows)),
    }
    remove = {
        "path": relative,
        "deletionTimestamp": now,
        "dataChange": True,
        "extendedFileMetadata": True,
        "partitionValues": add.get("partitionValues", {}),
        "size": add["size"],
    }
    new_add = dict(add, deletionVector=descriptor, modificationTime=now, dataChange=True)
    version = dt.version() + 1
    log = os.path.join(root, "_delta_log", f"{version:020d}.json")
    actions = [
        {"commitInfo": {"timestamp": now, "operation": "DELETE", "engineInfo": "write_delta.py"}},
        {"remove": remove},
        {"add": new_add},
    ]
    with open(log, "x") as f:
        f.write("\n".join(json.dumps(a) for a in actions) + "\n")


def all_adds(uri):
    """The live add actions (JSON commits only; enough for the small test tables)."""
    root = os.path.join(uri.removeprefix("file://"), "_delta_log")
    live = {}
    for name in sorted(os.listdir(root)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(root, name)) as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    live[action["add"]["path"]] = action["add"]
                elif "remove" in action:
                    live.pop(action["remove"]["path"], None)
    return list(live.values())


def main():
    with open(sys.argv[1]) as f:
        steps = json.load(f)
    touched = []
    for step in steps:
        uri = step["uri"]
        op = step["op"]
        if op == "write":
            write_deltalake(
                uri,
                arrow_table(step["columns"], step["rows"]),
                mode=step.get("mode", "append"),
                partition_by=step.get("partition_by") or None,
                configuration=step.get("configuration") or None,
            )
        elif op == "delete":
            DeltaTable(uri).delete(step["predicate"])
        elif op == "checkpoint":
            DeltaTable(uri).create_checkpoint()
        elif op == "set_properties":
            DeltaTable(uri).alter.set_table_properties(step["properties"])
        elif op == "deletion_vector":
            deletion_vector(uri, step["rows"])
        else:
            raise SystemExit(f"unknown step {op!r}")
        if uri not in touched:
            touched.append(uri)
    for uri in touched:
        dt = DeltaTable(uri)
        p = dt.protocol()
        print(
            json.dumps(
                {
                    "uri": uri,
                    "version": dt.version(),
                    "minReaderVersion": p.min_reader_version,
                    "minWriterVersion": p.min_writer_version,
                    "readerFeatures": p.reader_features,
                    "writerFeatures": p.writer_features,
                }
            )
        )


if __name__ == "__main__":
    main()
