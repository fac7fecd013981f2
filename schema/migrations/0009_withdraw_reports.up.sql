-- 0009_withdraw_reports: agent_reports also holds the API's withdrawals of
-- submissions it could not confirm (the workflow start and the look-up
-- after it both failed, so the API answered 503). The relay delivers one
-- as the workflow's cancel signal: a workflow that did start never runs
-- the job; one that never started is unknown to Temporal and the row is
-- dropped with a note. message is the reason; percent and exit_code are
-- NULL.
ALTER TABLE agent_reports
    DROP CONSTRAINT agent_reports_kind_check,
    ADD CONSTRAINT agent_reports_kind_check CHECK (kind IN ('progress', 'finished', 'withdraw')),
    DROP CONSTRAINT agent_reports_payload_check,
    ADD CONSTRAINT agent_reports_payload_check CHECK (
        (kind = 'progress' AND percent IS NOT NULL AND percent >= 0 AND percent <= 100 AND exit_code IS NULL) OR
        (kind = 'finished' AND exit_code IS NOT NULL AND exit_code >= -1 AND exit_code <= 255 AND percent IS NULL) OR
        (kind = 'withdraw' AND percent IS NULL AND exit_code IS NULL));

-- One withdraw per job: a second is ignored.
CREATE UNIQUE INDEX agent_reports_withdraw_job_id_key ON agent_reports (job_id) WHERE kind = 'withdraw';
