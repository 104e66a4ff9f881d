-- name: completeness-matrix
-- description: Subject by system: which systems hold each subject, and how many
SELECT subject_id,
       max(CASE WHEN system = 'xnat' THEN 1 ELSE 0 END) AS xnat,
       max(CASE WHEN system = 'redcap' THEN 1 ELSE 0 END) AS redcap,
       max(CASE WHEN system = 'omero' THEN 1 ELSE 0 END) AS omero,
       max(CASE WHEN system = 'transmart' THEN 1 ELSE 0 END) AS transmart,
       max(CASE WHEN system = 'elabftw' THEN 1 ELSE 0 END) AS elabftw,
       count(DISTINCT system) AS systems
FROM records
WHERE subject_id IS NOT NULL
GROUP BY subject_id
ORDER BY systems DESC, subject_id
