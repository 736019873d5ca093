#!/usr/bin/env python3
"""Writes the bundled sample feeds in producers/samples/, from the documented
formats (producers spec): Polygon.io stocks and crypto clusters and Kraken
WebSocket v2, each a JSON Lines replay file (one frame per line, as
received), plus a bad-input file per feed. Kraken book checksums are computed
here (zlib.crc32), independently of the Rust adapter.

Run from the repository root: python3 scripts/gen_samples.py
The files are checked in; tests and `myc demo` only read them.
"""
import json
import zlib
from pathlib import Path

OUT = Path("producers/samples")
T0_MS = 1_764_172_800_000  # 2025-11-26T16:00:00Z


def line(obj):
    return json.dumps(obj, separators=(",", ":"))


def polygon():
    ms = lambda n: T0_MS + n * 137
    frames = [
        '[{"ev":"status","status":"connected","message":"Connected Successfully"}]',
        '[{"ev":"status","status":"auth_success","message":"authenticated"}]',
        '[{"ev":"status","status":"success","message":"subscribed to: T.AAPL,Q.AAPL,T.MSFT,XT.*,XQ.*"}]',
        # Stock trades: one frame, several symbols, extra fields, `ds` instead of `s`.
        f'[{{"ev":"T","sym":"AAPL","x":11,"i":"52983525029461","z":3,"p":189.52,"s":100,"c":[14,41],"t":{ms(1)},"q":1001}},'
        f'{{"ev":"T","sym":"MSFT","x":4,"i":"71675577320245","z":3,"p":412.3,"ds":"12.5","c":[12],"t":{ms(2)},"q":1002,"trfi":1,"trft":{ms(2)}}},'
        f'{{"ev":"T","sym":"AAPL","x":10,"i":"52983525029462","z":3,"p":189.53,"s":25,"t":{ms(3)},"q":1003}}]',
        f'[{{"ev":"Q","sym":"AAPL","bx":19,"bp":189.51,"bs":3,"ax":11,"ap":189.54,"as":2,"c":1,"t":{ms(4)},"q":2001,"z":3}}]',
        # A mixed frame: trades and quotes with aggregates and a LULD band, which are ignored.
        f'[{{"ev":"A","sym":"AAPL","v":4110,"o":189.5,"c":189.53,"h":189.6,"l":189.4,"s":{ms(0)},"e":{ms(5)}}},'
        f'{{"ev":"T","sym":"MSFT","i":"71675577320246","x":4,"p":412.31,"s":300,"t":{ms(5)},"z":3}},'
        f'{{"ev":"AM","sym":"MSFT","v":88000,"o":412.1,"c":412.31,"h":412.5,"l":412.0,"s":{ms(0)},"e":{ms(6)}}},'
        f'{{"ev":"Q","sym":"MSFT","bp":412.3,"bs":7,"ap":412.33,"as":1,"t":{ms(6)},"z":3}},'
        f'{{"ev":"LULD","T":"AAPL","h":199.0,"l":180.0,"i":[],"z":3,"t":{ms(6)}}}]',
        # Crypto: numeric-string, UUID and integer trade ids; sizes in exponent form; conditions.
        f'[{{"ev":"XT","pair":"BTC-USD","p":72930.1,"t":{ms(7)},"s":0.0075,"c":[2],"i":"48212391","x":1,"r":{ms(7)+3}}},'
        f'{{"ev":"XT","pair":"ETH-USD","p":3512.88,"t":{ms(8)},"s":1.5e-3,"c":[1],"i":"c5e2a7b4-9f1d-4e6a-8d3c-2b1f0a9e8d7c","x":2,"r":{ms(8)+2}}},'
        f'{{"ev":"XT","pair":"BTC-USD","p":72930.2,"t":{ms(9)},"s":0.12,"i":48212392,"x":1,"r":{ms(9)+1}}}]',
        f'[{{"ev":"XQ","pair":"BTC-USD","lp":0,"ls":0,"bp":72930.0,"bs":0.5,"ap":72930.3,"as":1.25,"t":{ms(10)},"x":1,"r":{ms(10)+4}}}]',
        # A late print: an older exchange time than the frames before it, forwarded as is.
        f'[{{"ev":"XT","pair":"BTC-USD","p":72929.9,"t":{ms(6)},"s":0.01,"c":[1],"i":"48212380","x":1,"r":{ms(11)}}}]',
        f'[{{"ev":"XA","pair":"BTC-USD","v":1.2,"vw":72930.0,"z":0,"o":72929,"c":72930,"h":72931,"l":72928,"s":{ms(0)},"e":{ms(11)}}},'
        f'{{"ev":"XAS","pair":"BTC-USD","v":0.1,"o":72930,"c":72930,"h":72930,"l":72930,"s":{ms(11)},"e":{ms(12)}}},'
        f'{{"ev":"FMV","fmv":189.53,"sym":"AAPL","t":{ms(12)}}}]',
        f'[{{"ev":"XL2","pair":"BTC-USD","t":{ms(12)},"x":1,"b":[[72930.0,0.5]],"a":[[72930.3,1.25]]}},'
        f'{{"ev":"XQ","pair":"ETH-USD","bp":3512.8,"bs":10,"ap":3513.0,"as":4.5,"t":{ms(13)},"x":2}}]',
    ]
    bad = [
        "this is not JSON",
        "\ufeff" + f'[{{"ev":"T","sym":"AAPL","p":1,"s":1,"t":{ms(20)}}}]',
        f'{{"ev":"T","sym":"AAPL","p":189.5,"s":1,"t":{ms(20)}}}',
        # One good event, then one per drop reason, then a good one: only the bad ones go.
        f'[{{"ev":"T","sym":"AAPL","p":189.55,"s":10,"t":{ms(21)}}},'
        f'{{"ev":"T","sym":"AAPL","s":10,"t":{ms(21)}}},'
        f'{{"ev":"T","sym":"AAPL","p":-189.55,"s":10,"t":{ms(21)}}},'
        f'{{"ev":"T","sym":"AAPL","p":189.55,"s":0,"t":{ms(21)}}},'
        f'{{"ev":"T","sym":"AAPL","p":189.55,"s":10,"t":{ms(21) // 1000}}},'
        f'{{"ev":"T","sym":"AAPL","p":1e400,"s":10,"t":{ms(21)}}},'
        f'{{"ev":"XT","pair":"X:BTCUSD","p":72930.1,"s":0.1,"t":{ms(21)}}},'
        f'{{"ev":"XT","pair":"BTC-USD","p":"72930.1","s":0.1,"t":{ms(21)}}},'
        f'{{"ev":"XQ","pair":"BTC-USD","bp":72930.0,"bs":-1,"ap":72930.3,"as":1,"t":{ms(21)}}},'
        f'{{"sym":"AAPL","p":189.55}},'
        f'{{"ev":"XT","pair":"BTC-USD","p":72930.4,"s":0.2,"c":[2],"t":{ms(22)}}}]',
        "[]",
        '[{"ev":"status","status":"auth_failed","message":"authentication failed"}]',
    ]
    return frames, bad


