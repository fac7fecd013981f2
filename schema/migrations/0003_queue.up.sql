-- 0003_queue: the durable queue of jobs waiting for capacity, and the
-- provisioning outcomes the scheduler learns from.

-- job_queue holds a job from the moment it needs capacity until its
-- machine exists (or it leaves: cancelled, failed). A waiting entry
-- (admitted = false) is in line by priority, then submitted_at; an
-- admitted one holds units of its offer's stock (offer_key) and its price
-- counts towards its owner's spend until the machine is provisioned.
CREATE TABLE job_queue (
    job_id         uuid             NOT NULL,
    owner_id       uuid             NULL,
    workflow_id    text             NOT NULL,
    priority       integer          NOT NULL,
    submitted_at   timestamptz      NOT NULL,
    spec           jsonb            NOT NULL,
    -- Offer keys the job must not use: {"key": {"reason": ..., "at": ...}}.
    blocked        jsonb            NOT NULL DEFAULT '{}',
    admitted       boolean          NOT NULL DEFAULT false,
    admitted_at    timestamptz      NULL,
    decision       jsonb            NULL,
    offer_key      text             NULL,
    units          integer          NOT NULL DEFAULT 0,
    price_per_hour double precision NOT NULL DEFAULT 0,
    -- Why the job waits, as the last pass saw it.
    reason         text             NOT NULL DEFAULT '',
    enqueued_at    timestamptz      NOT NULL,

    CONSTRAINT job_queue_pkey PRIMARY KEY (job_id),
    CONSTRAINT job_queue_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE,
    CONSTRAINT job_queue_blocked_check CHECK (jsonb_typeof(blocked) = 'object'),
    CONSTRAINT job_queue_admitted_check CHECK (NOT admitted OR (decision IS NOT NULL AND admitted_at IS NOT NULL)),
    CONSTRAINT job_queue_units_check CHECK (units >= 0),
    CONSTRAINT job_queue_price_per_hour_check CHECK (price_per_hour >= 0)
);

COMMENT ON TABLE job_queue IS 'Jobs waiting for capacity, and admitted jobs holding it until provisioned.';

CREATE INDEX job_queue_order_idx ON job_queue (priority DESC, submitted_at, job_id) WHERE NOT admitted;

-- provision_outcomes: what each provisioning attempt (and spot run) came
-- to, for the scheduler's decayed statistics. Old rows weigh nothing;
-- they may be deleted at will.
CREATE TABLE provision_outcomes (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    provider    text        NOT NULL,
    offer_key   text        NOT NULL,
    outcome     text        NOT NULL,
    duration_ms bigint      NOT NULL,
    at          timestamptz NOT NULL,

    CONSTRAINT provision_outcomes_pkey PRIMARY KEY (id),
    CONSTRAINT provision_outcomes_outcome_check CHECK (outcome IN ('started', 'no_capacity', 'failed', 'preempted', 'spot_finished')),
    CONSTRAINT provision_outcomes_duration_ms_check CHECK (duration_ms >= 0)
);

COMMENT ON TABLE provision_outcomes IS 'Provisioning outcomes per provider and offer, for scheduling statistics.';

CREATE INDEX provision_outcomes_at_idx ON provision_outcomes (at);
