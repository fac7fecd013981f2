-- 0002_users: accounts, and the owner of every job.

-- users is one row per account (the fastapi-users shape the earlier system
-- had). Emails are stored lower-cased and unique regardless of case.
CREATE TABLE users (
    id              uuid        NOT NULL,
    email           text        NOT NULL,
    -- bcrypt hash; the password itself is never stored.
    hashed_password text        NOT NULL,
    -- An inactive account can neither log in nor use a token issued before.
    is_active       boolean     NOT NULL DEFAULT true,
    is_superuser    boolean     NOT NULL DEFAULT false,
    is_verified     boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_check CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    CONSTRAINT users_hashed_password_check CHECK (hashed_password <> '')
);

COMMENT ON TABLE users IS 'API accounts; jobs.owner_id points here.';

-- One account per address in any case (the check keeps email lower-cased;
-- the index on lower(email) also serves case-insensitive look-ups).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Every job belongs to a user. ON DELETE SET NULL: deleting an account
-- (say, to erase a person's data) must not be blocked by, nor delete, the
-- jobs that person ran. Those jobs stay, ownerless, visible to superusers
-- only (a NULL owner matches no user); the owner's id also stays in the
-- workflow's GpuflowOwner search attribute and history in Temporal.
-- Jobs from before this migration were all submitted without
-- authentication and have no owner, so the constraint validates at once.
ALTER TABLE jobs ADD CONSTRAINT jobs_owner_id_fkey
    FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE SET NULL;
