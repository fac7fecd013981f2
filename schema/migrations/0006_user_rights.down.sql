DROP TABLE invitations;
ALTER TABLE users DROP COLUMN can_run_local;
