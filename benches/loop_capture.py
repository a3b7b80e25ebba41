#!/usr/bin/env python3
"""Loop a pcap file N times, as `xdp_bench` loops it, to measure what the loop does.

`xdp_bench` sends its capture over and over, so after the first pass the sensor sees
the same four-tuples again with the same sequence numbers. This writes such a loop to a
file, for `replay` or `xdp_bench --pcap`, in one of two forms:

  same   every pass as the capture has it (what `xdp_bench` sends);
  fresh  each pass after the first with the last octet of both IPv4 addresses of plain
         Ethernet/IPv4/TCP frames moved by the pass number (mod 256, so documentation
         /24s stay themselves) and both checksums recomputed: new flows on every pass.

Timestamps: with --rate R the frames are spaced 1/R s apart from the first frame's time
(the clock a live receiver would stamp at R frames a second); without it each pass is
shifted by the capture's span plus a second.

    benches/loop_capture.py --passes 20 --form fresh --rate 430000 mixed.pcap out.pcap
"""

import argparse
import struct


def checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def moved(f: bytes, k: int) -> bytes:
    """`f` with both IPv4 addresses' last octet moved by `k`, or `f` if not plain."""
    plain = (
        f[12:14] == b"\x08\x00"
        and len(f) >= 54
        and f[14] == 0x45
        and f[23] == 6
        and struct.unpack("!H", f[20:22])[0] & 0x3FFF == 0
    )
    total = struct.unpack("!H", f[16:18])[0] if plain else 0
    if not plain or 14 + total > len(f) or total < 40:
        return f
    g = bytearray(f)
    g[29] = (g[29] + k) % 256
    g[33] = (g[33] + k) % 256
    g[24:26] = b"\0\0"
    g[24:26] = struct.pack("!H", checksum(bytes(g[14:34])))
    tcp = bytearray(g[34 : 14 + total])
    tcp[16:18] = b"\0\0"
    pseudo = bytes(g[26:34]) + struct.pack("!BBH", 0, 6, len(tcp))
    g[50:52] = struct.pack("!H", checksum(pseudo + bytes(tcp)))
    return bytes(g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--form", choices=["same", "fresh"], default="same")
    ap.add_argument("--rate", type=float, help="frames a second (live-like timestamps)")
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args()
    data = open(a.input, "rb").read()
    if data[:4] != b"\xd4\xc3\xb2\xa1":
        raise SystemExit("only little-endian microsecond pcap files")
    records, off = [], 24
    while off + 16 <= len(data):
        s, us, incl, orig = struct.unpack("<IIII", data[off : off + 16])
        records.append((s * 1_000_000 + us, orig, data[off + 16 : off + 16 + incl]))
        off += 16 + incl
    first = records[0][0]
    span = records[-1][0] - first + 1_000_000
    with open(a.output, "wb") as out:
        out.write(data[:24])
        for k in range(a.passes):
            for i, (ts, orig, f) in enumerate(records):
                if a.rate:
                    ts = first + int((k * len(records) + i) * 1e6 / a.rate)
                else:
                    ts += k * span
                g = moved(f, k) if a.form == "fresh" and k > 0 else f
                out.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(g), orig))
                out.write(g)
    print(f"{len(records) * a.passes} frames in {a.passes} passes -> {a.output}")


if __name__ == "__main__":
    main()
