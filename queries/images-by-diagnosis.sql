-- name: images-by-diagnosis
-- description: OMERO images per subject, with the diagnosis tranSMART holds and the subject's baseline CDR in REDCap
SELECT i.subject_id, count(*) AS images, array_to_string(array_sort(array_agg(DISTINCT i.project)), ', ') AS projects,
       min(d.value_text) AS diagnosis, min(c.value_text) AS baseline_cdr
FROM omero_images i
LEFT JOIN observations d ON d.subject_id = i.subject_id AND d.variable = 'NB:CLI:DX'
LEFT JOIN observations c ON c.subject_id = i.subject_id AND c.variable = 'cdr_global'
                        AND c.event = 'baseline_arm_1'
WHERE i.subject_id IS NOT NULL
GROUP BY i.subject_id
ORDER BY i.subject_id
