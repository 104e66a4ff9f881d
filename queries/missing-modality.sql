-- name: missing-modality
-- description: Subjects imaged in XNAT who have no session of a given modality (e.g. no amyloid PET yet)
-- param: modality text PET -- the modality the subjects lack (MR, PET, CT)
SELECT x.subject_id, count(*) AS sessions, array_to_string(array_sort(array_agg(DISTINCT x.modality)), ', ') AS modalities
FROM xnat_sessions x
WHERE x.subject_id IS NOT NULL
GROUP BY x.subject_id
HAVING sum(CASE WHEN x.modality = $modality THEN 1 ELSE 0 END) = 0
ORDER BY x.subject_id
