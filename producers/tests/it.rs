//! The adapters on the bundled samples, sans-IO: exact counts, every field
//! against the source JSON, deterministic bytes, bad input counted exactly,
//! Kraken books verified, and the canonical JSON of every message pinned by
//! insta snapshots (so a change to the bytes shows up in review).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::path::PathBuf;

use myc_codec::{Message, Source};
use myc_producers::{Adapter, Binance, Coinbase, Control, FeedCounters, Kraken, Outbox, Polygon, Stamper};

fn sample(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples").join(name);
    std::fs::read_to_string(path).unwrap()
}

/// Replays `text` (JSON lines) deterministically: every message, the
/// counters, and the controls the frames asked for.
fn replay(adapter: &mut impl Adapter, text: &str) -> (Vec<Vec<u8>>, FeedCounters, Vec<Control>) {
    let mut out = Outbox::default();
    let mut messages = Vec::new();
    let mut controls = Vec::new();
    for line in text.lines() {
        if let Ok(Some(control)) = adapter.frame(line, 0, 0, &mut out) {
            controls.push(control);
        }
        messages.extend(out.messages().map(<[u8]>::to_vec));
        out.clear();
    }
    (messages, adapter.counters().clone(), controls)
}

fn polygon() -> Polygon {
    Polygon::new(Stamper::new(Source::PolygonCollector, true))
}

fn kraken() -> Kraken {
    Kraken::new(Stamper::new(Source::KrakenCollector, true), 10)
}

fn canonical(messages: &[Vec<u8>]) -> String {
    messages.iter().map(|bytes| myc_codec::to_json_string(&Message::parse(bytes).unwrap()) + "\n").collect()
}

fn dropped(counters: &FeedCounters, reason: &str) -> u64 {
    counters.events_dropped.get(reason).copied().unwrap_or(0)
}

#[test]
fn polygon_samples_map_every_event_with_exact_counts() {
    let (messages, counters, controls) = replay(&mut polygon(), &sample("polygon.jsonl"));
    assert_eq!(messages.len(), 12);
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (11, 0, 3));
    assert_eq!(counters.events_published, 12);
    assert!(counters.events_dropped.values().all(|&n| n == 0), "{counters:?}");
    let ignored: Vec<_> = counters.events_ignored.iter().map(|(kind, n)| (kind.as_str(), *n)).collect();
    assert_eq!(ignored, [("A", 1), ("AM", 1), ("FMV", 1), ("LULD", 1), ("XA", 1), ("XAS", 1), ("XL2", 1)]);
    assert!(controls.is_empty());
    // Sequences from 1, one per message.
    for (index, bytes) in messages.iter().enumerate() {
        assert_eq!(Message::parse(bytes).unwrap().header().sequence, index as u64 + 1);
    }
}

#[test]
fn polygon_fields_are_exact_from_the_decimal_text() {
    let (messages, _, _) = replay(&mut polygon(), &sample("polygon.jsonl"));
    let trade = |index: usize| {
        myc_codec::Trade::decode(Message::parse(&messages[index]).unwrap().tlvs().next().unwrap().payload).unwrap()
    };
    let aapl = trade(0);
    assert_eq!(
        (aapl.asset_id, aapl.price, aapl.volume),
        (myc_codec::asset_id("AAPL").unwrap(), 18_952_000_000, 10_000_000_000)
    );
    assert_eq!(
        (aapl.execution_timestamp_ns, aapl.venue_id, aapl.asset_type, aapl.side),
        (1_764_172_800_137_000_000, 0, 1, 2)
    );
    let msft = trade(1);
    assert_eq!((msft.price, msft.volume), (41_230_000_000, 1_250_000_000), "`ds` stands in for a missing `s`");
    let btc = trade(6);
    assert_eq!((btc.asset_id, btc.price, btc.volume, btc.side), (0x4254_4355_5344_0000, 7_293_010_000_000, 750_000, 0));
    let eth = trade(7);
    assert_eq!((eth.volume, eth.side, eth.asset_type), (150_000, 1, 51), "1.5e-3 read exactly; c [1] is a sell");
    assert_eq!(trade(8).side, 2, "no conditions: side unknown");
}

#[test]
fn polygon_bad_input_is_counted_exactly_and_the_good_events_around_it_published() {
    let (messages, counters, controls) = replay(&mut polygon(), &sample("polygon-bad.jsonl"));
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (6, 3, 1));
    assert_eq!(messages.len(), 2);
    assert_eq!(counters.events_published, 2);
    for (reason, n) in
        [("bad_field", 3), ("negative", 2), ("zero_size", 1), ("bad_timestamp", 1), ("overflow", 1), ("bad_symbol", 1)]
    {
        assert_eq!(dropped(&counters, reason), n, "{reason}: {counters:?}");
    }
    assert_eq!(controls, [Control::Stop("authentication failed".to_owned())]);
}

