-- Reset rate over time by cause (DESIGN.md, "Why was it reset"): RSTs per bucket of
-- {step} seconds and cause, from the per-minute rollup `rst_minute_cause`.
-- `rsts_per_minute` is the bucket's rate, comparable across steps.
-- Parameters (schema/README.md): {from:DateTime} inclusive, {to:DateTime} exclusive
-- (whole minutes); {step:UInt32} 60, 3600 or 86400, buckets aligned to UTC;
-- {sensor:String} ('' = all); {service_port:UInt16} (server port, 0 = all).
SELECT
    toDateTime(intDiv(toUInt32(minute), {step:UInt32}) * {step:UInt32}, 'UTC') AS time,
    cause,
    sum(rsts) AS rsts,
    sum(suspect_rsts) AS suspect_rsts,
    round(rsts * 60 / {step:UInt32}, 3) AS rsts_per_minute
FROM rst_minute_cause
WHERE minute >= {from:DateTime} AND minute < {to:DateTime}
    AND ({sensor:String} = '' OR sensor_id = {sensor:String})
    AND ({service_port:UInt16} = 0 OR server_port = {service_port:UInt16})
GROUP BY time, cause
ORDER BY time, cause
