-- name: low-moca
-- description: Subjects with a MoCA total below a threshold, at any visit, lowest first
-- param: threshold number 26 -- MoCA total below which a subject is listed (26 is the usual cut-off)
SELECT subject_key, event, value_num AS moca, source
FROM observations
WHERE variable = 'moca_total' AND value_num < $threshold
ORDER BY moca, subject_key, event
