#!/usr/bin/env python3
"""SQLite FTS5 on the same data as `cargo bench --bench engine -- --dump DIR`.

Loads DIR/records.jsonl into a records table, an observations table and an FTS5 index
over title, body and observation values (what crossdex indexes), in one transaction,
then runs DIR/queries.txt as top-10 BM25 searches. Prints the same figures as the
engine benchmark so compare.sh can put them side by side.

    python3 benches/sqlite_fts5.py DIR
"""
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time


def main(dump_dir):
    db_path = os.path.join(tempfile.mkdtemp(prefix="crossdex-sqlite-"), "bench.db")
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE records (id TEXT PRIMARY KEY, title TEXT, body TEXT, subject TEXT)")
    con.execute("CREATE TABLE observations (record_id TEXT, variable TEXT, value_text TEXT, value_num REAL)")
    con.execute("CREATE INDEX observations_record ON observations(record_id)")
    con.execute("CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, title, body, tokenize='unicode61 remove_diacritics 2')")

    n = 0
    started = time.perf_counter()
    with open(os.path.join(dump_dir, "records.jsonl")) as f, con:
        for line in f:
            r = json.loads(line)
            n += 1
            con.execute("INSERT INTO records VALUES (?, ?, ?, ?)", (r["id"], r["title"], r["body"], r["subject"]))
            con.executemany(
                "INSERT INTO observations VALUES (?, ?, ?, ?)",
                [(r["id"], var, text, num) for var, text, num in r["obs"]],
            )
            values = "\n".join(f"{var}: {text}" for var, text, _ in r["obs"])
            con.execute("INSERT INTO docs VALUES (?, ?, ?)", (r["id"], r["title"], f"{r['body']}\n{values}"))
    ingest = time.perf_counter() - started

    queries = [q for q in open(os.path.join(dump_dir, "queries.txt")).read().splitlines() if q]
    samples = []
    for q in queries:
        match = " ".join('"' + w.replace('"', '""') + '"' for w in q.split())
        t = time.perf_counter()
        con.execute("SELECT id, bm25(docs) FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT 10", (match,)).fetchall()
        samples.append(time.perf_counter() - t)
    samples.sort()
    p50 = samples[len(samples) // 2] * 1e3
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(db_path) / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sqlite fts5 {sqlite3.sqlite_version}: {n} records")
    print(f"  ingest                                      {n / ingest:>10.0f} records/s")
    print(f"  size on disk {size:.1f} MB")
    print(f"  search (top 10, {len(queries)} queries)            p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    print(f"  peak memory {peak:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1])
