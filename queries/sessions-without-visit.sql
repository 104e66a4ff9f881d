-- name: sessions-without-visit
-- description: Imaging sessions with no REDCap assessment of the same subject within a window of days
-- param: days number 90 -- how many days apart a session and a visit may be
SELECT x.subject_id, x.label AS session, x.modality, x.date
FROM xnat_sessions x
WHERE x.subject_id IS NOT NULL AND x.date IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM observations v
    WHERE v.system = 'redcap' AND v.variable = 'assessment_date'
      AND v.subject_id = x.subject_id
      AND abs(date_part('epoch', v.value_date) - date_part('epoch', x.date)) <= $days * 86400
  )
ORDER BY x.date, x.subject_id
