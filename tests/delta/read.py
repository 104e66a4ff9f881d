"""Reads crossdex's Delta export with the `deltalake` package (delta-rs, as pandas and
polars users read Delta tables) and compares every table, row by row, with what
`crossdex sql` answers on the data directory it was exported from.

  read.py CROSSDEX_BIN CONFIG DELTA_DIR

Prints one line per table and a JSON object of the tables' versions and row counts
last; exits 1 on any difference, 2 when deltalake is missing.
"""

import json
import subprocess
import sys

try:
    import deltalake
except ImportError:
    print("deltalake is not installed: pip install deltalake", file=sys.stderr)
    sys.exit(2)

binary, config, root = sys.argv[1], sys.argv[2], sys.argv[3]

# The columns compared: text and numbers as they are; times as seconds since the epoch.
TABLES = {
    "records": ["id", "source", "system", "kind", "native_id", "parent_id", "project", "subject_key",
                "subject_id", "title", "description", "url", "created_at", "modified_at", "attributes"],
    "observations": ["record_id", "source", "subject_id", "subject_key", "variable", "label", "value_text",
                     "value_num", "value_date", "unit", "event", "instance"],
    "subjects": ["subject_id", "label", "n_sources", "n_records", "sex", "birth_year", "conflicts"],
    "subject_links": ["subject_id", "source", "subject_key", "matched", "rule", "confidence"],
    "sync_runs": ["run_id", "source", "mode", "status", "added", "updated", "unchanged", "deleted"],
}
TIMES = {"created_at", "modified_at", "value_date"}


def norm(column, v):
    if v is None:
        return None
    if column in TIMES:
        if isinstance(v, str):
            return v
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return round(float(v), 9)
    return str(v)


def crossdex(table, columns):
    select = ", ".join(
        f"to_char({c}, '%Y-%m-%dT%H:%M:%S.%6f') AS {c}" if c in TIMES else c for c in columns
    )
    out = subprocess.run(
        [binary, "-c", config, "sql", "--format", "json", f"SELECT {select} FROM {table}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [tuple(norm(c, r[c]) for c in columns) for r in json.loads(out)]


def delta(table, columns, version=None):
    dt = deltalake.DeltaTable(f"{root}/{table}", version=version)
    rows = dt.to_pyarrow_table(columns=columns).to_pylist()
    return dt.version(), [tuple(norm(c, r[c]) for c in columns) for r in rows]


def key(row):
    return tuple((x is None, str(x)) for x in row)


bad = 0
summary = {}
for table, columns in TABLES.items():
    version, got = delta(table, columns)
    want = crossdex(table, columns)
    same = sorted(got, key=key) == sorted(want, key=key)
    print(f"{'ok  ' if same else 'FAIL'} {table}: version {version}, {len(got)} rows from Delta, {len(want)} from crossdex sql")
    if not same:
        bad += 1
        extra = set(got) - set(want)
        missing = set(want) - set(got)
        print(f"     only in Delta: {sorted(extra, key=key)[:3]}\n     only in crossdex: {sorted(missing, key=key)[:3]}")
    summary[table] = {"version": version, "rows": len(got)}
    if version > 0:
        summary[table]["previous_rows"] = len(delta(table, columns[:1], version - 1)[1])
print(json.dumps(summary))
sys.exit(1 if bad else 0)
