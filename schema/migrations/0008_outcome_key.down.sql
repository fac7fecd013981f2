ALTER TABLE provision_outcomes DROP CONSTRAINT IF EXISTS provision_outcomes_key_key;
ALTER TABLE provision_outcomes DROP COLUMN IF EXISTS key;
