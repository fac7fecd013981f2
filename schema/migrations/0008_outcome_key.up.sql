-- 0008_outcome_key: a provisioning outcome written twice (an activity
-- retried after its write committed) is recorded once: the workflow gives
-- each outcome a key per job, attempt and outcome. Rows without a key (and
-- those from before) are unaffected: NULLs never conflict.

ALTER TABLE provision_outcomes ADD COLUMN key text;
ALTER TABLE provision_outcomes ADD CONSTRAINT provision_outcomes_key_key UNIQUE (key);

COMMENT ON COLUMN provision_outcomes.key IS 'Idempotency key of the outcome (job, attempt, outcome); NULL: none.';
