-- Reset rate over time by class: RSTs per bucket
-- of {step} seconds, from the rollups, never the raw table: step 60 reads the
-- per-minute `rst_minute` (kept as long as the raw rows), steps of an hour or more the
-- hourly `rst_hour` (kept at least 400 days; schema/sql/004_rollup_hour.sql).
-- `rsts_per_minute` is the bucket's rate, comparable across steps.
-- Parameters (schema/README.md): {from:DateTime} inclusive, {to:DateTime} exclusive
-- (whole minutes, or whole hours for hourly and daily steps: a minute or hour counts
-- when it starts in the range); {step:UInt32} 60 (minute), 3600 (hour) or 86400
-- (day), buckets aligned to UTC; {sensor:String} ('' = every sensor);
-- {service_port:UInt16} (the server's port, 0 = every port).
SELECT
    toDateTime(intDiv(toUInt32(bucket), {step:UInt32}) * {step:UInt32}, 'UTC') AS time,
    class,
    sum(n) AS rsts,
    sum(s) AS suspect_rsts,
    round(rsts * 60 / {step:UInt32}, 3) AS rsts_per_minute
FROM
(
    SELECT minute AS bucket, class, rsts AS n, suspect_rsts AS s
    FROM rst_minute
    WHERE {step:UInt32} < 3600
        AND minute >= {from:DateTime} AND minute < {to:DateTime}
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        AND ({service_port:UInt16} = 0 OR server_port = {service_port:UInt16})
    UNION ALL
    SELECT hour AS bucket, class, rsts AS n, suspect_rsts AS s
    FROM rst_hour
    WHERE {step:UInt32} >= 3600
        AND hour >= {from:DateTime} AND hour < {to:DateTime}
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        AND ({service_port:UInt16} = 0 OR server_port = {service_port:UInt16})
)
GROUP BY time, class
ORDER BY time, class
