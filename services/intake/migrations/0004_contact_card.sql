-- Which peer holds each referral, so only that peer (or a coordinator) reads the
-- person's contact details.
ALTER TABLE {schema}.referral_tasks ADD COLUMN peer_id text;