#[test]
fn kraken_samples_map_trades_and_tickers_and_verify_every_book_update() {
    let mut adapter = kraken();
    let (messages, counters, controls) = replay(&mut adapter, &sample("kraken.jsonl"));
    assert_eq!(messages.len(), 7);
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (17, 0, 5));
    assert_eq!((counters.events_published, counters.book_resyncs), (7, 0));
    assert_eq!(adapter.checksums_verified, 5, "the snapshot and four updates");
    assert!(controls.is_empty());
    let ignored: Vec<_> = counters.events_ignored.iter().map(|(kind, n)| (kind.as_str(), *n)).collect();
    assert_eq!(ignored, [("instrument", 1), ("ohlc", 1), ("subscribe_failed", 0)]);
    let first = Message::parse(&messages[0]).unwrap();
    let trade = myc_codec::Trade::decode(first.tlvs().next().unwrap().payload).unwrap();
    assert_eq!((trade.price, trade.volume, trade.side, trade.venue_id), (7_293_010_000_000, 750_000, 1, 101));
    assert_eq!(trade.execution_timestamp_ns, 1_764_172_801_708_707_000);
    assert_eq!(first.header().timestamp_ns, trade.execution_timestamp_ns, "deterministic: the event's time");
    let ticker = Message::parse(&messages[4]).unwrap();
    assert_eq!(ticker.header().timestamp_ns, 0, "a ticker without a timestamp, replayed deterministically");
}

#[test]
fn kraken_bad_input_and_a_corrupted_book_update_are_detected_and_counted() {
    let (messages, counters, controls) = replay(&mut kraken(), &sample("kraken-bad.jsonl"));
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (13, 5, 1));
    assert_eq!((messages.len(), counters.events_published), (2, 2));
    for (reason, n) in [("bad_field", 2), ("zero_size", 1), ("negative", 1), ("bad_timestamp", 1)] {
        assert_eq!(dropped(&counters, reason), n, "{reason}: {counters:?}");
    }
    assert_eq!(counters.events_ignored["subscribe_failed"], 1);
    // ETH/USD has no snapshot; BTC/USD's third update is corrupted, and the
    // update after it finds no book until a new snapshot.
    assert_eq!(counters.book_resyncs, 3);
    let resubscribed: Vec<_> = controls.iter().map(|control| format!("{control:?}")).collect();
    assert_eq!(resubscribed, ["Resubscribe(\"ETH/USD\")", "Resubscribe(\"BTC/USD\")", "Resubscribe(\"BTC/USD\")"]);
}

#[test]
fn deterministic_replays_give_identical_bytes() {
    for (name, first, second) in [
        (
            "polygon.jsonl",
            replay(&mut polygon(), &sample("polygon.jsonl")).0,
            replay(&mut polygon(), &sample("polygon.jsonl")).0,
        ),
        (
            "kraken.jsonl",
            replay(&mut kraken(), &sample("kraken.jsonl")).0,
            replay(&mut kraken(), &sample("kraken.jsonl")).0,
        ),
    ] {
        assert_eq!(first, second, "{name}");
    }
}

#[test]
fn the_sample_streams_canonical_json_is_pinned() {
    insta::assert_snapshot!("polygon", canonical(&replay(&mut polygon(), &sample("polygon.jsonl")).0));
    insta::assert_snapshot!("kraken", canonical(&replay(&mut kraken(), &sample("kraken.jsonl")).0));
    insta::assert_snapshot!("polygon_bad", canonical(&replay(&mut polygon(), &sample("polygon-bad.jsonl")).0));
    insta::assert_snapshot!("kraken_bad", canonical(&replay(&mut kraken(), &sample("kraken-bad.jsonl")).0));
}

/// Hostile feed input: a kind per event, a symbol per book, and symbols
/// made to break out of the resubscribe message.
mod hostile_feed {
    use super::*;
    use myc_producers::{Book, MAX_IGNORED_KINDS, OTHER_KIND};

