-- 0001_jobs: undo. Drops every job, event and log line.
DROP TABLE IF EXISTS job_logs;
DROP TABLE IF EXISTS job_events;
DROP TABLE IF EXISTS jobs;
