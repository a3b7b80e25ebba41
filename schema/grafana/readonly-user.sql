-- The read-only ClickHouse user Grafana reads with, for servers with SQL-driven access
-- control (ClickHouse 20.x and newer with `access_management` for the admin running
-- this). Same rules as clickhouse-readonly-user.xml: SELECT on the rstwatch database
-- only, readonly = 1, max_execution_time changeable (the plugin sends it).
-- Replace CHANGE_ME; from this host only (add HOST IP '...' for a remote Grafana).
CREATE SETTINGS PROFILE IF NOT EXISTS rstwatch_grafana
    SETTINGS readonly = 1, max_memory_usage = 4000000000,
        max_execution_time = 60 MAX 300 CHANGEABLE_IN_READONLY;
CREATE USER IF NOT EXISTS rstwatch_grafana
    IDENTIFIED WITH sha256_password BY 'CHANGE_ME'
    HOST LOCAL
    SETTINGS PROFILE 'rstwatch_grafana';
GRANT SELECT ON rstwatch.* TO rstwatch_grafana;
