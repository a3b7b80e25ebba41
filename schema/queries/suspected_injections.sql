-- Suspected injections: RSTs with the forged-RST verdict (`suspect`, cause
-- `injection`), newest first, with the time in UTC to the microsecond, the flags as
-- names (the evidence: data_after, ttl_mismatch, ipid_mismatch, seq_behind, multi_seq,
-- multi_ack; bit positions in schema/src/flags.rs), and the TTL against the purported
-- sender's own baseline in the flow (`ttl_baseline` 0: the sensor had none; the
-- delta is the RST's TTL minus it: an injector farther away or closer than the host
-- it impersonates shows as a non-zero delta).
-- Parameters (schema/README.md): {from:DateTime}, {to:DateTime} ([from, to), UTC),
-- {sensor:String} ('' = all), {service_port:UInt16} (server port, 0 = all).
SELECT
    concat(toString(toDateTime(intDiv(ts_us, 1000000), 'UTC')), '.',
        substring(toString(1000000 + ts_us % 1000000), 2)) AS time_utc,
    sensor_id,
    replaceRegexpOne(IPv6NumToString(src), '^::ffff:', '') AS src_addr,
    sport,
    replaceRegexpOne(IPv6NumToString(dst), '^::ffff:', '') AS dst_addr,
    dport,
    dir,
    class,
    arrayMap(b -> transform(toUInt64(b), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
        ['seq_exact', 'seq_in_window', 'seq_out_of_window', 'after_fin', 'idle', 'with_payload', 'syn_rst', 'fin_rst', 'lossy', 'data_after', 'seq_behind', 'multi_seq', 'multi_ack', 'ttl_mismatch', 'ipid_mismatch', 'rst_and_rstack', 'bad_checksum'], 'unknown'),
        bitmaskToArray(toUInt64(flags))) AS flag_names,
    ttl,
    toUInt8OrZero(extract(cause_detail, 'RST TTL [0-9]+ vs the [a-z]+\'s ([0-9]+)')) AS ttl_baseline,
    if(ttl_baseline = 0, 0, toInt16(ttl) - toInt16(ttl_baseline)) AS ttl_delta,
    ip_id,
    seq,
    ack,
    cause_detail,
    flow_uid
FROM rst_events
WHERE suspect = 1
    AND ts >= {from:DateTime} AND ts < {to:DateTime}
    AND ({sensor:String} = '' OR sensor_id = {sensor:String})
    AND ({service_port:UInt16} = 0 OR if(dir = 'resp', sport, dport) = {service_port:UInt16})
ORDER BY ts_us DESC, flow_uid
LIMIT 500
