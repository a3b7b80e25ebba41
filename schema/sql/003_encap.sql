-- Schema version 3 (issue 11): remote mirroring. Which encapsulation a reset or flow
-- arrived in ('' plain, 'gre', 'erspan1', 'erspan2', 'erspan3', 'vxlan', 'geneve',
-- 'mpls', 'pppoe') and the tunnel identity (VXLAN/Geneve VNI, ERSPAN session ID; 0 when
-- none), so an analyst knows which mirror session a reset came through. Rows written
-- before this migration read as plain ('' and 0).

ALTER TABLE {{DB}}.rst_events
    ADD COLUMN encap {{LC}} DEFAULT '',
    ADD COLUMN tunnel_id UInt32 DEFAULT 0;

ALTER TABLE {{DB}}.flows
    ADD COLUMN encap {{LC}} DEFAULT '',
    ADD COLUMN tunnel_id UInt32 DEFAULT 0;
