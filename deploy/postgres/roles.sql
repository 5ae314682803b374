-- Anning workbench: PostgreSQL roles, database and default privileges (run once per cluster, again any time: idempotent).
--
-- Run as a PostgreSQL superuser, BEFORE the first migration, then migrate as the owner and apply grants.sql:
--
--   runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -v db=anning \
--       -v owner_password=... -v ingest_password=... -v portal_password=... -f roles.sql
--   ANNING_DB_URL=postgresql+psycopg://anning_owner:...@127.0.0.1/anning anning db init
--   runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d anning -f grants.sql
--
-- deploy/install.sh --with-postgres does exactly this (docs/deploy.md). psql variables (all optional):
--   db              database name                              (default anning)
--   owner_role      owns the schema, runs migrations (anning db init), backups and their verification
--   ingest_role     the gateway (anning ingest run): measurements, health, alarms, dispatch; no user table
--   portal_role     the portal and its report schedule (anning serve): reads, plus the portal's own writes
--   *_password      sets the role's password (scram-sha-256); leave out for peer/certificate authentication
--
-- Least privilege: only the owner may change the schema (CREATE in the schema, ALTER/DROP of its tables);
-- PUBLIC gets nothing on the database. Default privileges make every table a later migration creates readable
-- by the portal (its pages read everything) and its id sequences usable by the two application roles; the
-- table-by-table write grants of the application roles are in grants.sql, which is re-applied after every
-- migration (install.sh does). The ingest role gets no default privilege on tables: a table it needs must be
-- granted in grants.sql, so a new table (with users, say) is never readable by the gateway by accident.

\set ON_ERROR_STOP on
\if :{?db}
\else
  \set db anning
\endif
\if :{?owner_role}
\else
  \set owner_role anning_owner
\endif
\if :{?ingest_role}
\else
  \set ingest_role anning_ingest
\endif
\if :{?portal_role}
\else
  \set portal_role anning_portal
\endif

-- roles: LOGIN, nothing else; the owner may create databases (scratch databases of `anning backup verify`,
-- and `anning backup restore --to` a new database)
SELECT format('CREATE ROLE %I LOGIN', :'owner_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'ingest_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'ingest_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'portal_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'portal_role') \gexec
ALTER ROLE :"owner_role" LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE :"ingest_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE :"portal_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
\if :{?owner_password}
  ALTER ROLE :"owner_role" PASSWORD :'owner_password';
\endif
\if :{?ingest_password}
  ALTER ROLE :"ingest_role" PASSWORD :'ingest_password';
\endif
\if :{?portal_password}
  ALTER ROLE :"portal_role" PASSWORD :'portal_password';
\endif
-- a runaway query of a page must not hold the store; the gateway's COPY batches are small
ALTER ROLE :"portal_role" SET statement_timeout = '5min';
ALTER ROLE :"ingest_role" SET statement_timeout = '2min';

-- the database, owned by the owner role; PUBLIC may not even connect
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L TEMPLATE template0', :'db', :'owner_role', 'UTF8')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"owner_role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
-- TEMPORARY: the gateway stages measurements in a temporary table (COPY, then one upsert)
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"ingest_role", :"portal_role";

\connect :"db"
-- the schema: only its owner creates objects in it (PostgreSQL < 15 let PUBLIC create in public)
ALTER SCHEMA public OWNER TO :"owner_role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"ingest_role", :"portal_role";

-- what the owner's future migrations create
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public GRANT SELECT ON TABLES TO :"portal_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT USAGE ON SEQUENCES TO :"ingest_role", :"portal_role";
