-- 0004_agent_reports: what the agents on jobs' machines report (progress,
-- the exit code), recorded before the API acknowledges it and kept until
-- the relay has delivered it to the job's workflow.

-- Ids come from a sequence of their own (not an identity column) because a
-- coalesced progress takes a new id each time it is replaced: the workflow
-- applies a progress only when its id is newer than the last one applied.
CREATE SEQUENCE agent_reports_id_seq AS bigint;

-- agent_reports holds at most one progress row per job (the latest; once
-- delivered it stays, holding the job's progress rate limit in not_before,
-- until pruned) and at most one finished row per job (the first exit code
-- reported; later ones are ignored). A row is undelivered while
-- delivered_at is NULL; it is due once not_before has passed.
CREATE TABLE agent_reports (
    id           bigint           NOT NULL DEFAULT nextval('agent_reports_id_seq'),
    job_id       uuid             NOT NULL,
    kind         text             NOT NULL,
    percent      double precision NULL,
    message      text             NOT NULL DEFAULT '',
    exit_code    integer          NULL,
    received_at  timestamptz      NOT NULL,
    -- When the relay may deliver it: on receipt; while claimed, the
    -- claim's end (a relay that died lets it go then); after a failed
    -- delivery, the retry; for the next progress of a job, its last
    -- delivery plus the progress interval.
    not_before   timestamptz      NOT NULL,
    -- The relay claim holding it, NULL when none.
    claim        text             NULL,
    -- Failed deliveries since the last success.
    attempts     integer          NOT NULL DEFAULT 0,
    last_error   text             NULL,
    -- Delivered (or dropped, with a note saying why) at; NULL: pending.
    delivered_at timestamptz      NULL,
    note         text             NULL,

    CONSTRAINT agent_reports_pkey PRIMARY KEY (id),
    -- No foreign key to jobs: a report whose job row is missing is kept
    -- and the relay drops it when its workflow is unknown; pruning removes
    -- every row in time.
    CONSTRAINT agent_reports_kind_check CHECK (kind IN ('progress', 'finished')),
    CONSTRAINT agent_reports_payload_check CHECK (
        (kind = 'progress' AND percent IS NOT NULL AND percent >= 0 AND percent <= 100 AND exit_code IS NULL) OR
        (kind = 'finished' AND exit_code IS NOT NULL AND exit_code >= -1 AND exit_code <= 255 AND percent IS NULL)),
    CONSTRAINT agent_reports_message_check CHECK (length(message) <= 1000),
    CONSTRAINT agent_reports_attempts_check CHECK (attempts >= 0)
);

ALTER SEQUENCE agent_reports_id_seq OWNED BY agent_reports.id;

COMMENT ON TABLE agent_reports IS 'Agent reports (progress, exit codes) recorded for delivery to job workflows.';

-- One progress row and one finished row per job: progress is upserted
-- (the latest wins), a second finished is ignored.
CREATE UNIQUE INDEX agent_reports_progress_job_id_key ON agent_reports (job_id) WHERE kind = 'progress';
CREATE UNIQUE INDEX agent_reports_finished_job_id_key ON agent_reports (job_id) WHERE kind = 'finished';
-- The relay claims due rows of each kind in order, and sleeps until the
-- earliest not_before.
CREATE INDEX agent_reports_due_idx ON agent_reports (kind, not_before) WHERE delivered_at IS NULL;
-- Pruning deletes the oldest delivered rows.
CREATE INDEX agent_reports_delivered_at_idx ON agent_reports (delivered_at) WHERE delivered_at IS NOT NULL;
