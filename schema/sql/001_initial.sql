-- rstwatch schema, version 1.
--
-- Rendered by the collector (`rstwatch-collector migrate`) for the server it talks to:
--   {{DB}}        the database name
--   {{ADDR}}      IPv6 (servers >= 20.1) or FixedString(16) (older); IPv4 is stored
--                 IPv4-mapped (::ffff:a.b.c.d), so both families share one column and
--                 sort together
--   {{LC}}        LowCardinality(String) (>= 20.1) or String
--   {{CODEC_TS}}  CODEC(DoubleDelta, ZSTD) on timestamps (>= 20.1) or nothing
--   {{TTL:col}}   TTL col + INTERVAL N DAY when retention is set and the server has TTL
--                 (>= 20.1); otherwise the collector drops whole day partitions
--   {{MT_SETTINGS}} SETTINGS for MergeTree (non-replicated insert deduplication on
--                 servers that have it)
--   {{ENUM:Name}} the Enum8 definition generated from the Rust enum of that name
-- Statements are separated by a semicolon at the end of a line.
-- Timestamps: `ts` (DateTime, seconds; partitioning, rollups) plus `ts_us` (Int64,
-- microseconds since the epoch: full precision, what JSON prints).
-- Every data row carries (sensor_id, boot_id, batch_seq): the batch that delivered it.

CREATE TABLE IF NOT EXISTS {{DB}}.rst_events (
    ts DateTime,
    ts_us Int64 {{CODEC_TS}},
    sensor_id {{LC}},
    boot_id UInt64,
    batch_seq UInt64,
    src {{ADDR}},
    sport UInt16,
    dst {{ADDR}},
    dport UInt16,
    vlan UInt16,
    inner_vlan UInt16,
    dir {{ENUM:Dir}},
    class {{ENUM:RstClass}},
    flags UInt32,
    suspect UInt8,
    seq UInt32,
    ack UInt32,
    ack_flag UInt8,
    ttl UInt8,
    ip_id UInt16,
    payload_len UInt16,
    flow_uid UInt64
) ENGINE = MergeTree()
PARTITION BY toDate(ts)
ORDER BY (sensor_id, ts, dst, dport)
{{TTL:ts}}
{{MT_SETTINGS}};

CREATE TABLE IF NOT EXISTS {{DB}}.flows (
    ts_start DateTime,
    ts_start_us Int64 {{CODEC_TS}},
    ts_end DateTime,
    ts_end_us Int64 {{CODEC_TS}},
    sensor_id {{LC}},
    boot_id UInt64,
    batch_seq UInt64,
    orig_h {{ADDR}},
    orig_p UInt16,
    resp_h {{ADDR}},
    resp_p UInt16,
    vlan UInt16,
    inner_vlan UInt16,
    conn_state {{ENUM:ConnState}},
    history String,
    orig_pkts UInt64,
    resp_pkts UInt64,
    orig_bytes UInt64,
    resp_bytes UInt64,
    rst_count UInt32,
    close {{ENUM:CloseReason}},
    flow_uid UInt64
) ENGINE = MergeTree()
PARTITION BY toDate(ts_end)
ORDER BY (sensor_id, ts_end, resp_h, resp_p)
{{TTL:ts_end}}
{{MT_SETTINGS}};

CREATE TABLE IF NOT EXISTS {{DB}}.anomalies (
    ts DateTime,
    ts_us Int64,
    sensor_id {{LC}},
    boot_id UInt64,
    batch_seq UInt64,
    kind {{ENUM:AnomalyKind}},
    subject String,
    value Float64,
    baseline Float64,
    detail String
) ENGINE = MergeTree()
PARTITION BY toDate(ts)
ORDER BY (sensor_id, ts, kind)
{{TTL:ts}}
{{MT_SETTINGS}};

CREATE TABLE IF NOT EXISTS {{DB}}.sensor_stats (
    ts DateTime,
    ts_us Int64,
    sensor_id {{LC}},
    boot_id UInt64,
    batch_seq UInt64,
    name {{LC}},
    value UInt64
) ENGINE = MergeTree()
PARTITION BY toDate(ts)
ORDER BY (sensor_id, name, ts)
{{TTL:ts}}
{{MT_SETTINGS}};

CREATE TABLE IF NOT EXISTS {{DB}}.batches (
    received DateTime,
    sensor_id {{LC}},
    boot_id UInt64,
    seq UInt64,
    created_us Int64,
    rst UInt32,
    flows UInt32,
    anomalies UInt32,
    stats UInt32,
    wire_bytes UInt32
) ENGINE = MergeTree()
PARTITION BY toDate(received)
ORDER BY (sensor_id, boot_id, seq)
{{TTL:received}}
{{MT_SETTINGS}};

CREATE TABLE IF NOT EXISTS {{DB}}.rst_minute (
    minute DateTime,
    sensor_id {{LC}},
    class {{ENUM:RstClass}},
    server {{ADDR}},
    server_port UInt16,
    flags UInt32,
    rsts UInt64,
    suspect_rsts UInt64
) ENGINE = SummingMergeTree((rsts, suspect_rsts))
PARTITION BY toDate(minute)
ORDER BY (sensor_id, minute, class, server, server_port, flags)
{{TTL:minute}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.rst_minute_mv TO {{DB}}.rst_minute AS
SELECT
    toStartOfMinute(ts) AS minute,
    sensor_id,
    class,
    if(dir = 'resp', src, dst) AS server,
    if(dir = 'resp', sport, dport) AS server_port,
    flags,
    count() AS rsts,
    sum(suspect) AS suspect_rsts
FROM {{DB}}.rst_events
GROUP BY minute, sensor_id, class, server, server_port, flags;
