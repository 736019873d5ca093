#!/usr/bin/env python3
"""Writes the codec's golden vectors from the spec, independently of the Rust
encoder: Python's struct and zlib produce the bytes, and the expected canonical
JSON is assembled here from protocol-v2.md section 5.

Run from the repository root: python3 scripts/gen_codec_vectors.py
The files it writes are checked in; the Rust tests only read them.
"""
import json, struct, zlib
from pathlib import Path

OUT = Path("codec/tests/data")
MAGIC = 0xDEADBEEF
DOMAINS = {1: "market_data", 2: "signal", 3: "execution", 4: "system"}
SOURCES = {2: "KrakenCollector", 4: "PolygonCollector", 62: "StateManager", 99: "TestClient", 21: "MarketMaker", 42: "ExecutionEngine"}
NAMES = {1: "Trade", 2: "Quote", 100: "Heartbeat", 202: "ProprietaryData", 9: "VolumeUpdate", 42: "Fill"}


def tlv(t, payload, extended=False):
    if extended or len(payload) > 255:
        return bytes([0xFF, 0, t]) + struct.pack("<H", len(payload)) + payload
    return bytes([t, len(payload)]) + payload


def message(domain, source, seq, ts, tlvs, checksum=False, flags=0):
    area = b"".join(tlvs)
    head = struct.pack("<IBBBBQQI", MAGIC, domain, 1, source, flags, seq, ts, len(area))
    crc = zlib.crc32(head + area) if checksum else 0
    return head + struct.pack("<I", crc) + area


def trade(asset_id, price, volume, ts, venue, asset_type, side):
    return struct.pack("<QqqQHBBB3x", asset_id, price, volume, ts, venue, asset_type, 0, side)


def quote(asset_id, bp, bs, ap, as_, ts, venue, asset_type):
    return struct.pack("<QqqqqQHBB4x", asset_id, bp, bs, ap, as_, ts, venue, asset_type, 0)


def heartbeat(ts, counter):
    return struct.pack("<QQ", ts, counter)


def fields_of(t, p):
    if t == 1 and len(p) == 40 and p[37:] == b"\0\0\0":
        v = struct.unpack("<QqqQHBBB3x", p)
        keys = ["asset_id", "price", "volume", "execution_timestamp_ns", "venue_id", "asset_type", "reserved", "side"]
        return dict(zip(keys, v))
    if t == 2 and len(p) == 56 and p[52:] == b"\0" * 4:
        v = struct.unpack("<QqqqqQHBB4x", p)
        keys = ["asset_id", "bid_price", "bid_size", "ask_price", "ask_size", "quote_timestamp_ns", "venue_id", "asset_type", "reserved"]
        return dict(zip(keys, v))
    if t == 100 and len(p) == 16:
        return dict(zip(["timestamp_ns", "counter"], struct.unpack("<QQ", p)))
    return None


def render(msg):
    magic, domain, version, source, flags, seq, ts, size, crc = struct.unpack("<IBBBBQQII", msg[:32])
    header = {"magic": magic, "relay_domain": domain, "domain": DOMAINS.get(domain, "unknown"), "version": version,
              "source": source, "source_name": SOURCES.get(source, "unknown"), "flags": flags, "sequence": seq,
              "timestamp_ns": ts, "payload_size": size, "checksum": crc}
    tlvs, pos, area = [], 0, msg[32:]
    while pos < len(area):
        if area[pos] == 0xFF:
            t, n = area[pos + 2], struct.unpack("<H", area[pos + 3:pos + 5])[0]
            p, ext, pos = area[pos + 5:pos + 5 + n], True, pos + 5 + n
        else:
            t, n = area[pos], area[pos + 1]
            p, ext, pos = area[pos + 2:pos + 2 + n], False, pos + 2 + n
        entry = {"type": t, "name": NAMES.get(t, "unknown"), "len": len(p), "extended": ext}
        f = fields_of(t, p)
        if f is not None:
            entry["fields"] = f
        entry["hex"] = p.hex()
        tlvs.append(entry)
    return json.dumps({"header": header, "tlvs": tlvs}, separators=(",", ":"))


