-- The waitlist worker's queue (read_model::queue) after every change to the roster or
-- an assignment: only referrals waiting for a peer, so the look costs what the queue
-- holds, not every assignment ever made. Without it the look read the whole table,
-- and grew with it (0.18 ms at 2,000 assignments, 0.6 ms at 8,000, once a referral).
CREATE INDEX assignments_queue ON {schema}.assignments (waitlisted_at)
    WHERE waitlisted_at IS NOT NULL AND status IN ('waitlisted', 'matching', 'proposed');
