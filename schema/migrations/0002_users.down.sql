-- 0002_users: undo. Drops every account; jobs keep their owner ids.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_owner_id_fkey;
DROP TABLE IF EXISTS users;
