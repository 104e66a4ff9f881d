"""Typed observation fields, structured clauses, sorting, search_after and the
aggregations read from the tables, through the official `elasticsearch` client,
each compared with DuckDB answering the same question on the same Parquet rows
(tables defined independently of crossdex by tests/differential/duckdb_oracle.py).

  typed.py BASE DATA_DIR

Prints one line per check and exits 1 on any disagreement (2 when a tool is missing).
"""

import datetime as dt
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "differential"))

try:
    import duckdb  # noqa: F401 - the oracle module needs it
    from duckdb_oracle import define, manifest
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch
except ImportError as e:
    print(f"missing: {e}", file=sys.stderr)
    sys.exit(2)

base, data_dir = sys.argv[1], sys.argv[2]
es = Elasticsearch(base, request_timeout=120)
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
define(con, data_dir, manifest(data_dir))

failures = []


def check(name, got, want):
    ok = same(got, want)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: crossdex {json.dumps(got, default=str)[:300]}"
          + ("" if ok else f" duckdb {json.dumps(want, default=str)[:300]}"))
    if not ok:
        failures.append(name)


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def one(sql, *params):
    return con.execute(sql, list(params)).fetchone()[0]


def rows(sql, *params):
    return con.execute(sql, list(params)).fetchall()


asked = []


def count(query):
    n = es.count(index="crossdex", query=query)["count"]
    asked.append((query, n))
    return n


# The variables: the numeric one most records hold, a text one, a date one if any.
kinds = {
    v: (n, d, c, recs)
    for v, n, d, c, recs in rows(
        "SELECT variable, count(value_num), count(value_date), count(*), count(DISTINCT record_id) "
        "FROM observations GROUP BY 1"
    )
}
record_fields = {"id", "source", "system", "kind", "native_id", "parent_id", "project", "subject_key",
                 "subject_id", "title", "description", "url", "modified_at", "created_at", "date"}
plain = {v: k for v, k in kinds.items() if v not in record_fields and not v.startswith("obs.")}
spread = {v: d for v, d in rows("SELECT variable, count(DISTINCT value_num) FROM observations GROUP BY 1")}
# The numeric variable with the most distinct values among those many records hold.
numeric = sorted((v for v, (n, _, c, _) in plain.items() if n == c and n > 0), key=lambda v: (-plain[v][3], v))
numeric = sorted(numeric, key=lambda v: (plain[v][3] < plain[numeric[0]][3] / 8, -spread[v], v))
dated = sorted((v for v, (_, d, c, _) in plain.items() if d == c and d > 0), key=lambda v: (-plain[v][3], v))
texts = sorted((v for v, (n, d, c, _) in plain.items() if n == 0 and d == 0), key=lambda v: (-plain[v][3], v))
num = numeric[0]
print(f"numeric variable {num}, text {texts[:1]}, date {dated[:1]}")

mapping = es.indices.get_mapping(index="crossdex")["crossdex"]["mappings"]["properties"]
check("mapping: a numeric variable is a double", mapping.get(num, {}).get("type"), "double")
if texts:
    check("mapping: a text variable is a keyword", mapping.get(texts[0], {}).get("type"), "keyword")
if dated:
    check("mapping: a date variable is a date", mapping.get(dated[0], {}).get("type"), "date")

