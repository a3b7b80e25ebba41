-- The servers (address and port) with the most RSTs in the last hour.
SELECT
    replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS server_addr,
    server_port,
    sum(rsts) AS rsts,
    sum(suspect_rsts) AS suspect
FROM rst_minute
WHERE minute >= now() - 3600
GROUP BY server, server_port
ORDER BY rsts DESC, server, server_port
LIMIT 20
