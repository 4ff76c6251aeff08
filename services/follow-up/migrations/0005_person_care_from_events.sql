-- plans_by_person and person_admissions were written by the consumers directly; they
-- are now the PersonCare events of the readmission process manager (its state needs
-- no table). Existing rows become those events, once, in time order; the tables go.
INSERT INTO {schema}.events (aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata)
SELECT 'PersonCare', f.person_ref,
       row_number() OVER (PARTITION BY f.person_ref ORDER BY f.at, f.kind, f.id),
       f.event_type, '1', f.payload, '{"correlation_id": "migration 0005"}'::json
FROM (
    SELECT p.person_ref, p.discharged_at AS at, 0 AS kind, p.referral_id AS id,
           'PlanOfPersonNoted' AS event_type,
           json_build_object('PlanOfPersonNoted', json_build_object(
               'referral_id', p.referral_id,
               'discharged_at', to_char(p.discharged_at AT TIME ZONE 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))) AS payload
    FROM {schema}.plans_by_person p
    UNION ALL
    SELECT a.person_ref, a.admitted_at, 1, a.admission_id, 'AdmissionOfPersonNoted',
           json_build_object('AdmissionOfPersonNoted', json_build_object(
               'admission_id', a.admission_id,
               'admitted_at', to_char(a.admitted_at AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
    FROM {schema}.person_admissions a
) f;

DROP TABLE {schema}.plans_by_person;
DROP TABLE {schema}.person_admissions;
