-- 0007_rate_limits: per-user limits on submit and cancel, shared by every
-- API replica.

-- rate_limits is one token bucket per key ("<action>:<user id>"): it holds
-- up to a limit of tokens, refilled at limit per period; each request takes
-- one, and one that finds none is refused with 429. The bucket is updated
-- in one statement under the row's lock, so replicas never count twice or
-- lose a take. Times are the database's clock, the same for all replicas.
-- Rows stay as long as the user acts (two per user at most); a bucket idle
-- for a period is full again, so deleting old rows changes nothing.
CREATE TABLE rate_limits (
    key        text             NOT NULL,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL,
    -- whether the last take found a token
    granted    boolean          NOT NULL,

    CONSTRAINT rate_limits_pkey PRIMARY KEY (key),
    CONSTRAINT rate_limits_key_check CHECK (length(key) BETWEEN 1 AND 200)
);

COMMENT ON TABLE rate_limits IS 'Token buckets of the per-user rate limits (submit, cancel).';
