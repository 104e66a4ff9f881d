#!/usr/bin/env python3
"""Differential SQL check: crossdex against DuckDB on the same rows.

Reads the data directory's committed manifest (the payload of the tantivy commit in
index/meta.json) to find the current Parquet files, defines in DuckDB the tables users
query (records and observations with subject_id resolved through subject_links by a
join, subjects, xnat_sessions, omero_images, visits), written here independently of
crossdex's own definitions, then runs every saved query of queries/ and a generated set
of joins, filters and aggregates in both engines and compares the answers as multisets
of rows.

Usage: duckdb_oracle.py CROSSDEX_BIN DATA_DIR QUERIES_DIR
Prints one line per disagreement and a closing `N queries agree`; exits 1 on any
disagreement, 2 when DuckDB is missing or the data directory cannot be read.
"""

import datetime as dt
import decimal
import json
import math
import os
import re
import subprocess
import sys

try:
    import duckdb
except ImportError:
    print("duckdb is not installed: pip install duckdb", file=sys.stderr)
    sys.exit(2)


def manifest(data_dir):
    with open(os.path.join(data_dir, "index", "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    return json.loads(meta["payload"])


def define(con, data_dir, m):
    tables = os.path.join(data_dir, "tables")

    def files(rel):
        return "[" + ", ".join("'" + os.path.join(tables, r) + "'" for r in rel) + "]"

    sources = list(m["sources"].values())
    con.execute(f"CREATE VIEW raw_records AS SELECT * FROM read_parquet({files([s['records'] for s in sources])})")
    con.execute(
        f"CREATE VIEW raw_observations AS SELECT * FROM read_parquet({files([s['observations'] for s in sources])})"
    )
    if m.get("subject_links"):
        con.execute(f"CREATE VIEW subject_links AS SELECT * FROM read_parquet({files([m['subject_links']])})")
    else:
        con.execute(
            "CREATE VIEW subject_links AS SELECT NULL::VARCHAR subject_id, NULL::VARCHAR source, "
            "NULL::VARCHAR subject_key, NULL::VARCHAR matched, NULL::VARCHAR rule, NULL::DOUBLE confidence, "
            "NULL::VARCHAR sex, NULL::VARCHAR birth_year WHERE false"
        )
    # A key resolves to its link's subject when the link is not a conflict (confidence > 0);
    # records without a key are matched on their title.
    con.execute(
        """CREATE VIEW records AS
           SELECT r.* REPLACE (coalesce(l.subject_id, r.subject_id) AS subject_id)
           FROM raw_records r
           LEFT JOIN (SELECT source, matched, subject_id FROM subject_links WHERE confidence > 0) l
             ON l.source = r.source AND l.matched = coalesce(r.subject_key, r.title)"""
    )
    con.execute(
        """CREATE VIEW observations AS
           SELECT o.* REPLACE (coalesce(l.subject_id, o.subject_id) AS subject_id)
           FROM raw_observations o
           LEFT JOIN (SELECT source, matched, subject_id FROM subject_links WHERE confidence > 0) l
             ON l.source = o.source AND l.matched = o.subject_key"""
    )
    con.execute(
        """CREATE VIEW subjects AS
           SELECT l.subject_id, replace(l.subject_id, 'subj:', '') AS label,
                  list_sort(list(DISTINCT l.source) FILTER (WHERE l.confidence > 0)) AS sources,
                  count(DISTINCT l.source) FILTER (WHERE l.confidence > 0) AS n_sources,
                  (SELECT count(*) FROM records r WHERE r.subject_id = l.subject_id) AS n_records,
                  min(lower(l.sex)) FILTER (WHERE l.confidence > 0) AS sex,
                  min(CAST(CAST(l.birth_year AS DOUBLE) AS BIGINT)) FILTER (WHERE l.confidence > 0) AS birth_year,
                  bool_or(l.confidence = 0) AS conflicts
           FROM subject_links l GROUP BY l.subject_id"""
    )

    def pick(var, col, alias, agg="max"):
        return f"{agg}(CASE WHEN o.variable = '{var}' THEN o.{col} END) AS {alias}"

    con.execute(
        f"""CREATE VIEW xnat_sessions AS
            SELECT r.id, r.source, r.project, r.subject_key, r.subject_id, r.native_id AS session_id,
                   r.title AS label, r.url, r.parent_id AS subject_record_id,
                   {pick('date', 'value_date', 'date')}, {pick('modality', 'value_text', 'modality')},
                   {pick('xsiType', 'value_text', 'xsi_type')}, {pick('session_type', 'value_text', 'session_type')},
                   {pick('scanner_manufacturer', 'value_text', 'scanner_manufacturer')},
                   {pick('scanner_model', 'value_text', 'scanner_model')},
                   {pick('field_strength', 'value_num', 'field_strength_t')},
                   {pick('tracer_name', 'value_text', 'tracer')}, {pick('weight', 'value_num', 'weight_kg')},
                   r.created_at, r.modified_at
            FROM records r LEFT JOIN observations o ON o.record_id = r.id
            WHERE r.system = 'xnat' AND r.kind = 'session'
            GROUP BY ALL"""
    )
    con.execute(
        f"""CREATE VIEW omero_images AS
            SELECT r.id, r.source, r.project, r.subject_key, r.subject_id, r.native_id AS image_id,
                   r.title AS name, r.parent_id AS dataset_record_id,
                   {pick('acquisition_date', 'value_date', 'acquired_at')},
                   {pick('size_x', 'value_num', 'size_x')}, {pick('size_y', 'value_num', 'size_y')},
                   {pick('size_z', 'value_num', 'size_z')}, {pick('size_c', 'value_num', 'size_c')},
                   {pick('size_t', 'value_num', 'size_t')}, {pick('pixel_size_x', 'value_num', 'pixel_size_x')},
                   {pick('pixel_size_z', 'value_num', 'pixel_size_z')}, {pick('pixel_size_x', 'unit', 'pixel_unit')},
                   {pick('pixel_type', 'value_text', 'pixel_type')},
                   r.url
            FROM records r LEFT JOIN observations o ON o.record_id = r.id
            WHERE r.system = 'omero' AND r.kind = 'image'
            GROUP BY ALL"""
    )
    con.execute(
        f"""CREATE VIEW xnat_scans AS
            SELECT r.id, r.source, r.project, r.subject_key, r.subject_id,
                   r.parent_id AS session_record_id,
                   split_part(r.native_id, '/', 1) AS session_id, split_part(r.native_id, '/', 2) AS scan_id,
                   {pick('type', 'value_text', 'scan_type')},
                   {pick('series_description', 'value_text', 'series_description')},
                   {pick('quality', 'value_text', 'quality')}, {pick('frames', 'value_num', 'frames')},
                   {pick('note', 'value_text', 'note')}, r.url
            FROM records r LEFT JOIN observations o ON o.record_id = r.id
            WHERE r.system = 'xnat' AND r.kind = 'scan'
            GROUP BY ALL"""
    )
    con.execute(
        """CREATE VIEW redcap_records AS
           SELECT r.id, r.source, r.project, r.native_id AS record, r.subject_key, r.subject_id,
                  count(DISTINCT o.event) AS events, max(o.instance) AS max_instance,
                  count(o.variable) AS n_values, count(o.value_num) AS n_numeric,
                  min(o.value_date) AS first_date, max(o.value_date) AS last_date, r.url
           FROM records r LEFT JOIN observations o ON o.record_id = r.id
           WHERE r.system = 'redcap' AND r.kind = 'record'
           GROUP BY ALL"""
    )
    con.execute(
        """CREATE VIEW transmart_observations AS
           SELECT o.record_id, o.source, r.project AS study, o.subject_key, o.subject_id,
                  o.variable AS concept_code, o.label AS concept, o.value_num, o.value_text,
                  o.unit, o.event AS visit, o.observed_at
           FROM observations o JOIN records r ON r.id = o.record_id
           WHERE o.system = 'transmart' AND r.kind = 'observation set'"""
    )
    for view, kind, extra in [
        ("elabftw_experiments", "experiment", f"{pick('status', 'value_text', 'status')}, "),
        ("elabftw_items", "item", "r.subject_key, r.subject_id, "),
    ]:
        con.execute(
            f"""CREATE VIEW {view} AS
                SELECT r.id, r.source, r.native_id AS {kind}_id, r.title, r.project AS category, {extra}
                       {pick('author', 'value_text', 'author')}, {pick('date', 'value_date', 'date')},
                       r.created_at, r.modified_at, r.url
                FROM records r LEFT JOIN observations o ON o.record_id = r.id
                WHERE r.system = 'elabftw' AND r.kind = '{kind}'
                GROUP BY ALL"""
        )
    # Sessions tied to assessments of the same subject at most 90 days apart.
    con.execute(
        """CREATE VIEW visits AS
           SELECT coalesce(s.subject_id, v.subject_id) AS subject_id,
                  v.source AS clinical_source, v.event AS visit, v.value_date AS visit_date,
                  s.id AS session_record_id, s.label AS session, s.modality, s.date AS session_date,
                  CAST(round(abs(epoch(s.date) - epoch(v.value_date)) / 86400) AS BIGINT) AS days_apart
           FROM (SELECT * FROM xnat_sessions WHERE subject_id IS NOT NULL AND date IS NOT NULL) s
           FULL OUTER JOIN
                (SELECT * FROM observations
                 WHERE variable = 'assessment_date' AND subject_id IS NOT NULL AND value_date IS NOT NULL) v
             ON s.subject_id = v.subject_id AND abs(epoch(s.date) - epoch(v.value_date)) <= 90 * 86400"""
    )


def saved_queries(queries_dir):
    """Name, SQL and default parameters of each saved query."""
    out = []
    for name in sorted(os.listdir(queries_dir)):
        if not name.endswith(".sql"):
            continue
        text = open(os.path.join(queries_dir, name), encoding="utf-8").read()
        params = {}
        for m in re.finditer(r"^-- param: (\w+) (\w+) (\S+)", text, re.M):
            value = m.group(3)
            params[m.group(1)] = float(value) if m.group(2) in ("number", "integer") else value
            if m.group(2) == "integer":
                params[m.group(1)] = int(value)
        body = "\n".join(l for l in text.splitlines() if not l.startswith("--"))
        out.append((name[:-4], body, params))
    return out


# Saved queries whose answers this oracle cannot reproduce: full-text search and
# run history (durations, timings) are crossdex's own.
SKIPPED = {"search-records", "sync-history"}


def generated():
    """Joins, filters and aggregates over resolved subjects, where plans differ by size."""
    q = [
        "SELECT count(*) FROM observations o JOIN records r ON r.subject_id = o.subject_id "
        "WHERE o.variable = 'moca_total' AND o.subject_id IS NOT NULL",
        "SELECT count(*) FROM observations o JOIN records r ON r.subject_id = o.subject_id "
        "WHERE o.variable = 'moca_total'",
        "SELECT system, count(*), count(subject_id), count(DISTINCT subject_id) FROM records GROUP BY system",
        "SELECT system, count(*) FROM records WHERE subject_id IS NULL GROUP BY system",
        "SELECT system, count(*) FROM observations WHERE subject_id IS NOT NULL GROUP BY system",
        "SELECT source, subject_key, subject_id FROM records WHERE kind IN ('session', 'record', 'patient', 'image')",
        "SELECT * FROM subjects",
        # Every view, whole (columns aggregated with string_agg, whose order no engine
        # defines, left out).
        "SELECT * FROM records",
        "SELECT * FROM observations",
        "SELECT * FROM xnat_sessions",
        "SELECT * FROM xnat_scans",
        "SELECT * FROM redcap_records",
        "SELECT id, source, project, subject_key, subject_id, image_id, name, dataset_record_id, acquired_at, "
        "size_x, size_y, size_z, size_c, size_t, pixel_size_x, pixel_size_z, pixel_unit, pixel_type, url FROM omero_images",
        "SELECT * FROM transmart_observations",
        "SELECT id, source, experiment_id, title, category, status, author, date, created_at, modified_at, url "
        "FROM elabftw_experiments",
        "SELECT id, source, item_id, title, category, subject_key, subject_id, author, date, created_at, modified_at, url "
        "FROM elabftw_items",
        "SELECT * FROM visits",
        "SELECT subject_id, visit, session, days_apart FROM visits",
        "SELECT count(*) FROM visits WHERE session IS NOT NULL AND visit IS NOT NULL",
        "SELECT count(*) FROM visits WHERE visit IS NULL",
        "SELECT id, subject_id, modality, date FROM xnat_sessions",
        "SELECT a.system AS left_system, b.system AS right_system, count(DISTINCT a.subject_id) FROM records a JOIN records b "
        "ON a.subject_id = b.subject_id AND a.system < b.system GROUP BY 1, 2",
        "SELECT x.subject_id, count(*) FROM xnat_sessions x LEFT JOIN observations o "
        "ON o.subject_id = x.subject_id AND o.variable = 'moca_total' WHERE o.record_id IS NULL GROUP BY 1",
        "SELECT count(*) FROM records r WHERE r.system = 'xnat' AND r.subject_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM records c WHERE c.system = 'redcap' AND c.subject_id = r.subject_id)",
        "SELECT o.subject_id, min(o.value_num), max(x.date) FROM observations o JOIN xnat_sessions x "
        "ON x.subject_id = o.subject_id WHERE o.variable = 'moca_total' GROUP BY 1",
        "SELECT subject_id, count(*) FROM observations WHERE subject_id IN "
        "(SELECT subject_id FROM records WHERE system = 'omero') GROUP BY 1",
    ]
    for threshold in (10, 14, 18, 22, 26):
        q.append(
            "SELECT m.subject_id, count(x.id) FROM (SELECT subject_id FROM observations WHERE variable = 'moca_total' "
            f"AND value_num < {threshold} AND subject_id IS NOT NULL GROUP BY 1) m "
            "JOIN xnat_sessions x ON x.subject_id = m.subject_id GROUP BY 1"
        )
    return q


def norm(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, decimal.Decimal):
        v = float(v)
    if isinstance(v, (int, float)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        return float(f"{f:.9g}")
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        v = v.isoformat(sep=" ")
    elif isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return tuple(norm(x) for x in v)
    if isinstance(v, str):
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]00:?00)?", v)
        if m:
            frac = (m.group(3) or "").rstrip("0").rstrip(".")
            return f"{m.group(1)} {m.group(2)}{frac}"
    return v


def as_rows(records, columns):
    rows = [tuple(norm(r.get(c)) for c in columns) for r in records]
    # Sorted on everything but floats first, so rows whose numbers differ within the
    # tolerance still meet.
    return sorted(rows, key=lambda r: (repr(tuple(None if isinstance(x, float) else x for x in r)), repr(r)))


def same(a, b, tol):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) and isinstance(y, float):
            if abs(x - y) > tol * max(1.0, abs(x)) and abs(x - y) > tol:
                return False
        elif x != y:
            return False
    return True


