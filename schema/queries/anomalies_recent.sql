-- Anomaly rows of the last day, newest first.
SELECT ts_us, sensor_id, kind, subject, value, baseline, detail
FROM anomalies
WHERE ts >= now() - 86400
ORDER BY ts_us DESC
LIMIT 200
