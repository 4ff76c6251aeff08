-- The measures' facts get the names they have in their own crate (DischargeFacts and
-- AdmissionFacts meant the opposite of intake's Admission/AdmissionFacts), and each
-- discharge records the channel its referral came through, for
-- careloop_referrals_received_total.
UPDATE {schema}.events SET aggregate_type = 'DischargeRecord'
    WHERE aggregate_type = 'DischargeFacts';
UPDATE {schema}.events SET aggregate_type = 'AdmissionRecord'
    WHERE aggregate_type = 'AdmissionFacts';
ALTER TABLE {schema}.measure_discharges ADD COLUMN channel text;
