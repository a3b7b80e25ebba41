-- Reset rate over time by class: RSTs per bucket of {step} seconds and class, from the
-- per-minute rollup `rst_minute` (never the raw table, so a year costs what a day does
-- on the raw one). `rsts_per_minute` is the bucket's rate, comparable across steps.
-- Parameters (schema/README.md): {from:DateTime} inclusive, {to:DateTime} exclusive
-- (whole minutes: a minute counts when it starts in the range); {step:UInt32} 60
-- (minute), 3600 (hour) or 86400 (day), buckets aligned to UTC; {sensor:String} ('' =
-- every sensor); {service_port:UInt16} (the server's port, 0 = every port).
SELECT
    toDateTime(intDiv(toUInt32(minute), {step:UInt32}) * {step:UInt32}, 'UTC') AS time,
    class,
    sum(rsts) AS rsts,
    sum(suspect_rsts) AS suspect_rsts,
    round(rsts * 60 / {step:UInt32}, 3) AS rsts_per_minute
FROM rst_minute
WHERE minute >= {from:DateTime} AND minute < {to:DateTime}
    AND ({sensor:String} = '' OR sensor_id = {sensor:String})
    AND ({service_port:UInt16} = 0 OR server_port = {service_port:UInt16})
GROUP BY time, class
ORDER BY time, class
