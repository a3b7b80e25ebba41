-- Why were connections reset in the last hour: RSTs per cause and service (server
-- address and port), with their share of all RSTs in the hour, the first example's
-- detail and what to do about it (from `cause_remedies`, kept current by `migrate`).
-- Most frequent first; ties in rule order. Another range: change both `3600`s
-- (18.16 has no query parameters; Grafana can substitute its own time filter).
SELECT
    cause,
    replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS server_addr,
    server_port,
    rsts,
    round(rsts / (SELECT count() FROM rst_events WHERE ts >= now() - 3600), 4) AS share,
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
    WHERE ts >= now() - 3600
    GROUP BY cause, server, server_port
) AS r
ANY LEFT JOIN
(
    SELECT cause, remedy, precedence
    FROM cause_remedies
) AS c USING (cause)
ORDER BY rsts DESC, precedence, server_addr, server_port
LIMIT 100