values = [r[0] for r in rows("SELECT value_num FROM observations WHERE variable = ? ORDER BY 1", num)]
mid = values[len(values) // 2]
lo = values[len(values) // 4]


def docs(cond, *params):
    return one(f"SELECT count(DISTINCT record_id) FROM observations WHERE variable = ? AND {cond}", num, *params)


# Clauses on typed fields.
check("range gte", count({"range": {num: {"gte": mid}}}), docs("value_num >= ?", mid))
check("range gt+lt on one value", count({"range": {num: {"gt": lo, "lt": mid}}}),
      docs("value_num > ? AND value_num < ?", lo, mid))
check("term on a number", count({"term": {num: mid}}), docs("value_num = ?", mid))
check("exists", count({"exists": {"field": num}}), docs("TRUE"))
check("must_not exists", count({"bool": {"must_not": [{"exists": {"field": num}}]}}),
      one("SELECT count(*) FROM records WHERE id NOT IN (SELECT record_id FROM observations WHERE variable = ?)", num))
if texts:
    t = texts[0]
    tv = one("SELECT value_text FROM observations WHERE variable = ? GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1", t)
    check("term on a text variable", count({"term": {t: tv}}),
          one("SELECT count(DISTINCT record_id) FROM observations WHERE variable = ? AND value_text = ?", t, tv))
ids = [r[0] for r in rows("SELECT id FROM records ORDER BY id LIMIT 3")]
check("quotes and backslashes in full text on the tables' path",
      count({"bool": {"must": [{"query_string": {"query": "o'brien\\' OR 'x"}}, {"exists": {"field": num}}]}}), 0)
check("a number for a keyword field is its text", count({"term": {"project": 12}}),
      one("SELECT count(*) FROM records WHERE project = '12'"))
check("ids", count({"ids": {"values": ids + ["nowhere:none:0"]}}), 3)
check("terms on _id", count({"terms": {"_id": ids[:2]}}), 2)
check("regexp on kind", count({"regexp": {"kind": "s.*"}}),
      one("SELECT count(*) FROM records WHERE regexp_full_match(kind, 's.*')"))
check("wildcard on a keyword", count({"wildcard": {"source": {"value": "x?a*"}}}),
      one("SELECT count(*) FROM records WHERE source LIKE 'x_a%'"))
check("prefix on a keyword", count({"prefix": {"subject_key": "INT"}}),
      one("SELECT count(*) FROM records WHERE starts_with(subject_key, 'INT')"))
check("range on a date, sub-second and exclusive",
      count({"range": {"created_at": {"gt": "2020-03-01T00:00:00.500Z", "lte": "2021-06-30T12:00:00"}}}),
      one("SELECT count(*) FROM records WHERE coalesce(created_at, modified_at) > '2020-03-01T00:00:00.500Z'::TIMESTAMPTZ "
          "AND coalesce(created_at, modified_at) <= '2021-06-30T12:00:00Z'::TIMESTAMPTZ"))
check("range on modified_at",
      count({"range": {"modified_at": {"gte": "2021-01-01"}}}),
      one("SELECT count(*) FROM records WHERE modified_at >= '2021-01-01T00:00:00Z'::TIMESTAMPTZ"))
check("range on a date in a format of its own",
      count({"range": {"created_at": {"gte": "01/01/2020", "lt": "01/01/2021", "format": "dd/MM/yyyy"}}}),
      one("SELECT count(*) FROM records WHERE year(coalesce(created_at, modified_at)) = 2020"))
check("range with date math rounded to the year",
      count({"range": {"created_at": {"gte": "now-100y/y", "lt": "now+1d/d"}}}),
      one("SELECT count(*) FROM records WHERE coalesce(created_at, modified_at) IS NOT NULL"))
check("minimum_should_match 2 of 3",
      count({"bool": {"should": [{"term": {"kind": "image"}}, {"term": {"source": "xnat"}}, {"term": {"system": "omero"}}],
                      "minimum_should_match": 2}}),
      one("SELECT count(*) FROM records WHERE (kind = 'image')::INT + (source = 'xnat')::INT + (system = 'omero')::INT >= 2"))
check("minimum_should_match -1 of 3 with a typed range",
      count({"bool": {"should": [{"term": {"kind": "record"}}, {"range": {num: {"gte": mid}}}, {"exists": {"field": "project"}}],
                      "minimum_should_match": "-1"}}),
      one("SELECT count(*) FROM records r WHERE (kind = 'record')::INT "
          "+ (id IN (SELECT record_id FROM observations WHERE variable = ? AND value_num >= ?))::INT "
          "+ (project IS NOT NULL)::INT >= 2", num, mid))

# Sorting by a typed field, missing last, and paging through everything with search_after.
order = [r[0] for r in rows(
    "SELECT r.id FROM records r LEFT JOIN (SELECT record_id, min(value_num) k FROM observations WHERE variable = ? "
    "GROUP BY 1) o ON o.record_id = r.id ORDER BY o.k ASC NULLS LAST, r.id LIMIT 7", num)]
got = es.search(index="crossdex", query={"match_all": {}}, sort=[{num: {"order": "asc", "missing": "_last"}}], size=7)
check("sort by a typed field", [h["_id"] for h in got["hits"]["hits"]], order)
check("sort values are numbers", all(isinstance(h["sort"][0], (int, float)) for h in got["hits"]["hits"]), True)

want = [r[0] for r in rows(
    "SELECT r.id FROM records r JOIN (SELECT record_id, max(value_num) k FROM observations WHERE variable = ? "
    "GROUP BY 1) o ON o.record_id = r.id ORDER BY o.k DESC, r.id", num)]
seen, after = [], None
while True:
    kw = {"search_after": after} if after else {}
    page = es.search(index="crossdex", query={"exists": {"field": num}}, sort=[{num: "desc"}], size=40, **kw)
    hits = page["hits"]["hits"]
    if not hits:
        break
    seen += [h["_id"] for h in hits]
    after = hits[-1]["sort"]
check("search_after pages through every document once, in order", seen, want)

want = [r[0] for r in rows(
    "SELECT id FROM records ORDER BY kind DESC, coalesce(created_at, modified_at) ASC NULLS FIRST, id")]
seen, after = [], None
while True:
    kw = {"search_after": after} if after else {}
    page = es.search(index="crossdex", sort=[{"kind": "desc"}, {"created_at": {"order": "asc", "missing": "_first"}}],
                     size=500, **kw)
    hits = page["hits"]["hits"]
    if not hits:
        break
    seen += [h["_id"] for h in hits]
    after = hits[-1]["sort"]
check("search_after over two keys, dates missing first", seen, want)

# Relevance then a field, paged with search_after: every hit once, best first.
text_query = {"bool": {"must": [{"match": {"body": "session"}}], "filter": [{"exists": {"field": num}}]}}
seen, scores, after = [], [], None
while True:
    kw = {"search_after": after} if after else {}
    page = es.search(index="crossdex", query=text_query, sort=["_score", {"id": "asc"}], size=25, **kw)
    hits = page["hits"]["hits"]
    if not hits:
        break
    seen += [h["_id"] for h in hits]
    scores += [h["_score"] for h in hits]
    after = hits[-1]["sort"]
check("search_after by relevance: every hit once, best first",
      [len(seen), len(set(seen)), all(a >= b for a, b in zip(scores, scores[1:]))],
      [count(text_query), count(text_query), True])

# Metrics.
n, mn, mx, avg, sm = rows("SELECT count(value_num), min(value_num), max(value_num), avg(value_num), sum(value_num) "
                          "FROM observations WHERE variable = ?", num)[0]
a = es.search(index="crossdex", size=0, aggs={
    "stats": {"stats": {"field": num}},
    "min": {"min": {"field": num}},
    "max": {"max": {"field": num}},
    "avg": {"avg": {"field": num}},
    "sum": {"sum": {"field": num}},
    "values": {"value_count": {"field": num}},
    "subjects": {"cardinality": {"field": "subject_id"}},
    "first": {"min": {"field": "created_at"}},
})["aggregations"]
check("stats", [a["stats"][k] for k in ("count", "min", "max", "avg", "sum")], [n, mn, mx, avg, sm])
check("min/max/avg/sum", [a["min"]["value"], a["max"]["value"], a["avg"]["value"], a["sum"]["value"]], [mn, mx, avg, sm])
check("value_count", a["values"]["value"], n)
check("cardinality of subjects", a["subjects"]["value"], one("SELECT count(DISTINCT subject_id) FROM records"))
first = one("SELECT epoch_ms(min(coalesce(created_at, modified_at))) FROM records")
check("min of a date", [a["first"]["value"], a["first"].get("value_as_string", "")[:10]],
      [float(first), dt.datetime.fromtimestamp(first / 1000, dt.timezone.utc).strftime("%Y-%m-%d")])

# Bucket aggregations from the tables.
width = max(1.0, round((mx - mn) / 8)) if mx > mn else 1.0
a = es.search(index="crossdex", size=0, aggs={
    "hist": {"histogram": {"field": num, "interval": width}},
    "ranges": {"range": {"field": num, "ranges": [{"to": mid}, {"from": mid}]}},
    "top_values": {"terms": {"field": num, "size": 5}},
    "by_source": {"terms": {"field": "source"}, "aggs": {"mean": {"avg": {"field": num}}}},
    "years": {"date_histogram": {"field": "created_at", "calendar_interval": "year", "min_doc_count": 1}},
    "quarters": {"date_histogram": {"field": "created_at", "calendar_interval": "quarter"}},
    "fixed": {"date_histogram": {"field": "created_at", "fixed_interval": "30d", "min_doc_count": 1}},
    "periods": {"date_range": {"field": "created_at", "format": "yyyy-MM-dd",
                               "ranges": [{"to": "2020-01-01"}, {"from": "2020-01-01"}]}},
    "kinds": {"terms": {"field": "kind", "size": 3},
              "aggs": {"latest": {"top_hits": {"size": 1, "sort": [{"created_at": "desc"}], "_source": ["title"]}}}},
    "sources_by_key": {"terms": {"field": "source", "order": {"_key": "desc"}, "include": "x.*|r.*"}},
})["aggregations"]
hist = {k: c for k, c in rows(
    "SELECT floor(value_num / ?) * ?, count(DISTINCT record_id) FROM observations WHERE variable = ? GROUP BY 1",
    width, width, num)}
got_hist = {b["key"]: b["doc_count"] for b in a["hist"]["buckets"]}
check("histogram's non-empty buckets", {k: v for k, v in got_hist.items() if v}, hist)
check("histogram fills the empty buckets between",
      len(a["hist"]["buckets"]), int(round((max(hist) - min(hist)) / width)) + 1)
check("range buckets", [b["doc_count"] for b in a["ranges"]["buckets"]],
      [docs("value_num < ?", mid), docs("value_num >= ?", mid)])
check("range keys", [b["key"] for b in a["ranges"]["buckets"]], [f"*-{float(mid)!r}", f"{float(mid)!r}-*"])
top = rows("SELECT value_num, count(DISTINCT record_id) n FROM observations WHERE variable = ? GROUP BY 1 "
           "ORDER BY n DESC, 1 LIMIT 5", num)
check("terms on a number", [[b["key"], b["doc_count"]] for b in a["top_values"]["buckets"]],
      [[k, c] for k, c in top])
by_source = {s: [c, m] for s, c, m in rows(
    "SELECT r.source, count(DISTINCT r.id), avg(o.value_num) FROM records r LEFT JOIN observations o "
    "ON o.record_id = r.id AND o.variable = ? GROUP BY 1", num)}
check("terms with an avg per bucket", {b["key"]: [b["doc_count"], b["mean"]["value"]] for b in a["by_source"]["buckets"]},
      by_source)
years = {k: c for k, c in rows(
    "SELECT epoch_ms(date_trunc('year', coalesce(created_at, modified_at))), count(*) FROM records "
    "WHERE coalesce(created_at, modified_at) IS NOT NULL GROUP BY 1")}
check("date_histogram by year", {b["key"]: b["doc_count"] for b in a["years"]["buckets"]}, years)
quarters = {k: c for k, c in rows(
    "SELECT epoch_ms(date_trunc('quarter', coalesce(created_at, modified_at))), count(*) FROM records "
    "WHERE coalesce(created_at, modified_at) IS NOT NULL GROUP BY 1")}
got_q = {b["key"]: b["doc_count"] for b in a["quarters"]["buckets"]}
check("date_histogram by quarter, empty quarters filled", {k: v for k, v in got_q.items() if v}, quarters)
check("date_histogram by quarter, no gap",
      all(dt.datetime.fromtimestamp(b["key"] / 1000, dt.timezone.utc).month in (1, 4, 7, 10) for b in a["quarters"]["buckets"])
      and len(got_q) >= len(quarters), True)
fixed = {k: c for k, c in rows(
    "SELECT (epoch_ms(coalesce(created_at, modified_at)) // 2592000000) * 2592000000, count(*) FROM records "
    "WHERE coalesce(created_at, modified_at) IS NOT NULL GROUP BY 1")}
check("date_histogram by a fixed 30d", {b["key"]: b["doc_count"] for b in a["fixed"]["buckets"]}, fixed)
check("date_range", [[b["key"], b["doc_count"]] for b in a["periods"]["buckets"]], [
    ["*-2020-01-01", one("SELECT count(*) FROM records WHERE coalesce(created_at, modified_at) < '2020-01-01T00:00:00Z'::TIMESTAMPTZ")],
    ["2020-01-01-*", one("SELECT count(*) FROM records WHERE coalesce(created_at, modified_at) >= '2020-01-01T00:00:00Z'::TIMESTAMPTZ")],
])
kinds3 = rows("SELECT kind, count(*) n FROM records GROUP BY 1 ORDER BY n DESC, 1 LIMIT 3")
latest = {k: one("SELECT id FROM records WHERE kind = ? ORDER BY coalesce(created_at, modified_at) DESC NULLS LAST, id LIMIT 1", k)
          for k, _ in kinds3}
check("terms with top_hits per bucket",
      {b["key"]: [b["doc_count"], b["latest"]["hits"]["hits"][0]["_id"], sorted(b["latest"]["hits"]["hits"][0]["_source"])]
       for b in a["kinds"]["buckets"]},
      {k: [n, latest[k], ["title"]] for k, n in kinds3})
check("terms ordered by key, with a pattern", [b["key"] for b in a["sources_by_key"]["buckets"]],
      [r[0] for r in rows("SELECT DISTINCT source FROM records WHERE regexp_full_match(source, 'x.*|r.*') ORDER BY 1 DESC")])

# post_filter on a typed field: hits see it, aggregations do not.
subject = one("SELECT r.subject_id FROM records r JOIN observations o ON o.record_id = r.id "
              "WHERE o.variable = ? AND o.value_num >= ? AND r.subject_id IS NOT NULL "
              "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1", num, lo)
r = es.search(index="crossdex", query={"range": {num: {"gte": lo}}}, post_filter={"term": {"subject_id": subject}},
              aggs={"projects": {"terms": {"field": "project", "size": 100}}}, size=3)
hits = one("SELECT count(DISTINCT o.record_id) FROM observations o JOIN records r ON r.id = o.record_id "
           "WHERE o.variable = ? AND o.value_num >= ? AND r.subject_id = ?", num, lo, subject)
check("post_filter on the tables' path: hits", [r["hits"]["total"]["value"], hits > 0], [hits, True])
check("post_filter on the tables' path: aggregations",
      {b["key"]: b["doc_count"] for b in r["aggregations"]["projects"]["buckets"]},
      {s: c for s, c in rows("SELECT r.project, count(DISTINCT r.id) FROM records r JOIN observations o ON o.record_id = r.id "
                             "WHERE o.variable = ? AND o.value_num >= ? AND r.project IS NOT NULL GROUP BY 1", num, lo)})

# _source: the record view, observations as typed fields.
rec = one("SELECT record_id FROM observations WHERE variable = ? GROUP BY 1 HAVING count(*) = 1 ORDER BY 1 LIMIT 1", num)
val = one("SELECT value_num FROM observations WHERE record_id = ? AND variable = ?", rec, num)
doc = es.search(index="crossdex", query={"ids": {"values": [rec]}})["hits"]["hits"][0]["_source"]
check("_source holds the observation as a number", doc.get(num), val)
check("_source holds the record's fields", [doc.get("id"), doc.get("source")],
      list(rows("SELECT id, source FROM records WHERE id = ?", rec)[0]))

# Scroll over the tables' path (a sort asks for it).
n_all = one("SELECT count(*) FROM records")
r = es.search(index="crossdex", scroll="1m", sort=[{"id": "asc"}], size=700)
got = [h["_id"] for h in r["hits"]["hits"]]
while r["hits"]["hits"]:
    r = es.scroll(scroll_id=r["_scroll_id"], scroll="1m")
    got += [h["_id"] for h in r["hits"]["hits"]]
check("scroll in id order", [len(got), got == sorted(got), len(set(got))], [n_all, True, n_all])

# Every clause above through msearch and search too, and through opensearch-py.
searches = []
for q, _ in asked:
    searches += [{"index": "crossdex"}, {"query": q, "size": 0}]
responses = es.msearch(searches=searches)["responses"]
check("msearch answers every clause as count does",
      [r["hits"]["total"]["value"] for r in responses], [n for _, n in asked])
check("search answers every clause as count does",
      [es.search(index="crossdex", query=q, size=1)["hits"]["total"]["value"] for q, _ in asked], [n for _, n in asked])
os_client = OpenSearch(base, timeout=120)
check("opensearch-py counts every clause the same",
      [os_client.count(index="crossdex", body={"query": q})["count"] for q, _ in asked], [n for _, n in asked])

print(f"{len(failures)} disagreements")
sys.exit(1 if failures else 0)
