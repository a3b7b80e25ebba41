-- Sources collecting rejects from many hosts on one port (Zeek's scan threshold: 25
-- hosts; the sensor's own `scan` anomalies use a 5-minute window, this counts over the
-- whole range). The scanner is the RST's destination. First and last reject in UTC.
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all), {service_port:UInt16} (the scanned port, 0 = all).
SELECT
    replaceRegexpOne(IPv6NumToString(dst), '^::ffff:', '') AS scanner,
    sport AS port,
    uniqExact(src) AS hosts,
    toDateTime(min(ts), 'UTC') AS first_utc,
    toDateTime(max(ts), 'UTC') AS last_utc
FROM rst_events
WHERE class = 'reject'
    AND ts >= {from:DateTime} AND ts < {to:DateTime}
    AND ({sensor:String} = '' OR sensor_id = {sensor:String})
    AND ({service_port:UInt16} = 0 OR sport = {service_port:UInt16})
GROUP BY dst, sport
HAVING hosts >= 25
ORDER BY hosts DESC, scanner, port
