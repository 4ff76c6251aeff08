-- The peer who last held each referral: after a plan completes, that peer makes the
-- caring contacts the person agreed to, and reads the contact card to make them.
ALTER TABLE {schema}.referral_tasks ADD COLUMN last_peer_id text;
UPDATE {schema}.referral_tasks SET last_peer_id = peer_id WHERE peer_id IS NOT NULL;
