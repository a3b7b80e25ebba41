-- RSTs per minute and cause over the last day, from the rollup (Grafana time series).
SELECT minute, cause, sum(rsts) AS rsts, sum(suspect_rsts) AS suspect
FROM rst_minute_cause
WHERE minute >= now() - 86400
GROUP BY minute, cause
ORDER BY minute, cause
