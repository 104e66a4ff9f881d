-- name: sync-history
-- description: The latest sync runs, newest first, with what they changed
-- param: limit integer 20 -- how many runs to show
SELECT source, mode, status, started_at, finished_at - started_at AS duration,
       added, updated, unchanged, deleted, rejected, error
FROM sync_runs
ORDER BY started_at DESC, run_id DESC
LIMIT $limit
