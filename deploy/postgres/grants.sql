-- Anning workbench: what each application role may do, table by table. Re-apply after every migration
-- (`anning db init`): it is idempotent and authoritative (it first takes every table privilege of the two
-- application roles away, then grants this list, in one transaction, so no service sees a half state).
--
--   runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d anning -f grants.sql
--   (or as the owner role; psql variables owner_role, ingest_role, portal_role as in roles.sql)
--
-- Found by reading every insert/update/delete of anning_lib and by running the real gateway, portal and report
-- schedule under these roles (tests/test_deploy.py proves the main ones with the library itself):
--
-- ingest role: `anning ingest run [--dispatch] [--forecast]`
--   * at start, init_db: schema check (alembic_version), the park model's assets upserted by natural key
--     (enterprise, building, device, point; role rows if missing); nothing is ever deleted;
--   * measurements (COPY into a temporary table, then INSERT ... ON CONFLICT DO UPDATE), ingest_health, and the
--     15-minute rollups of the last half hour every minute;
--   * with --forecast: the day-ahead forecasts (INSERT ... ON CONFLICT DO UPDATE into forecast);
--   * the alarm service: alarm, alarm_event, notification; reads alarm_rule;
--   * with --dispatch: the MPC reads measurements, rollups and forecasts and writes dispatch_schedule,
--     dispatch_command and audit_log (every setpoint is audited);
--   * no access at all to app_user, work orders, reports, carbon accounts; no DELETE anywhere.
-- portal role: `anning serve` (pages, log-in, /healthz self-monitoring alarms, the monthly report schedule)
--   * reads every table (also through the default privileges of roles.sql);
--   * app_user (users, log-in failures, lock-out), audit_log, alarm/alarm_event (acknowledge, shelve, report and
--     self-monitoring alarms), work_order/work_order_comment, report_run, report_definition (custom reports,
--     also deleted), carbon_run/carbon_line (a statement stores its month's account, replacing the old one),
--     point (admin: add a point, set limits), alarm_rule (admin rules), dispatch_schedule (approval),
--     rollup_15min (pages and the settlement bring the 15-minute rollups up to date);
--   * never writes measurement, ingest_health, forecast or the assets but point; DELETE only where listed.

\set ON_ERROR_STOP on
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

BEGIN;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"ingest_role", :"portal_role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM :"ingest_role", :"portal_role";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO :"ingest_role", :"portal_role";

-- ---------------------------------------------------------------------------------------------- ingest
GRANT SELECT ON alembic_version, role, enterprise, building, device, point, measurement, rollup_15min, forecast,
                ingest_health, alarm, alarm_event, alarm_rule, notification, dispatch_schedule, dispatch_command
   TO :"ingest_role";
GRANT INSERT, UPDATE ON enterprise, building, device, point, measurement, rollup_15min, ingest_health, alarm,
                     notification, forecast
   TO :"ingest_role";
GRANT INSERT ON role, alarm_event, audit_log, dispatch_schedule, dispatch_command TO :"ingest_role";
-- the audit row is inserted with RETURNING id (SQLAlchemy): that column only, not the log's content
GRANT SELECT (id) ON audit_log TO :"ingest_role";

-- ---------------------------------------------------------------------------------------------- portal
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"portal_role";
GRANT INSERT, UPDATE ON app_user, alarm, work_order, report_run, report_definition, point, alarm_rule, rollup_15min
   TO :"portal_role";
GRANT UPDATE ON dispatch_schedule TO :"portal_role";
GRANT INSERT ON audit_log, alarm_event, work_order_comment, carbon_run, carbon_line TO :"portal_role";
GRANT DELETE ON report_definition, carbon_run, carbon_line TO :"portal_role";
COMMIT;
