-- 0001_jobs: jobs, their events and their output.

-- jobs is one row per submitted job: what was asked (spec) and where it
-- stands. The workflow writes every change through JobStore.ApplyUpdate,
-- which numbers them per job (last_seq).
CREATE TABLE jobs (
    id              uuid             NOT NULL,
    -- The submitting user; users arrive in a later migration, which adds
    -- the foreign key. NULL for jobs submitted without authentication.
    owner_id        uuid             NULL,
    -- spec->>'name', copied out for listings.
    name            text             NOT NULL DEFAULT '',
    status          text             NOT NULL,
    spec            jsonb            NOT NULL,
    -- Where the job runs; NULL until a provider was chosen.
    provider        text             NULL,
    machine_id      text             NULL,
    price_per_hour  double precision NOT NULL DEFAULT 0,
    exit_code       integer          NULL,
    error           text             NULL,
    -- Every try, as gpuflow.Attempt objects.
    attempts        jsonb            NOT NULL DEFAULT '[]',
    workflow_id     text             NOT NULL,
    run_id          text             NULL,
    -- The client's Idempotency-Key, unique per owner (see the index below).
    idempotency_key text             NULL,
    -- The seq of the last update applied; updates with seq <= last_seq are
    -- replays and change nothing.
    last_seq        integer          NOT NULL DEFAULT 0,
    created_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL,
    started_at      timestamptz      NULL,
    finished_at     timestamptz      NULL,

    CONSTRAINT jobs_pkey PRIMARY KEY (id),
    CONSTRAINT jobs_workflow_id_key UNIQUE (workflow_id),
    -- The values of gpuflow.AllStatuses.
    CONSTRAINT jobs_status_check CHECK (status IN (
        'queued', 'scheduling', 'provisioning', 'running',
        'cancelling', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT jobs_spec_check CHECK (jsonb_typeof(spec) = 'object'),
    CONSTRAINT jobs_attempts_check CHECK (jsonb_typeof(attempts) = 'array'),
    CONSTRAINT jobs_price_per_hour_check CHECK (price_per_hour >= 0),
    CONSTRAINT jobs_last_seq_check CHECK (last_seq >= 0)
);

COMMENT ON TABLE jobs IS 'Submitted GPU jobs and their current state.';

-- Listings go newest first and page by (created_at, id): one index per
-- filter the API offers, each ending in the paging key.
CREATE INDEX jobs_created_at_id_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_owner_id_created_at_id_idx ON jobs (owner_id, created_at DESC, id DESC);
CREATE INDEX jobs_status_created_at_id_idx ON jobs (status, created_at DESC, id DESC);
CREATE INDEX jobs_provider_created_at_id_idx ON jobs (provider, created_at DESC, id DESC);

-- A retried submission with the same key finds the first job instead of
-- creating a second one. (NULL owners never collide: NULLs are distinct.)
CREATE UNIQUE INDEX jobs_owner_id_idempotency_key_key ON jobs (owner_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- job_events is the event feed: every applied update, in order. id is the
-- feed-wide seq clients resume from (?since=); job_seq the update's seq
-- within its job. The store assigns ids in commit order, so a reader that
-- has seen id N has seen every committed event below N.
CREATE TABLE job_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    job_id     uuid        NOT NULL,
    job_seq    integer     NOT NULL,
    type       text        NOT NULL,
    status     text        NULL,
    -- The job's provider after the update.
    provider   text        NULL,
    data       jsonb       NULL,
    created_at timestamptz NOT NULL,

    CONSTRAINT job_events_pkey PRIMARY KEY (id),
    CONSTRAINT job_events_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE,
    -- Each (job, seq) is applied once, even when an activity is replayed.
    CONSTRAINT job_events_job_id_job_seq_key UNIQUE (job_id, job_seq),
    CONSTRAINT job_events_job_seq_check CHECK (job_seq > 0)
);

COMMENT ON TABLE job_events IS 'Applied job updates; id is the feed-wide seq.';

-- job_logs holds a job's output as chunks keyed by their byte offset in the
-- whole output. A chunk re-sent after a retry lands on the same key and is
-- kept as first written.
CREATE TABLE job_logs (
    job_id     uuid        NOT NULL,
    "offset"   bigint      NOT NULL,
    data       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT job_logs_pkey PRIMARY KEY (job_id, "offset"),
    CONSTRAINT job_logs_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE,
    CONSTRAINT job_logs_offset_check CHECK ("offset" >= 0)
);

COMMENT ON TABLE job_logs IS 'Job output, in chunks keyed by byte offset.';