    #[test]
    fn a_million_distinct_unknown_kinds_keep_the_ignored_counts_bounded() {
        let mut polygon = polygon();
        let mut kraken = kraken();
        let mut out = Outbox::default();
        for n in 0..1_000_000u32 {
            polygon.frame(&format!(r#"[{{"ev":"K{n}"}}]"#), 0, 0, &mut out).unwrap();
            kraken.frame(&format!(r#"{{"channel":"c{n}"}}"#), 0, 0, &mut out).unwrap();
        }
        // A kind far longer than any real one is not kept either.
        let long = "x".repeat(100_000);
        polygon.frame(&format!(r#"[{{"ev":"{long}"}}]"#), 0, 0, &mut out).unwrap();
        for (adapter, counters) in [("polygon", polygon.counters()), ("kraken", kraken.counters())] {
            let ignored = &counters.events_ignored;
            assert!(ignored.len() <= MAX_IGNORED_KINDS + 1, "{adapter}: {} kinds kept", ignored.len());
            assert!(ignored.keys().all(|kind| kind.len() <= 64), "{adapter}");
            let total: u64 = ignored.values().sum();
            let expected = if adapter == "polygon" { 1_000_001 } else { 1_000_000 };
            assert_eq!(total, expected, "{adapter}: every event is still counted");
            assert!(ignored[OTHER_KIND] > 999_000, "{adapter}: {:?}", ignored.get(OTHER_KIND));
        }
        // A kind seen before the limit keeps its own count.
        polygon.frame(r#"[{"ev":"K0"}]"#, 0, 0, &mut out).unwrap();
        assert_eq!(polygon.counters().events_ignored["K0"], 2);
    }

    #[test]
    fn a_hundred_thousand_kraken_symbols_keep_at_most_max_books_books() {
        let mut kraken = kraken().max_books(1024);
        let empty_checksum = Book::new(10).checksum();
        let mut out = Outbox::default();
        let mut resubscribes = 0u64;
        for n in 0..100_000u32 {
            let snapshot = format!(
                r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"S{n}/USD","bids":[],"asks":[],"checksum":{empty_checksum}}}]}}"#
            );
            let update = format!(
                r#"{{"channel":"book","type":"update","data":[{{"symbol":"U{n}/USD","bids":[],"asks":[],"checksum":1}}]}}"#
            );
            for text in [snapshot, update] {
                if let Ok(Some(Control::Resubscribe(_))) = kraken.frame(&text, 0, 0, &mut out) {
                    resubscribes += 1;
                }
            }
        }
        assert_eq!(kraken.books_kept(), 1024);
        let counters = kraken.counters();
        // Every frame past the limit is dropped and counted, and asks for no
        // resubscribe (its snapshot would be dropped too).
        assert_eq!(dropped(counters, "book_limit"), 200_000 - 1024 - resubscribes);
        assert!(resubscribes <= 1024, "{resubscribes}");
        assert_eq!(kraken.checksums_verified, 1024);
    }

    #[test]
    fn a_symbol_with_quotes_and_backslashes_gives_a_valid_resubscribe_message() {
        let template = r#"{"method":"subscribe","params":{"channel":"book","depth":10,"symbol":["{symbol}"]}}"#;
        for symbol in [r#"BTC"]},"x":{"y":"#, r"ETH\", "\\\"", "\u{0}\n\u{7f}é", "{symbol}"] {
            let message = myc_producers::resubscribe_message(template, symbol);
            let parsed: serde_json::Value = serde_json::from_str(&message).unwrap();
            assert_eq!(parsed["params"]["symbol"][0], symbol, "{message}");
            assert_eq!(parsed["params"]["channel"], "book", "{message}");
            assert_eq!(parsed.as_object().unwrap().len(), 2, "{message}");
        }
    }
}

fn coinbase() -> Coinbase {
    Coinbase::new(Stamper::new(Source::CoinbaseCollector, true))
}

fn binance() -> Binance {
    Binance::new(Stamper::new(Source::BinanceCollector, true))
}

fn decoded_trade(message: &[u8]) -> myc_codec::Trade {
    myc_codec::Trade::decode(Message::parse(message).unwrap().tlvs().next().unwrap().payload).unwrap()
}

fn decoded_quote(message: &[u8]) -> myc_codec::Quote {
    myc_codec::Quote::decode(Message::parse(message).unwrap().tlvs().next().unwrap().payload).unwrap()
}

fn ignored(counters: &FeedCounters) -> Vec<(&str, u64)> {
    counters.events_ignored.iter().map(|(kind, n)| (kind.as_str(), *n)).collect()
}

#[test]
fn coinbase_samples_map_matches_and_tickers_from_their_decimal_strings() {
    let (messages, counters, controls) = replay(&mut coinbase(), &sample("coinbase.jsonl"));
    assert_eq!(messages.len(), 7);
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (11, 0, 2));
    assert_eq!(counters.events_published, 7);
    assert!(counters.events_dropped.values().all(|&n| n == 0), "{counters:?}");
    assert_eq!(ignored(&counters), [("error", 0), ("l2update", 1), ("status", 1)]);
    assert!(controls.is_empty());
    let last_match = decoded_trade(&messages[0]);
    assert_eq!(
        (last_match.asset_id, last_match.price, last_match.volume, last_match.side),
        (myc_codec::asset_id("BTC-USD").unwrap(), 7_293_010_000_000, 750_000, 1),
        "last_match is a trade like match; side sell as sent"
    );
    assert_eq!((last_match.venue_id, last_match.asset_type), (102, 51));
    assert_eq!(last_match.execution_timestamp_ns, 1_764_172_801_028_570_000, "RFC 3339 with microseconds");
    assert_eq!(decoded_trade(&messages[1]).side, 0, "buy");
    let first_ticker = Message::parse(&messages[2]).unwrap();
    assert_eq!(first_ticker.header().timestamp_ns, 0, "a ticker without time, replayed deterministically");
    let quote = decoded_quote(&messages[2]);
    assert_eq!(
        (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size, quote.quote_timestamp_ns),
        (7_293_000_000_000, 50_000_000, 7_293_030_000_000, 125_000_000, 0)
    );
    let eth_ticker = decoded_quote(&messages[4]);
    assert_eq!((eth_ticker.bid_size, eth_ticker.quote_timestamp_ns), (1_000_000_000, 1_764_172_804_028_903_000));
    assert_eq!(decoded_trade(&messages[5]).execution_timestamp_ns, 1_764_172_800_028_459_000, "a late print as is");
    for (index, bytes) in messages.iter().enumerate() {
        let message = Message::parse(bytes).unwrap();
        let header = message.header();
        assert_eq!((header.sequence, header.source), (index as u64 + 1, Source::CoinbaseCollector));
    }
}

#[test]
fn coinbase_bad_input_is_counted_by_reason_and_errors_do_not_stop_the_replay() {
    let (messages, counters, controls) = replay(&mut coinbase(), &sample("coinbase-bad.jsonl"));
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (15, 4, 1));
    assert_eq!((messages.len(), counters.events_published), (2, 2));
    for (reason, n) in
        [("bad_field", 3), ("negative", 1), ("zero_size", 1), ("bad_timestamp", 1), ("overflow", 1), ("bad_symbol", 1)]
    {
        assert_eq!(dropped(&counters, reason), n, "{reason}: {counters:?}");
    }
    assert_eq!(counters.events_ignored["error"], 1);
    assert!(controls.is_empty(), "an error frame asks nothing of the connection: the server closes it if fatal");
    assert_eq!(decoded_trade(&messages[1]).price, 7_293_060_000_000, "the good match after the bad ones");
}

