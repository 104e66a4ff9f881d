-- name: subject-overview
-- description: Per subject key: how many records and values each source holds on it
SELECT r.subject_key, r.source, count(DISTINCT r.id) AS records, count(o.variable) AS observations,
       min(r.title) AS example
FROM records r
LEFT JOIN observations o ON o.record_id = r.id
WHERE r.subject_key IS NOT NULL
GROUP BY r.subject_key, r.source
ORDER BY r.subject_key, r.source
