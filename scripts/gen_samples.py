#!/usr/bin/env python3
"""Writes the bundled sample feeds in producers/samples/, from the documented
formats: Polygon.io stocks and crypto clusters, Kraken WebSocket v2, the
Coinbase Exchange feed (matches and ticker) and Binance spot streams (raw and
combined), each a JSON Lines replay file (one frame per line, as
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


def coinbase():
    ts = lambda n: f"2025-11-26T16:00:{n:02d}.{28459 + n * 111:06d}Z"
    match = lambda kind, trade_id, product, price, size, side, n, extra="": (
        f'{{"type":"{kind}","trade_id":{trade_id},"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8",'
        f'"taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","side":"{side}","size":"{size}","price":"{price}",'
        f'"product_id":"{product}","sequence":{50 + trade_id},"time":"{ts(n)}"{extra}}}')
    frames = [
        '{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD","ETH-USD"]},'
        '{"name":"ticker","product_ids":["BTC-USD","ETH-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}',
        match("last_match", 4665906, "BTC-USD", "72930.10", "0.00750000", "sell", 1),
        match("match", 4665907, "BTC-USD", "72930.20", "0.12000000", "buy", 2),
        f'{{"type":"heartbeat","sequence":90,"last_trade_id":4665907,"product_id":"BTC-USD","time":"{ts(2)}"}}',
        # The first ticker after a subscribe: no time, no trade.
        '{"type":"ticker","sequence":37475248783,"product_id":"BTC-USD","price":"72930.20","open_24h":"71000.00",'
        '"volume_24h":"1234.56789000","low_24h":"70500.00","high_24h":"73500.00","volume_30d":"40000.12345678",'
        '"best_bid":"72930.00","best_bid_size":"0.50000000","best_ask":"72930.30","best_ask_size":"1.25000000"}',
        match("match", 98211, "ETH-USD", "3512.88", "1.50000000", "buy", 3),
        f'{{"type":"ticker","sequence":37475248790,"product_id":"ETH-USD","price":"3512.88","open_24h":"3490.00",'
        f'"volume_24h":"98765.43210000","low_24h":"3400.00","high_24h":"3600.00","volume_30d":"2000000.00000000",'
        f'"best_bid":"3512.80","best_bid_size":"10.00000000","best_ask":"3513.00","best_ask_size":"4.50000000",'
        f'"side":"buy","time":"{ts(4)}","trade_id":98211,"last_size":"1.50000000"}}',
        # A late print, and extra fields a newer feed may add.
        match("match", 4665905, "BTC-USD", "72929.90", "0.01000000", "sell", 0, ',"profile_id":"x","user_id":"y"'),
        f'{{"type":"l2update","product_id":"BTC-USD","changes":[["buy","72930.00","0.40000000"]],"time":"{ts(5)}"}}',
        f'{{"type":"status","products":[],"currencies":[]}}',
        match("match", 4665908, "BTC-USD", "72930.30", "0.20000000", "buy", 6),
    ]
    bad = [
        "this is not JSON",
        f'[{match("match", 1, "BTC-USD", "72930.10", "0.1", "buy", 10)}]',
        '{"product_id":"BTC-USD","price":"72930.10"}',
        '{"type":5}',
        '{"type":"error","message":"Failed to subscribe","reason":"ZZZ-USD is not a valid product"}',
        match("match", 2, "BTC-USD", "72930.50", "0.10000000", "buy", 11),
        match("match", 3, "BTC-USD", "72930.50", "0.10000000", "hold", 11),
        match("match", 4, "BTC-USD", "72930.50", "0.00000000", "buy", 11),
        match("match", 5, "BTC-USD", "-72930.50", "0.10000000", "sell", 11),
        match("match", 6, "BTC-USD", "72930.50", "123456789012.5", "sell", 11),
        match("match", 7, "", "72930.50", "0.10000000", "sell", 11),
        match("match", 8, "BTC-USD", "72930.50", "0.10000000", "sell", 11).replace(ts(11), "yesterday"),
        match("match", 9, "BTC-USD", "72930.50", "0.10000000", "sell", 11).replace('"price":"72930.50"', '"price":72930.5'),
        f'{{"type":"ticker","product_id":"BTC-USD","best_bid":"72930.00","best_ask":"72930.30","best_ask_size":"1.0","time":"{ts(12)}"}}',
        match("match", 10, "BTC-USD", "72930.60", "0.30000000", "sell", 13),
    ]
    return frames, bad


def binance():
    ms = lambda n: T0_MS + n * 137
    trade = lambda symbol, trade_id, price, qty, maker, n: (
        f'{{"e":"trade","E":{ms(n) + 2},"s":"{symbol}","t":{trade_id},"p":"{price}","q":"{qty}",'
        f'"T":{ms(n)},"m":{maker},"M":true}}')
    combined = lambda stream, data: f'{{"stream":"{stream}","data":{data}}}'
    book = lambda u, symbol, b, bq, a, aq: (
        f'{{"u":{u},"s":"{symbol}","b":"{b}","B":"{bq}","a":"{a}","A":"{aq}"}}')
    frames = [
        '{"result":null,"id":1}',
        trade("BTCUSDT", 12345, "72930.10000000", "0.00750000", "true", 1),
        trade("BTCUSDT", 12346, "72930.20000000", "0.12000000", "false", 2),
        combined("ethusdt@trade", trade("ETHUSDT", 98211, "3512.88000000", "1.50000000", "false", 3)),
        book(400900217, "BTCUSDT", "72930.00000000", "0.50000000", "72930.30000000", "1.25000000"),
        combined("ethusdt@bookTicker", book(400900218, "ETHUSDT", "3512.80000000", "10.00000000", "3513.00000000", "0.00000000")),
        f'{{"e":"aggTrade","E":{ms(4)},"s":"BTCUSDT","a":5933014,"p":"72930.10","q":"0.1","f":100,"l":105,"T":{ms(4)},"m":true,"M":true}}',
        combined("btcusdt@ticker", f'{{"e":"24hrTicker","E":{ms(5)},"s":"BTCUSDT","p":"120.5","P":"0.17","c":"72930.20"}}'),
        '{"result":["btcusdt@trade","ethusdt@trade","btcusdt@bookTicker","ethusdt@bookTicker"],"id":2}',
        # A late print: an older trade time than the frames before it.
        combined("btcusdt@trade", trade("BTCUSDT", 12340, "72929.90000000", "0.01000000", "true", 0)),
    ]
    bad = [
        "this is not JSON",
        "[1,2,3]",
        '{"stream":"btcusdt@trade"}',
        '{"stream":"btcusdt@trade","data":[1]}',
        '{"foo":1}',
        '{"error":{"code":2,"msg":"Invalid request: unknown property"},"id":3}',
        '{"code":-1121,"msg":"Invalid symbol."}',
        trade("BTCUSDT", 1, "72930.50000000", "0.10000000", "true", 10),
        trade("BTCUSDT", 2, "72930.50000000", "0.10000000", '"true"', 10),
        trade("BTCUSDT", 3, "72930.50000000", "0.10000000", "true", 10).replace('"p":"72930.50000000"', '"p":72930.5'),
        trade("BTCUSDT", 4, "72930.50000000", "0.00000000", "true", 10),
        trade("BTCUSDT", 5, "-72930.50000000", "0.10000000", "false", 10),
        trade("BTCUSDT", 6, "72930.50000000", "0.10000000", "false", 10).replace(f'"T":{ms(10)}', f'"T":{ms(10) // 1000}'),
        trade("", 7, "72930.50000000", "0.10000000", "false", 10),
        trade("BTCUSDT", 8, "72930.50000000", "123456789012.5", "false", 10),
        combined("btcusdt@bookTicker", book(400900219, "BTCUSDT", "72930.00000000", "-1.00000000", "72930.30000000", "1.0")),
        combined("btcusdt@trade", trade("BTCUSDT", 9, "72930.60000000", "0.30000000", "false", 11)),
    ]
    return frames, bad


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (good, bad) in {"polygon": polygon(), "kraken": kraken(), "coinbase": coinbase(), "binance": binance()}.items():
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
