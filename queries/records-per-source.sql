-- name: records-per-source
-- description: How many records and observations each source holds, by kind
SELECT r.source, r.system, r.kind, count(*) AS records, sum(o.n) AS observations
FROM records r
LEFT JOIN (SELECT record_id, count(*) AS n FROM observations GROUP BY record_id) o
  ON o.record_id = r.id
GROUP BY r.source, r.system, r.kind
ORDER BY r.source, r.kind
