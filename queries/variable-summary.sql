-- name: variable-summary
-- description: Every variable of every source with how often it is filled and its numeric range
SELECT source, variable, count(*) AS values, count(value_num) AS numeric, count(value_date) AS dates,
       min(value_num) AS min, max(value_num) AS max, round(avg(value_num), 2) AS mean
FROM observations
GROUP BY source, variable
ORDER BY source, variable
