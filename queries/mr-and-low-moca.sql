-- name: mr-and-low-moca
-- description: Subjects with an MR session and a MoCA total below a threshold: lowest score, MR sessions, first and last MR date
-- param: threshold number 20 -- MoCA total below which a subject is listed
SELECT m.subject_id, m.lowest_moca, count(x.id) AS mr_sessions,
       min(x.date) AS first_mr, max(x.date) AS last_mr
FROM (SELECT subject_id, min(value_num) AS lowest_moca
      FROM observations
      WHERE variable = 'moca_total' AND value_num < $threshold AND subject_id IS NOT NULL
      GROUP BY subject_id) m
JOIN xnat_sessions x ON x.subject_id = m.subject_id AND x.modality = 'MR'
GROUP BY m.subject_id, m.lowest_moca
ORDER BY m.lowest_moca, m.subject_id
