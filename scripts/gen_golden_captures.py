#!/usr/bin/env python3
"""Writes the golden capture pairs that verify's snapshot tests report on,
independently of the Rust capture writer (Python struct/zlib, pcapng as
docs/capture.md §1 fixes it).

Run from the repository root: python3 scripts/gen_golden_captures.py
The files it writes are checked in; the Rust tests only read them.

  relay.pcapng          the reference: 8 Kraken trades and 2 Polygon quotes
  broker-same.pcapng    the same bytes, each 40-90 us later
  broker-differs.pcapng one price off by one unit (mismatched), one message
                        missing, one extra, one repeat (duplicate) and one
                        arrival out of order (reordered)
  both.pcapng           relay and broker-same as two interfaces of one file
"""
import struct
from pathlib import Path

OUT = Path("verify/tests/data")
MAGIC = 0xDEADBEEF
BTCUSD = 0x4254435553440000
AAPL = 0x4141504C00000000
T0 = 1_764_180_000_000_000_000  # 2025-11-26T18:00:00Z


def message(domain, source, seq, ts, t, payload):
    area = bytes([t, len(payload)]) + payload
    return struct.pack("<IBBBBQQII", MAGIC, domain, 1, source, 0, seq, ts, len(area), 0) + area


def trade(seq, price, volume=10_000_000, side=0):
    ts = T0 + seq * 1_000_000
    return message(1, 2, seq, ts, 1, struct.pack("<QqqQHBBB3x", BTCUSD, price, volume, ts, 101, 51, 0, side))


def quote(seq, bid, ask):
    ts = T0 + seq * 1_000_000
    p = struct.pack("<QqqqqQHBB4x", AAPL, bid, 100_00000000, ask, 200_00000000, ts, 0, 1, 0)
    return message(1, 4, seq, ts, 2, p)


def block(t, body):
    total = 12 + len(body)
    return struct.pack("<II", t, total) + body + struct.pack("<I", total)


def option(code, value):
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def pcapng(streams):
    """streams: [(if_name, [(arrival_ns, bytes)])]; packets interleaved by time."""
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for name, _ in streams:
        opts = option(2, name.encode()) + option(9, bytes([9])) + option(0, b"")
        out += block(1, struct.pack("<HHI", 147, 0, 0) + opts)
    packets = sorted((ts, i, data) for i, (_, msgs) in enumerate(streams) for ts, data in msgs)
    for ts, i, data in packets:
        pad = (-len(data)) % 4
        body = struct.pack("<IIIII", i, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data + b"\0" * pad
        out += block(6, body)
    return out


def main():
    reference = [trade(s, 72_930_10000000 + s * 100_000_000, side=s % 2) for s in range(1, 9)]
    reference += [quote(1, 189_5000000000 // 10, 189_5200000000 // 10), quote(2, 189_5100000000 // 10, 189_5300000000 // 10)]
    arrivals = [T0 + 5_000_000_000 + i * 1_000_000 for i in range(len(reference))]
    relay = list(zip(arrivals, reference))
    same = [(ts + 40_000 + (i % 6) * 10_000, m) for i, (ts, m) in enumerate(relay)]

    differs = []
    for i, (ts, m) in enumerate(same):
        seq = struct.unpack("<Q", m[8:16])[0]
        source = m[6]
        if source == 2 and seq == 3:  # mismatched: price + 1 unit
            b = bytearray(m)
            price = struct.unpack("<q", b[42:50])[0]
            b[42:50] = struct.pack("<q", price + 1)
            differs.append((ts, bytes(b)))
        elif source == 2 and seq == 5:  # missing
            continue
        elif source == 2 and seq == 6:  # reordered: arrives after 7
            differs.append((same[i + 1][0] + 1, m))
        elif source == 4 and seq == 2:  # repeated once
            differs.append((ts, m))
            differs.append((ts + 1, m))
        else:
            differs.append((ts, m))
    differs.append((same[-1][0] + 1_000_000, trade(9, 73_000_00000000)))  # extra

    OUT.mkdir(parents=True, exist_ok=True)
    relay_name = "relay:/run/torq/market_data.sock"
    (OUT / "relay.pcapng").write_bytes(pcapng([(relay_name, relay)]))
    (OUT / "broker-same.pcapng").write_bytes(pcapng([("broker:market_data", same)]))
    (OUT / "broker-differs.pcapng").write_bytes(pcapng([("broker:market_data", differs)]))
    (OUT / "both.pcapng").write_bytes(pcapng([(relay_name, relay), ("broker:market_data", same)]))


if __name__ == "__main__":
    main()
