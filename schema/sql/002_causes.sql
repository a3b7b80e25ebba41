-- rstwatch schema, version 2: why each RST was sent (DESIGN.md, "Why was it reset").
--
-- Upgrades a version-1 database in place without rewriting or losing a row:
-- `ADD COLUMN ... DEFAULT` only changes metadata. Parts written before the upgrade have
-- no file for the new column; reads (and later merges) compute the DEFAULT, so old
-- `rst_events` rows read `cause = 'unknown'` and old `flows` rows `'unknown'` when an
-- RST closed them, `''` otherwise. The collector always writes every column itself, so
-- the DEFAULTs only ever apply to version-1 rows.
-- Placeholders as in 001_initial.sql, plus:
--   {{ENUM:Cause}}     Enum8 of every cause, code = precedence (schema/src/cause.rs)
--   {{ENUM:FlowCause}} the same plus '' = -1: a flow that no RST closed
--   {{ADD_COLUMN}}     ADD COLUMN IF NOT EXISTS (>= 20.1); 18.16 has no IF NOT EXISTS
--                      there, so `migrate` treats "column already exists" as applied
-- Stop the collector while migrating: rows inserted during the backfill below may be
-- missing from `rst_minute_cause` (never from the raw tables).

ALTER TABLE {{DB}}.rst_events
    {{ADD_COLUMN}} cause {{ENUM:Cause}} DEFAULT 'unknown',
    {{ADD_COLUMN}} cause_detail String DEFAULT '',
    {{ADD_COLUMN}} silence_ms UInt64 DEFAULT 0;

-- Enum8 rather than LowCardinality(String) or Nullable: one byte on both dialects,
-- the same names as rst_events.cause (so the two join and compare), and '' is what
-- the JSON contract prints for "no RST". -1 cannot collide with a cause code (0..).
ALTER TABLE {{DB}}.flows
    {{ADD_COLUMN}} cause {{ENUM:FlowCause}} DEFAULT if(close = 'rst' OR rst_count > 0, 'unknown', '');

-- Adding a value to an Enum8 is a metadata-only change on both dialects. (001 renders
-- the kinds of the build that runs it: on a database created by this build the column
-- has `failover` already and this changes nothing.)
ALTER TABLE {{DB}}.anomalies
    MODIFY COLUMN kind {{ENUM:AnomalyKind}};

-- RSTs per minute by cause and service. A new rollup beside `rst_minute` rather than a
-- new dimension of it: 18.16 can neither change a SummingMergeTree's sorting key nor a
-- materialized view's SELECT, and recreating `rst_minute_mv` would drop the RSTs
-- inserted between DROP and CREATE from the rollup.
CREATE TABLE IF NOT EXISTS {{DB}}.rst_minute_cause (
    minute DateTime,
    sensor_id {{LC}},
    cause {{ENUM:Cause}},
    server {{ADDR}},
    server_port UInt16,
    rsts UInt64,
    suspect_rsts UInt64
) ENGINE = SummingMergeTree((rsts, suspect_rsts))
PARTITION BY toDate(minute)
ORDER BY (sensor_id, minute, cause, server, server_port)
{{TTL:minute}};

-- Backfill from the version-1 rows (all 'unknown'), once: a re-run after a failure
-- further down finds the table filled and adds nothing. Runs before the view exists,
-- so no row is counted twice.
INSERT INTO {{DB}}.rst_minute_cause
SELECT
    toStartOfMinute(ts) AS minute,
    sensor_id,
    cause,
    if(dir = 'resp', src, dst) AS server,
    if(dir = 'resp', sport, dport) AS server_port,
    count() AS rsts,
    sum(suspect) AS suspect_rsts
FROM {{DB}}.rst_events
WHERE (SELECT count() FROM {{DB}}.rst_minute_cause) = 0
GROUP BY minute, sensor_id, cause, server, server_port;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.rst_minute_cause_mv TO {{DB}}.rst_minute_cause AS
SELECT
    toStartOfMinute(ts) AS minute,
    sensor_id,
    cause,
    if(dir = 'resp', src, dst) AS server,
    if(dir = 'resp', sport, dport) AS server_port,
    count() AS rsts,
    sum(suspect) AS suspect_rsts
FROM {{DB}}.rst_events
GROUP BY minute, sensor_id, cause, server, server_port;

-- What each cause means and what to do about it. `migrate` refills it from the Rust
-- definition (`Cause::meaning`, `Cause::remedy`) every time it runs, so SQL and code
-- never drift; `precedence` is the rule order (0 wins).
CREATE TABLE IF NOT EXISTS {{DB}}.cause_remedies (
    cause {{ENUM:Cause}},
    meaning String,
    remedy String,
    precedence UInt8
) ENGINE = MergeTree()
ORDER BY cause;
