-- name: nfl-vs-imaging
-- description: Plasma NfL in tranSMART against the number of XNAT sessions of each subject
SELECT n.subject_id, n.visits_with_nfl, n.mean_nfl, coalesce(s.sessions, 0) AS xnat_sessions
FROM (SELECT subject_id, count(*) AS visits_with_nfl, round(avg(value_num), 1) AS mean_nfl
      FROM observations
      WHERE variable = 'NB:PLA:NFL' AND subject_id IS NOT NULL
      GROUP BY subject_id) n
LEFT JOIN (SELECT subject_id, count(*) AS sessions FROM xnat_sessions GROUP BY subject_id) s
  ON s.subject_id = n.subject_id
ORDER BY n.mean_nfl DESC, n.subject_id
