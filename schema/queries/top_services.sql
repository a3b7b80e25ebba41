-- Top services (server address and port) by resets, with their flows and reset ratio
-- (RSTs per flow: a service with few flows and many resets stands out even when its
-- count does not) and the cause with the most RSTs (ties: the cause first in rule
-- order). RSTs come from the rollup `rst_minute_cause`, flows from `flows` (ended in
-- the range, the service being the responder). Most RSTs first; sort by
-- `resets_per_flow` for the ratio view.
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC,
-- whole minutes for the RSTs), {sensor:String} ('' = all), {service_port:UInt16}
-- (0 = all).
SELECT
    replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS server_addr,
    server_port,
    rsts,
    suspect_rsts,
    flows,
    rst_flows,
    if(flows = 0, 0, round(rsts / flows, 4)) AS resets_per_flow,
    top_cause,
    top_cause_rsts
FROM
(
    SELECT
        server,
        server_port,
        sum(n) AS rsts,
        sum(s) AS suspect_rsts,
        argMax(cause, toInt64(n) * 100 - CAST(cause AS Int8)) AS top_cause,
        max(n) AS top_cause_rsts
    FROM
    (
        SELECT server, server_port, cause, sum(rsts) AS n, sum(suspect_rsts) AS s
        FROM rst_minute_cause
        WHERE minute >= {from:DateTime} AND minute < {to:DateTime}
            AND ({sensor:String} = '' OR sensor_id = {sensor:String})
            AND ({service_port:UInt16} = 0 OR server_port = {service_port:UInt16})
        GROUP BY server, server_port, cause
    )
    GROUP BY server, server_port
) AS r
ANY LEFT JOIN
(
    SELECT
        resp_h AS server,
        resp_p AS server_port,
        count() AS flows,
        countIf(rst_count > 0) AS rst_flows
    FROM flows
    WHERE ts_end >= {from:DateTime} AND ts_end < {to:DateTime}
        AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        AND ({service_port:UInt16} = 0 OR resp_p = {service_port:UInt16})
    GROUP BY server, server_port
) AS f USING (server, server_port)
ORDER BY rsts DESC, server_addr, server_port
LIMIT 50