def crossdex(binary, data_dir, args):
    run = subprocess.run(
        [binary, "--data-dir", data_dir, "sql", "--format", "json", *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CROSSDEX")},
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip())
    out = run.stdout.strip()
    return json.loads(out) if out else []


def for_duckdb(sql):
    """The same query in DuckDB's dialect, where the two differ.

    `at` is a keyword there."""
    return re.sub(r"\bat\b", '"at"', sql)


def tolerance(sql):
    """How far two numbers may be apart and still agree: a value that falls on a half
    (an average of 22.55) rounds up or down depending on its last binary digit, which
    depends on the order each engine sums in."""
    places = [int(n) for n in re.findall(r"round\([^;]*?, (\d+)\)", sql)]
    return 10.0 ** -min(places) * 1.000001 if places else 1e-9


def duck(con, sql, params):
    sql = for_duckdb(sql)
    cur = con.execute(sql, params) if params else con.execute(sql)
    cols = [d[0] for d in cur.description]
    return cols, [dict(zip(cols, row)) for row in cur.fetchall()]


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    binary, data_dir, queries_dir = sys.argv[1:]
    try:
        m = manifest(data_dir)
    except (OSError, ValueError, KeyError) as e:
        print(f"cannot read the manifest of {data_dir}: {e}", file=sys.stderr)
        return 2
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    define(con, data_dir, m)
    cases = []
    for name, body, params in saved_queries(queries_dir):
        if name in SKIPPED:
            continue
        args = ["--saved", name]
        for k, v in params.items():
            args += ["--param", f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"]
        cases.append((f"saved {name}", body, params, args))
    for sql in generated():
        cases.append((sql, sql, None, [sql]))
    failed = 0
    for label, sql, params, args in cases:
        try:
            cols, expected = duck(con, sql, params)
        except duckdb.Error as e:
            print(f"DUCKDB ERROR {label}: {e}")
            failed += 1
            continue
        try:
            got = crossdex(binary, data_dir, args)
        except RuntimeError as e:
            print(f"CROSSDEX ERROR {label}: {e}")
            failed += 1
            continue
        # Positional columns: names of expressions differ between engines.
        if got and len(got[0]) == len(cols):
            got = [dict(zip(cols, r.values())) for r in got]
        e_rows, g_rows = as_rows(expected, cols), as_rows(got, cols)
        tol = tolerance(sql)
        if len(e_rows) != len(g_rows) or not all(same(a, b, tol) for a, b in zip(e_rows, g_rows)):
            failed += 1
            print(f"DIFFERS {label}: duckdb {len(e_rows)} rows, crossdex {len(g_rows)} rows")
            for row in [r for r in e_rows if r not in g_rows][:3]:
                print(f"  only in duckdb:   {row}")
            for row in [r for r in g_rows if r not in e_rows][:3]:
                print(f"  only in crossdex: {row}")
    print(f"{len(cases) - failed} queries agree, {failed} differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
