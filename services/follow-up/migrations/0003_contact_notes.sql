-- Peers read back the notes of their own contacts.
ALTER TABLE {schema}.contacts ADD COLUMN notes text;
