-- A control id reused for a different message is refused instead of answered with
-- the earlier message's ACK.
ALTER TABLE {schema}.hl7_messages ADD COLUMN message_hash text;
