-- name: subject-timeline
-- description: One subject's dated events in every source, in order: visits, sessions, images, samples
-- param: subject text subj:INT_0003 -- the subject id (subj:...)
SELECT at, source, what FROM (
  SELECT coalesce(created_at, modified_at) AS at, source, concat(kind, ': ', title) AS what
  FROM records WHERE subject_id = $subject AND kind <> 'scan'
  UNION ALL
  SELECT value_date AS at, source, concat(coalesce(event, ''), ' ', coalesce(label, variable)) AS what
  FROM observations WHERE subject_id = $subject AND value_date IS NOT NULL
) WHERE at IS NOT NULL
ORDER BY at, source, what
