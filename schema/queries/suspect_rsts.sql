-- Forged-looking RSTs (the injection verdict) in the last day, newest first, with the
-- flags as names (bit positions: schema/src/flags.rs).
SELECT
    ts_us,
    sensor_id,
    replaceRegexpOne(IPv6NumToString(src), '^::ffff:', '') AS src_addr,
    sport,
    replaceRegexpOne(IPv6NumToString(dst), '^::ffff:', '') AS dst_addr,
    dport,
    class,
    arrayMap(b -> transform(toUInt64(b), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
        ['seq_exact', 'seq_in_window', 'seq_out_of_window', 'after_fin', 'idle', 'with_payload', 'syn_rst', 'fin_rst', 'lossy', 'data_after', 'seq_behind', 'multi_seq', 'multi_ack', 'ttl_mismatch', 'ipid_mismatch', 'rst_and_rstack', 'bad_checksum'], 'unknown'),
        bitmaskToArray(toUInt64(flags))) AS flag_names
FROM rst_events
WHERE suspect = 1 AND ts >= now() - 86400
ORDER BY ts_us DESC
LIMIT 100
