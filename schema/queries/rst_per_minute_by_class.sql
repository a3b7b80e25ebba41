-- RSTs per minute and class over the last day, from the rollup (Grafana time series).
SELECT minute, class, sum(rsts) AS rsts, sum(suspect_rsts) AS suspect
FROM rst_minute
WHERE minute >= now() - 86400
GROUP BY minute, class
ORDER BY minute, class
