-- referral_tasks was written by the consumers directly; it is now the `tasks` read
-- model of the ReferralTask events (careloop replay tasks). Existing rows become
-- those events, once, so a replay rebuilds them, and the closed loop's outbox starts
-- after them, so nothing is sent to a hospital twice.
INSERT INTO {schema}.events (aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata)
SELECT 'ReferralTask', t.referral_id, 1, 'TaskStatusChanged', '1',
       json_build_object('TaskStatusChanged', json_build_object(
           'change', json_build_object(
               'facility', t.facility, 'person_ref', t.person_ref, 'status', t.status,
               'reason', t.reason,
               'occurred_at', to_char(t.last_updated AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
           'cause', 'migration 0006')),
       '{"correlation_id": "migration 0006"}'::json
FROM {schema}.referral_tasks t;

INSERT INTO {schema}.events (aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata)
SELECT 'ReferralTask', t.referral_id, 2, 'TaskHolderChanged', '1',
       json_build_object('TaskHolderChanged', json_build_object(
           'facility', t.facility, 'peer_id', t.peer_id, 'cause', 'migration 0006 holder')),
       '{"correlation_id": "migration 0006"}'::json
FROM {schema}.referral_tasks t
WHERE t.peer_id IS NOT NULL;

INSERT INTO {schema}.cursors (name, txid, position)
SELECT 'projection:webhook-outbox', pg_current_xact_id(), COALESCE(max(position), 0)
FROM {schema}.events
ON CONFLICT (name) DO NOTHING;
