-- name: experiments-per-subject
-- description: eLabFTW samples of each subject and the experiments that link to them
SELECT i.subject_id, count(DISTINCT i.id) AS samples, count(DISTINCT e.id) AS experiments,
       CASE WHEN count(e.id) > 0
            THEN array_to_string(array_sort(array_agg(DISTINCT e.title)), '; ') END AS experiment_titles
FROM records i
LEFT JOIN records e ON e.system = 'elabftw' AND e.kind = 'experiment'
                   AND e.attributes LIKE concat('%"', i.id, '"%')
WHERE i.system = 'elabftw' AND i.kind = 'item' AND i.subject_id IS NOT NULL
GROUP BY i.subject_id
ORDER BY experiments DESC, i.subject_id
