"""crossdex's Elasticsearch-compatible API through the official clients: the
`elasticsearch` client (9.x) with its `helpers.scan` and its `dsl.FacetedSearch`, and
`opensearch-py`. Prints one JSON object for the Rust test to compare with SQL answers
on the same data; exits non-zero when a client refuses an answer.

  clients.py BASE [API_KEY]
"""

import json
import sys

from elasticsearch import Elasticsearch, helpers
from elasticsearch.dsl import DateHistogramFacet, FacetedSearch, TermsFacet
from opensearchpy import OpenSearch

base = sys.argv[1]
key = sys.argv[2] if len(sys.argv) > 2 else None
es = Elasticsearch(base, api_key=("crossdex", key) if key else None, request_timeout=60)
os_client = OpenSearch(
    base,
    http_auth=("crossdex", key) if key else None,
    timeout=60,
)

out = {}
out["info"] = es.info()["version"]["number"]
out["indices"] = {i["index"]: int(i["docs.count"]) for i in es.cat.indices(format="json")}

# Every query type, through search, count and msearch.
queries = {
    "match_all": {"match_all": {}},
    "match_none": {"match_none": {}},
    "match": {"match": {"body": "hippocampus"}},
    "match_and": {"match": {"body": {"query": "hippocampus sections", "operator": "and"}}},
    "match_title": {"match": {"title": "hippocampus"}},
    "match_fuzzy_auto": {"match": {"body": {"query": "hipocampus", "fuzziness": "AUTO"}}},
    "match_fuzzy_0": {"match": {"body": {"query": "hipocampus", "fuzziness": 0}}},
    "match_msm": {"match": {"body": {"query": "hippocampus amyloid sections", "minimum_should_match": 2}}},
    "match_phrase": {"match_phrase": {"body": "hippocampus sections"}},
    "match_phrase_prefix": {"match_phrase_prefix": {"body": "hippocampus sec"}},
    "match_bool_prefix": {"match_bool_prefix": {"body": "hippocampus sec"}},
    "multi_match": {"multi_match": {"query": "hippocampus", "fields": ["title^2", "body"]}},
    "multi_match_phrase": {"multi_match": {"query": "hippocampus sections", "type": "phrase", "fields": ["body"]}},
    "query_string": {"query_string": {"query": "hippocampus AND kind:image"}},
    "simple_query_string": {"simple_query_string": {"query": "hippocampus | cerebellum"}},
    "term": {"term": {"source": "xnat"}},
    "terms": {"terms": {"kind": ["session", "scan"]}},
    "prefix": {"prefix": {"body": "hippocamp"}},
    "wildcard": {"wildcard": {"body": {"value": "hippocamp*"}}},
    "range": {"range": {"created_at": {"gte": "2020-01-01", "lt": "2021-01-01"}}},
    "bool": {
        "bool": {
            "must": [{"match": {"body": "amyloid"}}],
            "filter": [{"term": {"system": "xnat"}}],
            "must_not": [{"term": {"kind": "scan"}}],
        }
    },
    "bool_should": {
        "bool": {
            "should": [{"term": {"kind": "project"}}, {"term": {"kind": "study"}}],
            "minimum_should_match": 1,
        }
    },
}
out["search"] = {}
out["count"] = {}
for name, q in queries.items():
    out["search"][name] = es.search(index="crossdex", query=q, size=3)["hits"]["total"]["value"]
    out["count"][name] = es.count(index="crossdex", query=q)["count"]
searches = []
for q in queries.values():
    searches += [{"index": "crossdex"}, {"query": q, "size": 0}]
out["msearch"] = [r["hits"]["total"]["value"] for r in es.msearch(searches=searches)["responses"]]
out["per_index"] = {i: es.count(index=i)["count"] for i in out["indices"]}
out["two_indices"] = es.count(index="xnat,redcap")["count"]
out["wildcard_index"] = es.count(index="re*")["count"]

