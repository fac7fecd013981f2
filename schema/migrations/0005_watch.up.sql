-- 0005_watch: the machines the per-provider watchers follow, and their
-- sweeps. A row is written when a machine is provisioned, when the
-- watcher tells the workflow of a change, and when it is torn down: never
-- per look, so a running job costs nothing while it merely runs.

CREATE TABLE machine_watch (
    job_id      uuid        NOT NULL,
    workflow_id text        NOT NULL,
    provider    text        NOT NULL,
    -- The worker host that runs the machine (local provider); '' for clouds.
    host        text        NOT NULL DEFAULT '',
    machine_id  text        NOT NULL,
    -- The last state the watcher told the workflow; '' before the first.
    state       text        NOT NULL DEFAULT '',
    log_offset  bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,

    CONSTRAINT machine_watch_pkey PRIMARY KEY (job_id),
    CONSTRAINT machine_watch_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE,
    CONSTRAINT machine_watch_log_offset_check CHECK (log_offset >= 0)
);

COMMENT ON TABLE machine_watch IS 'Machines followed by their provider''s watcher, one per job.';

CREATE INDEX machine_watch_provider_idx ON machine_watch (provider, host);

-- One row per watcher (provider and host): when it last looked at all its
-- machines. A workflow's safety check trusts the watcher while this is
-- recent and asks the provider itself otherwise.
CREATE TABLE watch_sweeps (
    provider text        NOT NULL,
    host     text        NOT NULL DEFAULT '',
    swept_at timestamptz NOT NULL,

    CONSTRAINT watch_sweeps_pkey PRIMARY KEY (provider, host)
);
