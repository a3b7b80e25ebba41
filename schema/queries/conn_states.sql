-- Flows by Zeek conn_state and close reason over the last day.
SELECT conn_state, close, count() AS flows, sum(rst_count) AS rsts
FROM flows
WHERE ts_end >= now() - 86400
GROUP BY conn_state, close
ORDER BY flows DESC
