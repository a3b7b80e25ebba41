-- Idle-timeout resets (cause `idle_timeout`: a firewall or NAT forgot the flow) per
-- service, with the distribution of the silence before them and the estimated timeout.
-- A device that resets at the moment its timer expires puts every reset at one silence
-- (a spike): `estimate` = 'spike' when at least 3 resets and half of them share one
-- silence (rounded to the second), and `estimated_timeout_s` is that value. A device
-- that resets the first segment after the silence (nftables/iptables reject, most
-- cloud load balancers) spreads them above its timeout: `estimate` = 'at_most' and
-- the estimate is the shortest silence seen (the timeout is at most that).
-- `silence_histogram` is [(silence in s, resets), ...], shortest first.
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all), {service_port:UInt16} (server port, 0 = all).
SELECT
    replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS server_addr,
    server_port,
    resets,
    min_silence_s,
    median_silence_s,
    max_silence_s,
    mode_silence_s,
    mode_resets,
    if(mode_resets >= 3 AND mode_resets * 2 >= resets, 'spike', 'at_most') AS estimate,
    if(estimate = 'spike', mode_silence_s, min_silence_s) AS estimated_timeout_s,
    silence_histogram
FROM
(
    SELECT
        server,
        server_port,
        sum(n) AS resets,
        min(silence_s) AS min_silence_s,
        quantileExactWeighted(0.5)(silence_s, n) AS median_silence_s,
        max(silence_s) AS max_silence_s,
        argMax(silence_s, toInt64(n) * 1000000000 - silence_s) AS mode_silence_s,
        max(n) AS mode_resets,
        arraySort(groupArray((silence_s, n))) AS silence_histogram
    FROM
    (
        SELECT
            if(dir = 'resp', src, dst) AS server,
            if(dir = 'resp', sport, dport) AS server_port,
            toUInt64(round(silence_ms / 1000)) AS silence_s,
            count() AS n
        FROM rst_events
        WHERE cause = 'idle_timeout'
            AND ts >= {from:DateTime} AND ts < {to:DateTime}
            AND ({sensor:String} = '' OR sensor_id = {sensor:String})
            AND ({service_port:UInt16} = 0 OR if(dir = 'resp', sport, dport) = {service_port:UInt16})
        GROUP BY server, server_port, silence_s
    )
    GROUP BY server, server_port
)
ORDER BY resets DESC, server_addr, server_port