#[test]
fn binance_samples_map_raw_and_combined_streams() {
    let (messages, counters, controls) = replay(&mut binance(), &sample("binance.jsonl"));
    assert_eq!(messages.len(), 6);
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (10, 0, 2));
    assert_eq!(counters.events_published, 6);
    assert!(counters.events_dropped.values().all(|&n| n == 0), "{counters:?}");
    assert_eq!(ignored(&counters), [("24hrTicker", 1), ("aggTrade", 1), ("error", 0)]);
    assert!(controls.is_empty());
    let first = Message::parse(&messages[0]).unwrap();
    assert_eq!((first.header().sequence, first.header().source), (1, Source::BinanceCollector));
    let sold = decoded_trade(&messages[0]);
    assert_eq!(
        (sold.asset_id, sold.price, sold.volume, sold.side, sold.venue_id, sold.asset_type),
        (myc_codec::asset_id("BTCUSDT").unwrap(), 7_293_010_000_000, 750_000, 1, 100, 51),
        "the buyer is the maker (m true): the taker sold"
    );
    assert_eq!(sold.execution_timestamp_ns, 1_764_172_800_137_000_000, "T in ms");
    assert_eq!(decoded_trade(&messages[1]).side, 0, "m false: a buy");
    let eth = decoded_trade(&messages[2]);
    assert_eq!((eth.asset_id, eth.volume), (myc_codec::asset_id("ETHUSDT").unwrap(), 150_000_000), "combined stream");
    for index in [3, 4] {
        let quote = Message::parse(&messages[index]).unwrap();
        assert_eq!(quote.header().timestamp_ns, 0, "a bookTicker has no event time: 0 in deterministic replay");
        assert_eq!(decoded_quote(&messages[index]).quote_timestamp_ns, 0);
    }
    let quote = decoded_quote(&messages[3]);
    assert_eq!(
        (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size),
        (7_293_000_000_000, 50_000_000, 7_293_030_000_000, 125_000_000)
    );
    assert_eq!(decoded_quote(&messages[4]).ask_size, 0, "an empty side is a quote size of zero");
}

