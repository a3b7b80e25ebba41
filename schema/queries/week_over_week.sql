-- Change against the previous week: RSTs per cause in [from, to) against the same
-- range seven days earlier, from the rollup `rst_minute_cause`; the first row, cause
-- 'all', is every cause together. `change_pct` is NULL (\N) when the previous week had
-- none. Largest current counts first.
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC,
-- whole minutes), {sensor:String} ('' = all), {service_port:UInt16} (0 = all).
SELECT
    cause_name AS cause,
    current_rsts AS rsts,
    earlier_rsts AS previous_rsts,
    toInt64(current_rsts) - toInt64(earlier_rsts) AS change,
    if(earlier_rsts = 0, NULL, round(100 * (toInt64(current_rsts) - toInt64(earlier_rsts)) / earlier_rsts, 1)) AS change_pct
FROM
(
    SELECT
        if(by_cause = 1, toString(cause), 'all') AS cause_name,
        sumIf(rsts, minute >= {from:DateTime} AND minute < {to:DateTime}) AS current_rsts,
        sumIf(rsts, minute >= {from:DateTime} - 604800 AND minute < {to:DateTime} - 604800) AS earlier_rsts
    FROM rst_minute_cause
    ARRAY JOIN [0, 1] AS by_cause
    WHERE ((minute >= {from:DateTime} AND minute < {to:DateTime})
            OR (minute >= {from:DateTime} - 604800 AND minute < {to:DateTime} - 604800))
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        AND ({service_port:UInt16} = 0 OR server_port = {service_port:UInt16})
    GROUP BY cause_name
)
ORDER BY cause_name = 'all' DESC, current_rsts DESC, cause_name
