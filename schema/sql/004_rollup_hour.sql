-- Schema version 4 (issue 10): the hourly rollup, for reset rates over weeks and months.
--
-- Why these rollups and retentions. `rst_minute` / `rst_minute_cause` (versions 1, 2)
-- keep one row per minute, sensor, class or cause, and service: what a dashboard over
-- hours or days reads, kept as long as the raw rows (`--retention-days`). Over months a
-- minute rollup is 60 times the rows an hourly one needs and is gone with the raw rows,
-- so `rst_hour` keeps one row per hour, sensor, class, cause and service for at least
-- {{ROLLUP_HOUR_DAYS}} days (400: a year plus the same weeks of the year before, for
-- year-over-year), longer when the raw retention is longer. Akvorado keeps 1-minute
-- rollups 7 days, 5-minute 90 days, 1-hour a year; rstwatch's minute rollups follow the
-- raw retention instead of a fixed 7 days because the raw rows (every RST) are what an
-- analyst drills into, and a minute row is worth keeping as long as the RST behind it.
-- Day buckets are read from `rst_hour` (24 rows a day per group: no day table needed).
--
-- Partitioned by month: 18.16 has no TTL, and the collector's partition-dropping
-- retention (day partitions, `ALL_TABLES`) does not touch this table, so on 18.16 the
-- hourly rollup is kept until dropped by hand (`ALTER TABLE rst_hour DROP PARTITION
-- 202501`); it is small (services x causes x classes rows an hour at most).
-- Placeholders as in 001_initial.sql, plus {{TTL_ROLLUP_HOUR:col}} (the TTL above, on
-- servers with TTL and a retention set) and {{ROLLUP_HOUR_DAYS}}.
-- Stop the collector while migrating: RSTs inserted during the backfill below may be
-- missing from `rst_hour` (never from the raw tables).

CREATE TABLE IF NOT EXISTS {{DB}}.rst_hour (
    hour DateTime,
    sensor_id {{LC}},
    class {{ENUM:RstClass}},
    cause {{ENUM:Cause}},
    server {{ADDR}},
    server_port UInt16,
    rsts UInt64,
    suspect_rsts UInt64
) ENGINE = SummingMergeTree((rsts, suspect_rsts))
PARTITION BY toYYYYMM(hour)
ORDER BY (sensor_id, hour, class, cause, server, server_port)
{{TTL_ROLLUP_HOUR:hour}};

-- Backfill from the rows already stored, once (a re-run finds the table filled); before
-- the view exists, so no row is counted twice.
INSERT INTO {{DB}}.rst_hour
SELECT
    toStartOfHour(ts) AS hour,
    sensor_id,
    class,
    cause,
    if(dir = 'resp', src, dst) AS server,
    if(dir = 'resp', sport, dport) AS server_port,
    count() AS rsts,
    sum(suspect) AS suspect_rsts
FROM {{DB}}.rst_events
WHERE (SELECT count() FROM {{DB}}.rst_hour) = 0
GROUP BY hour, sensor_id, class, cause, server, server_port;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.rst_hour_mv TO {{DB}}.rst_hour AS
SELECT
    toStartOfHour(ts) AS hour,
    sensor_id,
    class,
    cause,
    if(dir = 'resp', src, dst) AS server,
    if(dir = 'resp', sport, dport) AS server_port,
    count() AS rsts,
    sum(suspect) AS suspect_rsts
FROM {{DB}}.rst_events
GROUP BY hour, sensor_id, class, cause, server, server_port;