def fmt(value, decimals):
    return f"{value:.{decimals}f}"


def crc_of(asks, bids):
    """asks/bids: dict price_text -> qty_text; top 10 asks low->high, bids high->low."""
    text = ""
    for price, qty in sorted(asks.items(), key=lambda kv: float(kv[0]))[:10]:
        text += price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")
    for price, qty in sorted(bids.items(), key=lambda kv: -float(kv[0]))[:10]:
        text += price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")
    return zlib.crc32(text.encode())


def levels_json(levels):
    return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"


def book_line(kind, symbol, asks, bids, checksum, ts=None):
    stamp = f',"timestamp":"{ts}"' if ts else ""
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":{levels_json(bids)},'
            f'"asks":{levels_json(asks)},"checksum":{checksum}{stamp}}}]}}')


def apply(book, levels, depth, asks_side):
    for p, q in levels:
        if float(q) == 0:
            book.pop(p, None)
        else:
            book[p] = q
    keep = sorted(book, key=lambda p: float(p) if asks_side else -float(p))[:depth]
    for p in list(book):
        if p not in keep:
            del book[p]


def kraken_book(depth=10, corrupt=False, symbol="BTC/USD"):
    price = lambda x: fmt(x, 1)
    qty = lambda x: fmt(x, 8)
    asks = {price(72930.3 + i * 0.4): qty(0.25 + i * 0.1) for i in range(depth)}
    bids = {price(72930.0 - i * 0.3): qty(0.5 + i * 0.05) for i in range(depth)}
    lines = [book_line("snapshot", symbol, sorted(asks.items(), key=lambda kv: float(kv[0])),
                       sorted(bids.items(), key=lambda kv: -float(kv[0])), crc_of(asks, bids))]
    updates = [
        ([(price(72930.3), qty(0.3))], []),
        ([], [(price(72930.0), qty(0))]),
        ([(price(72930.2), qty(1.5))], [(price(72930.1), qty(0.75))]),
        ([(price(72934.3), qty(0))], [(price(72927.3), qty(2.0))]),
    ]
    for n, (ask_levels, bid_levels) in enumerate(updates):
        apply(asks, ask_levels, depth, True)
        apply(bids, bid_levels, depth, False)
        checksum = crc_of(asks, bids)
        if corrupt and n == 2:
            checksum ^= 0x1
        lines.append(book_line("update", symbol, ask_levels, bid_levels, checksum,
                               f"2025-11-26T16:00:0{n + 2}.{123456 + n}Z"))
    return lines


