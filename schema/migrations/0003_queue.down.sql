-- 0003_queue: undo. Waiting jobs' workflows re-enqueue themselves.
DROP TABLE IF EXISTS provision_outcomes;
DROP TABLE IF EXISTS job_queue;
