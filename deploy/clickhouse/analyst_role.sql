-- Read-only analyst access to the de-identified usage rollups (CONTRACT §5), for a ClickHouse server.
-- Run as an admin after `csync clickhouse migrate`:  clickhouse-client --multiquery < analyst_role.sql
-- (chDB has no users: there the `csync usage` command is the only reader, and it reads the same view.)
--
-- The analyst may read usage.app_daily_public and nothing else: not usage.app_minute (per-minute cells, no
-- K-anonymity), not the ingest/progress tables, not another database. Totals an analyst computes are therefore
-- sums over published cells only, from which no suppressed cell can be recovered (privacy/suppression.py).

CREATE ROLE IF NOT EXISTS usage_analyst;
REVOKE ALL ON *.* FROM usage_analyst;
GRANT SELECT ON usage.app_daily_public TO usage_analyst;

-- A SELECT grant on a view is only usable if the view runs with its definer's rights; otherwise ClickHouse
-- checks SELECT on usage.app_minute for the analyst too (default_normal_view_sql_security = INVOKER), and
-- granting that would expose every cell below K. `csync clickhouse migrate` recreates the view, so run this
-- file again after each migrate (or have migrate create the view with SQL SECURITY DEFINER).
ALTER TABLE usage.app_daily_public MODIFY SQL SECURITY DEFINER;

-- readonly = 2: no writes, no DDL, but clickhouse-connect may still set per-query settings.
CREATE SETTINGS PROFILE IF NOT EXISTS usage_analyst_profile
    SETTINGS readonly = 2, max_execution_time = 60, max_result_rows = 1000000
    TO usage_analyst;

CREATE QUOTA IF NOT EXISTS usage_analyst_quota
    FOR INTERVAL 1 hour MAX queries = 1000, result_rows = 10000000
    TO usage_analyst;

-- One user per analyst (never a shared one: the server's query_log is then the per-person analyst audit).
-- Replace the hash with `echo -n 'password' | sha256sum`; never put a password in this file.
-- CREATE USER IF NOT EXISTS analyst_jdoe IDENTIFIED WITH sha256_hash BY '<hex>' DEFAULT ROLE usage_analyst;
-- Server side, also set <select_from_system_db_requires_grant>true</...> so analysts cannot read
-- system.query_log (other people's queries) or system.parts.
