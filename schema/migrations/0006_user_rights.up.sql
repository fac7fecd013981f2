-- 0006_user_rights: who may run jobs on the worker's host, and invitations
-- to register when registration is by invitation (GPUFLOW_REGISTRATION=invite).

-- can_run_local lets an ordinary account run jobs on the local provider
-- (the worker's own host). Superusers always may; others only with this
-- flag (set by a superuser: PATCH /users/{id}) or when the operator lists
-- them in GPUFLOW_LOCAL_USERS. Existing accounts start without it.
ALTER TABLE users ADD COLUMN can_run_local boolean NOT NULL DEFAULT false;

-- invitations is one row per invitation code a superuser made. Only the
-- SHA-256 of the code is stored: the code itself is shown once, to its
-- maker. A code registers one account, before it expires, and only for
-- its email when it names one.
CREATE TABLE invitations (
    id          uuid        NOT NULL,
    code_hash   bytea       NOT NULL,
    -- the only address it registers; NULL: any
    email       text,
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    used_by     uuid,

    CONSTRAINT invitations_pkey PRIMARY KEY (id),
    CONSTRAINT invitations_code_hash_key UNIQUE (code_hash),
    CONSTRAINT invitations_code_hash_check CHECK (length(code_hash) = 32),
    CONSTRAINT invitations_email_check CHECK (email IS NULL OR email = lower(email)),
    CONSTRAINT invitations_used_check CHECK ((used_at IS NULL) = (used_by IS NULL)),
    -- Deleting an account keeps the record of the invitations it made or used.
    CONSTRAINT invitations_created_by_fkey FOREIGN KEY (created_by) REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT invitations_used_by_fkey FOREIGN KEY (used_by) REFERENCES users (id) ON DELETE SET NULL
);

COMMENT ON TABLE invitations IS 'Invitation codes (their SHA-256) for GPUFLOW_REGISTRATION=invite.';
