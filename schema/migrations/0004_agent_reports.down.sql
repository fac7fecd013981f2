-- 0004_agent_reports: undo. Undelivered reports are lost; the workflows'
-- safety timers and the machine watchers still end their jobs.
DROP TABLE IF EXISTS agent_reports;
DROP SEQUENCE IF EXISTS agent_reports_id_seq;
