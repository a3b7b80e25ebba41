-- Anomalies (rst_storm, scan, backscatter, injection clusters, failover) as episodes:
-- one row per sensor, kind and subject in the range with its start, peak and end (UTC),
-- the peak value and its baseline, how many times the sensor reported it (at most once
-- per detector window), the peak's detail, and the services its RSTs hit: `rsts` and
-- `services` count them, `affected_services` lists the ten with the most RSTs
-- ("addr:port", "[v6]:port"). An RST belongs to an episode by the same rules the
-- sensor used to raise it: scan (cause `scan`, the scanner being the subject),
-- backscatter (cause `backscatter` from the subject), rst_storm (RSTs of the subject
-- service, or from the subject address), injection (suspect RSTs of the subject
-- service), failover (cause `state_loss` from the subject server). Earliest first.
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all), {service_port:UInt16} (0 = all: else only episodes
-- whose RSTs hit that port).
SELECT
    kind,
    subject,
    sensor_id,
    toDateTime(intDiv(start_us, 1000000), 'UTC') AS start_utc,
    toDateTime(intDiv(peak_us, 1000000), 'UTC') AS peak_utc,
    toDateTime(intDiv(end_us, 1000000), 'UTC') AS end_utc,
    peak_value,
    baseline,
    reports,
    detail,
    rsts,
    services,
    affected_services
FROM
(
    SELECT
        toString(kind) AS kind,
        subject,
        sensor_id,
        min(ts_us) AS start_us,
        -- The peak is the report with the highest value, the earliest of equal ones
        -- (a bare argMax picks any of a tie, and the pick differs between servers).
        argMax(ts_us, (value, -ts_us)) AS peak_us,
        max(ts_us) AS end_us,
        max(value) AS peak_value,
        argMax(baseline, (value, -ts_us)) AS baseline,
        count() AS reports,
        argMax(detail, (value, -ts_us)) AS detail
    FROM anomalies
    WHERE ts >= {from:DateTime} AND ts < {to:DateTime}
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
    GROUP BY kind, subject, sensor_id
) AS a
ANY LEFT JOIN
(
    SELECT
        kind,
        subject,
        sensor_id,
        sum(n) AS rsts,
        count() AS services,
        groupUniqArray(server_port) AS ports,
        arrayMap(x -> tupleElement(x, 2), arraySlice(arrayReverseSort(groupArray((n, service))), 1, 10)) AS affected_services
    FROM
    (
        SELECT
            sensor_id,
            tupleElement(k, 1) AS kind,
            tupleElement(k, 2) AS subject,
            service,
            server_port,
            count() AS n
        FROM
        (
            SELECT
                sensor_id,
                cause,
                class,
                suspect,
                replaceRegexpOne(IPv6NumToString(src), '^::ffff:', '') AS src_s,
                replaceRegexpOne(IPv6NumToString(dst), '^::ffff:', '') AS dst_s,
                replaceRegexpOne(IPv6NumToString(if(dir = 'resp', src, dst)), '^::ffff:', '') AS server_s,
                if(dir = 'resp', sport, dport) AS server_port,
                if(position(server_s, ':') > 0,
                    concat('[', server_s, ']:', toString(server_port)),
                    concat(server_s, ':', toString(server_port))) AS service
            FROM rst_events
            WHERE ts >= {from:DateTime} AND ts < {to:DateTime}
                AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        )
        ARRAY JOIN arrayFilter(x -> tupleElement(x, 1) != '', [
            (if(cause = 'scan', 'scan', ''), if(class = 'reject', dst_s, src_s)),
            (if(cause = 'backscatter', 'backscatter', ''), src_s),
            ('rst_storm', service),
            ('rst_storm', src_s),
            (if(suspect = 1, 'injection', ''), service),
            (if(cause = 'state_loss', 'failover', ''), server_s)
        ]) AS k
        GROUP BY sensor_id, kind, subject, service, server_port
    )
    GROUP BY kind, subject, sensor_id
) AS r USING (kind, subject, sensor_id)
WHERE {service_port:UInt16} = 0 OR has(ports, {service_port:UInt16})
ORDER BY start_us, kind, subject, sensor_id
