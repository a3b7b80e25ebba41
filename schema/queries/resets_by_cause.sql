-- Why were connections reset: RSTs per cause and service (server address and port),
-- with their share of all RSTs in the range, the first example's detail and what to
-- do about it (from `cause_remedies`, kept current by `migrate`). Most frequent first;
-- ties in rule order.
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all), {service_port:UInt16} (server port, 0 = all).
SELECT
    cause,
    replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS server_addr,
    server_port,
    rsts,
    round(rsts / (
        SELECT count() FROM rst_events
        WHERE ts >= {from:DateTime} AND ts < {to:DateTime}
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        AND ({service_port:UInt16} = 0 OR if(dir = 'resp', sport, dport) = {service_port:UInt16})
    ), 4) AS share,
    example_detail,
    remedy
FROM
(
    SELECT
        cause,
        if(dir = 'resp', src, dst) AS server,
        if(dir = 'resp', sport, dport) AS server_port,
        count() AS rsts,
        argMin(cause_detail, ts_us) AS example_detail
    FROM rst_events
    WHERE ts >= {from:DateTime} AND ts < {to:DateTime}
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        AND ({service_port:UInt16} = 0 OR if(dir = 'resp', sport, dport) = {service_port:UInt16})
    GROUP BY cause, server, server_port
) AS r
ANY LEFT JOIN
(
    SELECT cause, remedy, precedence
    FROM cause_remedies
) AS c USING (cause)
ORDER BY rsts DESC, precedence, server_addr, server_port
LIMIT 100