# Aggregations, post_filter and highlight in one request: the three things faceted
# portals send on every request.
r = es.search(
    index="crossdex",
    query={"match": {"body": "hippocampus"}},
    post_filter={"term": {"kind": "image"}},
    highlight={"fields": {"body": {}}, "pre_tags": ["<mark>"], "post_tags": ["</mark>"]},
    aggs={
        "kinds": {"terms": {"field": "kind"}},
        "images": {"filter": {"term": {"kind": "image"}}, "aggs": {"sources": {"terms": {"field": "source"}}}},
        "groups": {"filters": {"filters": {"xnat": {"term": {"system": "xnat"}}, "omero": {"term": {"system": "omero"}}}}},
        "months": {"date_histogram": {"field": "created_at", "calendar_interval": "month"}},
        "n_sources": {"cardinality": {"field": "source"}},
    },
    size=5,
)
out["combined"] = {
    "hits": r["hits"]["total"]["value"],
    "highlighted": all("<mark>" in h["highlight"]["body"][0] for h in r["hits"]["hits"]),
    "kinds": {b["key"]: b["doc_count"] for b in r["aggregations"]["kinds"]["buckets"]},
    "images": r["aggregations"]["images"]["doc_count"],
    "images_by_source": {b["key"]: b["doc_count"] for b in r["aggregations"]["images"]["sources"]["buckets"]},
    "groups": {k: v["doc_count"] for k, v in r["aggregations"]["groups"]["buckets"].items()},
    "months": sum(b["doc_count"] for b in r["aggregations"]["months"]["buckets"]),
    "n_sources": r["aggregations"]["n_sources"]["value"],
}
# Terms with include, exclude and order; a histogram with empty months, a format and
# bounds; a time limit.
r = es.search(
    index="crossdex",
    size=0,
    timeout="30s",
    aggs={
        "kinds_by_key": {"terms": {"field": "kind", "order": {"_key": "asc"}, "size": 3}},
        "some_kinds": {"terms": {"field": "kind", "include": ["session", "scan", "nothing"]}},
        "not_scans": {"terms": {"field": "kind", "exclude": ["scan"], "size": 50}},
        "months": {
            "date_histogram": {
                "field": "created_at",
                "calendar_interval": "month",
                "min_doc_count": 0,
                "format": "yyyy-MM",
                "extended_bounds": {"min": "2010-01-01", "max": "2010-03-01"},
            }
        },
    },
)
a = r["aggregations"]
out["terms_options"] = {
    "by_key": [b["key"] for b in a["kinds_by_key"]["buckets"]],
    "by_key_other": a["kinds_by_key"]["sum_other_doc_count"],
    "include": {b["key"]: b["doc_count"] for b in a["some_kinds"]["buckets"]},
    "exclude": {b["key"]: b["doc_count"] for b in a["not_scans"]["buckets"]},
    "first_months": [b["key_as_string"] for b in a["months"]["buckets"][:3]],
    "month_total": sum(b["doc_count"] for b in a["months"]["buckets"]),
    "months_listed": len(a["months"]["buckets"]),
}
try:
    es.perform_request(
        "POST",
        "/crossdex/_search",
        params={"strict": "true"},
        headers={"content-type": "application/json", "accept": "application/json"},
        body={"query": {"match_all": {}}, "suggest": {}},
    )
    out["strict"] = None
except Exception as e:  # noqa: BLE001 - the client's own error types
    out["strict"] = [getattr(e, "status_code", None), getattr(e, "error", None)]

# Highlights per asked field: the title's own words marked, the body's fragment.
r = es.search(index="crossdex", query={"match": {"title": "hippocampus"}},
              highlight={"fields": {"title": {}, "body": {}}}, size=5)
out["title_highlight"] = [
    ["<em>" in h["highlight"]["title"][0], "<em>" in h["highlight"]["body"][0],
     h["highlight"]["title"][0].replace("<em>", "").replace("</em>", "") == h["_source"]["title"]]
    for h in r["hits"]["hits"]
]

r = es.search(index="crossdex", query={"match": {"body": "hippocampus"}},
              highlight={"fields": {"body": {"fragment_size": 40}}}, size=10)
out["short_fragments"] = [
    [len(h["highlight"]["body"][0].replace("<em>", "").replace("</em>", "")), "<em>" in h["highlight"]["body"][0]]
    for h in r["hits"]["hits"]
]

src = es.search(index="crossdex", query={"match_all": {}}, size=1, source_includes=["title", "kind"])
out["source_filtered"] = sorted(src["hits"]["hits"][0]["_source"].keys())

# helpers.scan: scroll over everything.
out["scan"] = sum(1 for _ in helpers.scan(es, index="crossdex", query={"query": {"match_all": {}}}, size=500))


# The DSL's faceted search: terms and date histogram facets with a selected value.
class Records(FacetedSearch):
    using = es
    index = "crossdex"
    fields = ["title", "body"]
    facets = {
        "kind": TermsFacet(field="kind", size=20),
        "source": TermsFacet(field="source"),
        "month": DateHistogramFacet(field="created_at", calendar_interval="month"),
    }

    def highlight(self, search):
        return search.highlight("body")


fs = Records("", filters={"source": "xnat"})
response = fs.execute()
out["faceted"] = {
    "hits": response.hits.total.value,
    "kind": {k: n for (k, n, _) in response.facets.kind},
    "source": {k: n for (k, n, _) in response.facets.source},
    "month": sum(n for (_, n, _) in response.facets.month),
}

# opensearch-py speaks the same wire format.
out["opensearch"] = {
    "match": os_client.search(index="crossdex", body={"query": {"match": {"body": "hippocampus"}}})["hits"]["total"]["value"],
    "count": os_client.count(index="crossdex")["count"],
    "msearch": len(os_client.msearch(body=[{"index": "crossdex"}, {"query": {"match_all": {}}}])["responses"]),
}

# Errors in Elasticsearch's shape.
errors = {}
for name, call in {
    "missing index": lambda: es.search(index="nowhere", query={"match_all": {}}),
    "unknown query": lambda: es.search(index="crossdex", query={"geo_shape": {"x": {}}}),
}.items():
    try:
        call()
        errors[name] = None
    except Exception as e:  # noqa: BLE001 - the client's own error types
        errors[name] = [getattr(e, "status_code", None), getattr(e, "error", None)]
out["errors"] = errors
print(json.dumps(out))
