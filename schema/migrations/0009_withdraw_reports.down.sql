-- 0009_withdraw_reports: undo. Undelivered withdrawals are lost: a
-- workflow whose start the API could not confirm may then run its job.
DELETE FROM agent_reports WHERE kind = 'withdraw';
DROP INDEX IF EXISTS agent_reports_withdraw_job_id_key;
ALTER TABLE agent_reports
    DROP CONSTRAINT agent_reports_kind_check,
    ADD CONSTRAINT agent_reports_kind_check CHECK (kind IN ('progress', 'finished')),
    DROP CONSTRAINT agent_reports_payload_check,
    ADD CONSTRAINT agent_reports_payload_check CHECK (
        (kind = 'progress' AND percent IS NOT NULL AND percent >= 0 AND percent <= 100 AND exit_code IS NULL) OR
        (kind = 'finished' AND exit_code IS NOT NULL AND exit_code >= -1 AND exit_code <= 255 AND percent IS NULL));
