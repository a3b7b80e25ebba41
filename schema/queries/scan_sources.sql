-- Sources collecting rejects from many hosts on one port in the last 5 minutes
-- (Zeek's scan threshold: 25 hosts). The scanner is the RST's destination.
SELECT
    replaceRegexpOne(IPv6NumToString(dst), '^::ffff:', '') AS scanner,
    sport AS port,
    uniqExact(src) AS hosts
FROM rst_events
WHERE class = 'reject' AND ts >= now() - 300
GROUP BY dst, sport
HAVING hosts >= 25
ORDER BY hosts DESC
