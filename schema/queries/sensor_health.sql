-- Each sensor's latest counters, and how many batches it delivered in the last hour.
SELECT s.sensor_id, s.name, s.value, b.batches
FROM
(
    SELECT sensor_id, name, argMax(value, ts_us) AS value
    FROM sensor_stats
    GROUP BY sensor_id, name
) AS s
LEFT JOIN
(
    SELECT sensor_id, count() AS batches
    FROM batches
    WHERE received >= now() - 3600
    GROUP BY sensor_id
) AS b USING (sensor_id)
ORDER BY s.sensor_id, s.name
