-- Each peer's certification on the roster: a peer whose certification has expired is
-- not matched, and coordinators see the expiries coming.
ALTER TABLE {schema}.peers ADD COLUMN cert_issuer text;
ALTER TABLE {schema}.peers ADD COLUMN cert_number text;
ALTER TABLE {schema}.peers ADD COLUMN cert_expires_on date;
