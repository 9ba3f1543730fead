-- Roles of the dev cluster, applied by deploy/dev/services.sh on every `up` and by the
-- postgres image of docker-compose.yml on its first start. Idempotent.

-- The deployment's role: superuser, so flusso may create publications and slots itself.
ALTER ROLE flusso WITH LOGIN REPLICATION SUPERUSER PASSWORD 'flusso';

-- The "not privileged" path: may log in and replicate, may not create databases, roles,
-- schemas or publications, and owns nothing; tests grant it table reads
-- (internal/testenv.GrantRead).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'flusso_unpriv') THEN
    CREATE ROLE flusso_unpriv;
  END IF;
END $$;
ALTER ROLE flusso_unpriv WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD 'flusso';
-- PostgreSQL 15 already denies PUBLIC these; stated so an older template cannot differ.
REVOKE CREATE ON DATABASE postgres FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