#[test]
fn a_binance_book_ticker_carries_the_receive_time_when_live() {
    let mut adapter = Binance::new(Stamper::new(Source::BinanceCollector, false));
    let mut out = Outbox::default();
    let frame = r#"{"u":1,"s":"BTCUSDT","b":"1.00","B":"2.00","a":"1.01","A":"3.00"}"#;
    adapter.frame(frame, 1_764_172_800_000_000_123, 1_764_172_800_000_000_456, &mut out).unwrap();
    let message = out.messages().next().unwrap();
    assert_eq!(decoded_quote(message).quote_timestamp_ns, 1_764_172_800_000_000_123);
    assert_eq!(Message::parse(message).unwrap().header().timestamp_ns, 1_764_172_800_000_000_456, "build time");
}

#[test]
fn binance_bad_input_is_counted_by_reason_and_errors_are_counted() {
    let (messages, counters, controls) = replay(&mut binance(), &sample("binance-bad.jsonl"));
    assert_eq!((counters.frames, counters.frames_rejected, counters.frames_control), (17, 5, 2));
    assert_eq!((messages.len(), counters.events_published), (2, 2));
    for (reason, n) in
        [("bad_field", 2), ("negative", 2), ("zero_size", 1), ("bad_timestamp", 1), ("overflow", 1), ("bad_symbol", 1)]
    {
        assert_eq!(dropped(&counters, reason), n, "{reason}: {counters:?}");
    }
    assert_eq!(counters.events_ignored["error"], 2);
    assert!(controls.is_empty());
}

#[test]
fn hostile_frames_never_panic_and_are_rejected_or_dropped() {
    let frames = [
        "",
        "{",
        "}",
        "null",
        "0",
        "\"x\"",
        "[]",
        "[{}]",
        "{}",
        "{\"type\":null}",
        "{\"type\":\"match\"}",
        "{\"e\":\"trade\"}",
        "{\"e\":7}",
        "{\"stream\":null,\"data\":null}",
        "{\"stream\":\"s\",\"data\":\"x\"}",
        "{\"type\":\"match\",\"price\":\"\\u0031\",\"size\":\"1\",\"side\":\"buy\",\"product_id\":\"A\",\"time\":\"x\"}",
        "{\"e\":\"trade\",\"s\":\"BTCUSDT\",\"p\":\"1e99999\",\"q\":\"1\",\"T\":1764172800000,\"m\":true}",
        "{\"e\":\"trade\",\"s\":\"BTCUSDT\",\"p\":\"1\",\"q\":\"1\",\"T\":99999999999999999999999,\"m\":true}",
    ];
    let mut out = Outbox::default();
    let (mut coinbase, mut binance) = (coinbase(), binance());
    for frame in frames {
        let _ = coinbase.frame(frame, 0, 0, &mut out);
        let _ = binance.frame(frame, 0, 0, &mut out);
    }
    assert!(out.is_empty(), "nothing built from any of them");
    for counters in [coinbase.counters(), binance.counters()] {
        let dropped: u64 = counters.events_dropped.values().sum();
        let ignored: u64 = counters.events_ignored.values().sum();
        assert_eq!(counters.frames, frames.len() as u64);
        assert_eq!(
            counters.frames_rejected + dropped + ignored + counters.frames_control,
            frames.len() as u64,
            "{counters:?}"
        );
    }
}

#[test]
fn coinbase_and_binance_replays_are_deterministic_and_pinned() {
    assert_eq!(
        replay(&mut coinbase(), &sample("coinbase.jsonl")).0,
        replay(&mut coinbase(), &sample("coinbase.jsonl")).0
    );
    assert_eq!(replay(&mut binance(), &sample("binance.jsonl")).0, replay(&mut binance(), &sample("binance.jsonl")).0);
    insta::assert_snapshot!("coinbase", canonical(&replay(&mut coinbase(), &sample("coinbase.jsonl")).0));
    insta::assert_snapshot!("binance", canonical(&replay(&mut binance(), &sample("binance.jsonl")).0));
    insta::assert_snapshot!("coinbase_bad", canonical(&replay(&mut coinbase(), &sample("coinbase-bad.jsonl")).0));
    insta::assert_snapshot!("binance_bad", canonical(&replay(&mut binance(), &sample("binance-bad.jsonl")).0));
}
