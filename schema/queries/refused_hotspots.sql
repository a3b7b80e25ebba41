-- Refused-connection hotspots: the services (server address and port) that answered
-- most SYNs with an RST (class `reject`: no listener, or a reject rule), with how many
-- distinct clients were refused, how many of the refusals went to scanners (cause
-- `scan`: the rest are real clients that failed), and when it started and last
-- happened (UTC). Most refusals first.
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all), {service_port:UInt16} (0 = all).
SELECT
    replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS server_addr,
    server_port,
    refusals,
    clients,
    scan_refusals,
    refusals - scan_refusals AS client_refusals,
    toDateTime(intDiv(first_us, 1000000), 'UTC') AS first_utc,
    toDateTime(intDiv(last_us, 1000000), 'UTC') AS last_utc
FROM
(
    SELECT
        if(dir = 'resp', src, dst) AS server,
        if(dir = 'resp', sport, dport) AS server_port,
        count() AS refusals,
        uniqExact(if(dir = 'resp', dst, src)) AS clients,
        countIf(cause = 'scan') AS scan_refusals,
        min(ts_us) AS first_us,
        max(ts_us) AS last_us
    FROM rst_events
    WHERE class = 'reject'
        AND ts >= {from:DateTime} AND ts < {to:DateTime}
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        AND ({service_port:UInt16} = 0 OR if(dir = 'resp', sport, dport) = {service_port:UInt16})
    GROUP BY server, server_port
)
ORDER BY refusals DESC, server_addr, server_port
LIMIT 100
