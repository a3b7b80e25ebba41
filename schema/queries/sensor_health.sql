-- Sensor health, one row per sensor that reported in [from, to): its latest counters
-- (summed over its boots in the range; each boot's counters start at zero) and what
-- the collector's ledger (`batches`) says about delivery.
--   frames, capture_lost, capture_lost_pct: frames the capture handed over, and lost
--     before it could (AF_XDP ring drops; `capture.*` counters, live capture only);
--   flows_evicted, flows_forgotten_early: flow-table evictions (table full), and of
--     those, established flows forgotten before their idle time ran out;
--   spool_backlog_batches: sealed but not yet acknowledged (the spool's backlog);
--   spool_lost_events: events dropped or evicted from a full spool, or lost from memory;
--   batches, rows: delivered in the range; last_batch_utc and
--     seconds_since_last_batch (to {to}, or now when {to} is in the future; NULL
--     and -1 when no batch arrived in the range; last_stats_utc NULL: no counters);
--   missing_batches: gaps in the batch sequence per boot (batches the collector never
--     received: still spooled on the sensor, or lost).
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all); {service_port:UInt16} does not apply (accepted, ignored).
SELECT
    sensor_id,
    if(last_stats_us = 0, NULL, toDateTime(intDiv(last_stats_us, 1000000), 'UTC')) AS last_stats_utc,
    frames,
    capture_lost,
    if(frames + capture_lost = 0, 0, round(100 * capture_lost / (frames + capture_lost), 3)) AS capture_lost_pct,
    flows_evicted,
    flows_forgotten_early,
    spool_backlog_batches,
    spool_lost_events,
    batches,
    rows,
    if(batches = 0, NULL, toDateTime(last_batch, 'UTC')) AS last_batch_utc,
    if(batches = 0, -1, toInt64(least(toUInt32({to:DateTime}), toUInt32(now()))) - toInt64(toUInt32(last_batch))) AS seconds_since_last_batch,
    missing_batches
FROM
(
    SELECT
        sensor_id,
        max(at_us) AS last_stats_us,
        sumIf(value, name = 'frames') AS frames,
        sumIf(value, name = 'capture.lost') AS capture_lost,
        sumIf(value, name = 'flows_evicted') AS flows_evicted,
        sumIf(value, name = 'flows_forgotten_early') AS flows_forgotten_early,
        toUInt64(greatest(toInt64(sumIf(value, name = 'ship.batches_sealed'))
            - toInt64(sumIf(value, name = 'ship.batches_acked')), 0)) AS spool_backlog_batches,
        sumIf(value, name IN ('ship.spool_dropped_events', 'ship.spool_evicted_events',
            'ship.spool_unspooled_events')) AS spool_lost_events
    FROM
    (
        SELECT sensor_id, boot_id, name, argMax(value, ts_us) AS value, max(ts_us) AS at_us
        FROM sensor_stats
        WHERE ts >= {from:DateTime} AND ts < {to:DateTime}
            AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        GROUP BY sensor_id, boot_id, name
    )
    GROUP BY sensor_id
) AS s
FULL OUTER JOIN
(
    SELECT
        sensor_id,
        sum(n) AS batches,
        sum(r) AS rows,
        max(last) AS last_batch,
        sum(gaps) AS missing_batches
    FROM
    (
        SELECT
            sensor_id,
            boot_id,
            count() AS n,
            sum(rst + flows + anomalies + stats) AS r,
            max(received) AS last,
            max(seq) - min(seq) + 1 - uniqExact(seq) AS gaps
        FROM batches
        WHERE received >= {from:DateTime} AND received < {to:DateTime}
            AND ({sensor:String} = '' OR sensor_id = {sensor:String})
        GROUP BY sensor_id, boot_id
    )
    GROUP BY sensor_id
) AS b USING (sensor_id)
ORDER BY sensor_id