def kraken():
    ts = lambda n: f"2025-11-26T16:00:{n:02d}.{708706 + n}Z"
    frames = [
        '{"channel":"status","type":"update","data":[{"version":"2.0.8","system":"online","api_version":"v2","connection_id":18446744073709551615}]}',
        '{"method":"subscribe","result":{"channel":"trade","snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2025-11-26T16:00:00.100000Z","time_out":"2025-11-26T16:00:00.100100Z"}',
        '{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2025-11-26T16:00:00.100200Z","time_out":"2025-11-26T16:00:00.100300Z"}',
        '{"channel":"trade","type":"snapshot","data":['
        f'{{"symbol":"BTC/USD","side":"sell","price":72930.1,"qty":0.00750000,"ord_type":"market","trade_id":4665906,"timestamp":"{ts(1)}"}},'
        f'{{"symbol":"BTC/USD","side":"buy","price":72930.2,"qty":0.12000000,"ord_type":"limit","trade_id":4665907,"timestamp":"{ts(1)}"}}]}}',
        '{"channel":"heartbeat"}',
        '{"channel":"trade","type":"update","data":['
        f'{{"symbol":"ETH/USD","side":"buy","price":3512.88,"qty":1.50000000,"ord_type":"market","trade_id":98211,"timestamp":"{ts(2)}"}},'
        f'{{"symbol":"BTC/USD","side":"sell","price":72929.9,"qty":0.01000000,"ord_type":"market","trade_id":4665908,"timestamp":"{ts(3)}"}}]}}',
        '{"channel":"ticker","type":"snapshot","data":[{"symbol":"BTC/USD","bid":72930.0,"bid_qty":0.50000000,"ask":72930.3,"ask_qty":1.25000000,"last":72930.1,"volume":1234.56789,"vwap":72800.5,"low":71000.0,"high":73500.0,"change":120.5,"change_pct":0.17}]}',
        f'{{"channel":"ticker","type":"update","data":[{{"symbol":"BTC/USD","bid":72930.1,"bid_qty":0.75000000,"ask":72930.2,"ask_qty":1.50000000,"last":72930.2,"volume":1234.68789,"vwap":72800.6,"low":71000.0,"high":73500.0,"change":120.6,"change_pct":0.17,"timestamp":"{ts(4)}"}}]}}',
        f'{{"channel":"ohlc","type":"update","data":[{{"symbol":"BTC/USD","open":72900.0,"high":72931.0,"low":72899.0,"close":72930.2,"trades":42,"volume":1.5,"vwap":72920.0,"interval_begin":"{ts(0)}","interval":1,"timestamp":"{ts(5)}"}}]}}',
        '{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[]}}',
    ]
    frames += kraken_book()
    frames += [
        '{"channel":"trade","type":"update","data":['
        f'{{"symbol":"BTC/USD","side":"buy","price":72930.3,"qty":0.20000000,"ord_type":"market","trade_id":4665909,"timestamp":"{ts(9)}"}}]}}',
        '{"method":"pong","req_id":7,"time_in":"2025-11-26T16:00:10.000000Z","time_out":"2025-11-26T16:00:10.000050Z"}',
    ]
    bad = [
        '[0,{"a":["5541.30000",1,"1.000"],"b":["5541.20000",1,"1.000"]},"ticker","XBT/USD"]',
        '{"channel":"trade","type":"partial","data":[]}',
        '{"channel":"trade","type":"update","data":{"symbol":"BTC/USD"}}',
        "{not json",
        '{"type":"update","data":[]}',
        '{"channel":"trade","type":"update","data":['
        f'{{"symbol":"BTC/USD","side":"buy","price":72930.5,"qty":0.10000000,"ord_type":"market","trade_id":1,"timestamp":"{ts(20)}"}},'
        f'{{"symbol":"BTC/USD","side":"hold","price":72930.5,"qty":0.10000000,"trade_id":2,"timestamp":"{ts(20)}"}},'
        f'{{"symbol":"BTC/USD","side":"buy","price":"72930.5","qty":0.10000000,"trade_id":3,"timestamp":"{ts(20)}"}},'
        f'{{"symbol":"BTC/USD","side":"buy","price":72930.5,"qty":0.00000000,"trade_id":4,"timestamp":"{ts(20)}"}},'
        f'{{"symbol":"BTC/USD","side":"sell","price":72930.5,"qty":-0.10000000,"trade_id":5,"timestamp":"{ts(20)}"}},'
        f'{{"symbol":"BTC/USD","side":"sell","price":72930.5,"qty":0.10000000,"trade_id":6,"timestamp":"yesterday"}},'
        f'{{"symbol":"BTC/USD","side":"sell","price":72930.6,"qty":0.30000000,"ord_type":"limit","trade_id":7,"timestamp":"{ts(21)}"}}]}}',
        '{"method":"subscribe","success":false,"error":"Currency pair not supported","symbol":"FOO/BAR","time_in":"2025-11-26T16:00:22.000000Z","time_out":"2025-11-26T16:00:22.000100Z"}',
        book_line("update", "ETH/USD", [("3513.00", "1.00000000")], [], 12345, "2025-11-26T16:00:23.000000Z"),
    ]
    bad += kraken_book(corrupt=True)
    return frames, bad


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (good, bad) in {"polygon": polygon(), "kraken": kraken()}.items():
        for suffix, frames in (("", good), ("-bad", bad)):
            for frame in frames:
                if not frame.startswith("\ufeff") and frame.startswith(("[", "{")) and "not json" not in frame:
                    try:
                        json.loads(frame)
                    except ValueError as error:
                        if "1e400" not in frame:
                            raise SystemExit(f"{name}{suffix}: invalid sample frame {frame[:60]}: {error}")
            (OUT / f"{name}{suffix}.jsonl").write_text("".join(f + "\n" for f in frames), encoding="utf-8")


if __name__ == "__main__":
    main()
