-- Flows by Zeek conn_state and close reason (flows that ended in the range).
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all), {service_port:UInt16} (responder port, 0 = all).
SELECT conn_state, close, count() AS flows, sum(rst_count) AS rsts
FROM flows
WHERE ts_end >= {from:DateTime} AND ts_end < {to:DateTime}
    AND ({sensor:String} = '' OR sensor_id = {sensor:String})
    AND ({service_port:UInt16} = 0 OR resp_p = {service_port:UInt16})
GROUP BY conn_state, close
ORDER BY flows DESC, conn_state, close
