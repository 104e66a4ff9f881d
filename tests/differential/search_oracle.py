#!/usr/bin/env python3
"""Search check: crossdex's hit sets against a plain scan of the records' text.

Reads the committed Parquet rows with DuckDB, rebuilds each record's searchable text
as docs/search.md describes it (title; native id, subject key, project, description,
and every observation as `label: value`), splits it into words the way the docs say
(anything not a letter or digit separates, lowercase, accents folded), and evaluates
each query of QUERIES by scanning: words with the documented typo tolerance (one typo
from 5 letters, two from 9), prefixes, phrases, exclusions, OR and field filters.
The set of ids found must equal what `search(query, <every record>)` returns.

Usage: search_oracle.py CROSSDEX_BIN DATA_DIR
"""

import json
import os
import re
import subprocess
import sys
import unicodedata

try:
    import duckdb
except ImportError:
    print("duckdb is not installed: pip install duckdb", file=sys.stderr)
    sys.exit(2)

# Words, phrases, prefixes, typos (one and two), exclusions, alternatives, fields.
QUERIES = [
    "moca",
    "hippocampus",
    "hipocampus",
    "hipocampu",
    "amyloid",
    "amyloyd",
    "amyl*",
    "abeta*",
    "csf abeta42",
    "csf",
    "plasma -csf",
    "csf OR plasma",
    '"post-mortem histology"',
    '"memory clinic"',
    "source:xnat amyloid",
    "kind:item csf",
    "system:omero gfap",
    "title:sections",
    "donepezil",
    "baseline",
    "baselnie",
    "neurofilament",
    "INT-003",
    "gfap -hippocampus",
]


def fold(s):
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c))


def words(text):
    out = []
    for w in re.findall(r"[^\W_]+", text or ""):
        w = fold(w.lower())
        if len(w.encode()) < 64:
            out.append(w)
    return out


def osa(a, b, limit):
    """Optimal string alignment distance (a transposition is one typo), or limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def typos(w):
    n = len(w)
    return 0 if n < 5 else 1 if n < 9 else 2


def load(data_dir):
    with open(os.path.join(data_dir, "index", "meta.json"), encoding="utf-8") as f:
        m = json.loads(json.load(f)["payload"])
    tables = os.path.join(data_dir, "tables")

    def files(kind):
        return "[" + ", ".join(f"'{os.path.join(tables, s[kind])}'" for s in m["sources"].values()) + "]"

    con = duckdb.connect()
    docs = {}
    for row in con.execute(
        f"SELECT id, source, system, kind, project, subject_key, title, native_id, description "
        f"FROM read_parquet({files('records')})"
    ).fetchall():
        rid, source, system, kind, project, key, title, native, desc = row
        body = "\n".join(x for x in [native, key, project, desc] if x)
        docs[rid] = {
            "source": source,
            "system": system,
            "kind": kind,
            "project": project,
            "subject_key": key,
            "title": title,
            "body": body,
        }
    for rid, label, variable, value in con.execute(
        f"SELECT record_id, label, variable, value_text FROM read_parquet({files('observations')}) "
        "WHERE value_text IS NOT NULL"
    ).fetchall():
        if rid in docs:
            docs[rid]["body"] += f"\n{label or variable}: {value}"
    for d in docs.values():
        d["title_words"] = words(d["title"])
        d["body_words"] = words(d["title"] + "\n" + d["title"] + "\n" + d["body"])
    return docs


def tokens(query):
    return re.findall(r'-?[a-z_]+:"[^"]*"|-?"[^"]*"|\S+', query)


def matches_term(doc, term):
    field = None
    m = re.match(r"^(source|system|kind|project|subject_key|title|body):(.*)$", term)
    if m:
        field, term = m.group(1), m.group(2)
    if field in ("source", "system", "kind", "project", "subject_key"):
        return doc[field] == term.strip('"')
    ws = doc["title_words"] if field == "title" else doc["body_words"]
    if term.startswith('"'):
        phrase = words(term.strip('"'))
        return any(ws[i : i + len(phrase)] == phrase for i in range(len(ws) - len(phrase) + 1))
    if term.endswith("*"):
        stem = words(term[:-1])
        return len(stem) == 1 and any(w.startswith(stem[0]) for w in ws)
    parts = words(term)
    if len(parts) > 1:
        return any(ws[i : i + len(parts)] == parts for i in range(len(ws) - len(parts) + 1))
    (w,) = parts
    k = typos(w)
    return any(x == w or (k and osa(w, x, k) <= k) for x in ws)


def matches(doc, query):
    for alternative in re.split(r"\s+OR\s+", query):
        ok = True
        for t in tokens(alternative):
            if t.startswith("-"):
                ok &= not matches_term(doc, t[1:])
            else:
                ok &= matches_term(doc, t)
        if ok:
            return True
    return False


def main():
    binary, data_dir = sys.argv[1:3]
    docs = load(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDEX")}
    failed = 0
    for q in QUERIES:
        expected = {rid for rid, d in docs.items() if matches(d, q)}
        sql = f"SELECT id FROM search('{q.replace(chr(39), chr(39) * 2)}', {len(docs) + 1})"
        run = subprocess.run(
            [binary, "--data-dir", data_dir, "sql", "--format", "json", sql], capture_output=True, text=True, env=env
        )
        if run.returncode != 0:
            print(f"CROSSDEX ERROR {q}: {run.stderr.strip()}")
            failed += 1
            continue
        got = {r["id"] for r in json.loads(run.stdout or "[]")}
        print(f"{len(expected):6} hits  {q}")
        if got != expected:
            failed += 1
            print(f"DIFFERS {q!r}: scan {len(expected)} hits, crossdex {len(got)}")
            for rid in sorted(expected - got)[:3]:
                print(f"  only in scan:     {rid}")
            for rid in sorted(got - expected)[:3]:
                print(f"  only in crossdex: {rid}")
    print(f"{len(QUERIES) - failed} searches agree, {failed} differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
