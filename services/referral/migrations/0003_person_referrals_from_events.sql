-- person_referrals and revoked_consents were written by the intake consumer directly;
-- they are now the PersonReferrals events of the consent process manager (its state
-- needs no table). Existing rows become those events, once; the tables go.
INSERT INTO {schema}.events (aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata)
SELECT 'PersonReferrals', p.person_ref,
       row_number() OVER (PARTITION BY p.person_ref ORDER BY p.submitted_at, p.referral_id),
       'ReferralOfPersonNoted', '1',
       json_build_object('ReferralOfPersonNoted', json_build_object(
           'referral_id', p.referral_id,
           'submitted_at', to_char(p.submitted_at AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))),
       '{"correlation_id": "migration 0003"}'::json
FROM {schema}.person_referrals p;

INSERT INTO {schema}.events (aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata)
SELECT 'PersonReferrals', r.person_ref,
       COALESCE((SELECT count(*) FROM {schema}.person_referrals p
                 WHERE p.person_ref = r.person_ref), 0) + 1,
       'ConsentRevocationNoted', '1',
       json_build_object('ConsentRevocationNoted', json_build_object(
           'revoked_at', to_char(r.revoked_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'reason', r.reason)),
       '{"correlation_id": "migration 0003"}'::json
FROM {schema}.revoked_consents r;

DROP TABLE {schema}.person_referrals;
DROP TABLE {schema}.revoked_consents;
