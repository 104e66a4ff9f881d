-- name: search-records
-- description: Full-text search joined with the records it found, best first
-- param: words text -- what to search for, in the search syntax of `crossdex search`
-- param: limit integer 20 -- maximum number of hits
SELECT round(s.score, 3) AS score, r.source, r.kind, r.subject_key, r.title, s.snippet
FROM search($words, $limit) s
JOIN records r ON r.id = s.id
ORDER BY s.score DESC, r.id
