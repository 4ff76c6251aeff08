-- Caring contacts after a completed plan: each one of the series is a check-in named
-- caring_1, caring_2, … in the checkpoints table (so the plan's next due contact and
-- the worklist's order need nothing new); the plan row says whether the series runs.
ALTER TABLE {schema}.followups ADD COLUMN caring_state text;
CREATE INDEX followups_caring ON {schema}.followups (next_due_at) WHERE caring_state = 'running';