BTCUSD = 0x4254435553440000
AAPL = int.from_bytes(b"AAPL\0\0\0\0", "big")
TS = 1710426537049841000
OK = {
    "trade": message(1, 2, 7, TS, [tlv(1, trade(BTCUSD, 7293010000000, 7509315, 1710426505066587000, 101, 51, 1))]),
    "trade_checksum": message(1, 2, 7, TS, [tlv(1, trade(BTCUSD, 7293010000000, 7509315, 1710426505066587000, 101, 51, 1))], checksum=True),
    "quote": message(1, 4, 1, 1700000000123000000, [tlv(2, quote(AAPL, 18912000000, 300000000, 18915000000, 500000000, 1700000000123000000, 0, 1))]),
    "heartbeat_checksum": message(4, 62, 2**64 - 1, 2**63 + 5, [tlv(100, heartbeat(1700000000000000000, 42))], checksum=True),
    "unknown_type_standard": message(2, 21, 3, 5, [tlv(150, bytes([1, 2, 3, 4, 5]))]),
    "extended_300": message(1, 99, 9, 10, [tlv(202, bytes(i % 251 for i in range(300)))]),
    "extended_form_short_payload": message(1, 99, 10, 11, [tlv(9, b"\xaa\xbb\xcc", extended=True)]),
    "two_tlvs": message(1, 2, 11, 12, [tlv(1, trade(BTCUSD, -5, 0, 1, 101, 51, 2)), tlv(9, b"\x01\x02")]),
    "two_tlvs_checksum": message(3, 42, 12, 13, [tlv(42, b"fill"), tlv(100, heartbeat(1, 2))], checksum=True),
    "empty_tlv_area_sequence_zero": message(4, 0, 0, 14, []),
    "unknown_domain_and_source": message(9, 200, 15, 16, [tlv(1, b"\x00" * 39)]),
    "trade_with_nonzero_padding": message(1, 2, 16, 17, [tlv(1, trade(BTCUSD, 1, 1, 1, 101, 51, 0)[:37] + b"\x00\x01\x00")]),
}

base = OK["trade"]
def patched(offset, data, of=base):
    return of[:offset] + data + of[offset + len(data):]

ERR = {
    "bad_magic": (patched(0, b"\xef\xbe\xad\xdf"), "bad magic 0xdfadbeef at offset 0 (expected 0xdeadbeef)"),
    "bad_version": (patched(5, b"\x02"), "bad version 2 at offset 5 (expected 1)"),
    "too_large": (patched(24, struct.pack("<I", 1048576 - 31)), "message of 1048577 bytes announced at offset 24 exceeds the maximum of 1048576"),
    "tlv_overrun": (patched(33, b"\x29"), "TLV at offset 32 needs 43 bytes but only 42 remain in the TLV area"),
    "leftover_byte": (message(1, 2, 1, 1, [tlv(9, b"\x01"), b"\x07"]), "TLV at offset 35 needs 2 bytes but only 1 remain in the TLV area"),
    "extended_reserved_nonzero": (message(1, 2, 1, 1, [b"\xff\x01\x09\x01\x00\xaa"]), "extended TLV reserved byte at offset 33 is 0x01 (must be 0)"),
    "extended_type_255": (message(1, 2, 1, 1, [b"\xff\x00\xff\x01\x00\xaa"]), "TLV type 255 at offset 34 is reserved as the extended marker"),
    "trailing_bytes": (base + b"\x00", "payload_size 42 says the message is 74 bytes, but 75 bytes were given"),
    "truncated_tlv_area": (base[:-1], "truncated: 1 more byte(s) needed at offset 73"),
}

for name, msg in OK.items():
    (OUT / "ok" / f"{name}.hex").write_text(msg.hex() + "\n")
    (OUT / "ok" / f"{name}.json").write_text(render(msg) + "\n")
for name, (msg, error) in ERR.items():
    (OUT / "err" / f"{name}.hex").write_text(f"# error: {error}\n{msg.hex()}\n")
print(f"wrote {len(OK)} ok and {len(ERR)} err vectors")
