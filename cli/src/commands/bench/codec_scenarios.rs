//! The codec scenarios: build a Trade message into a reused buffer, and
//! parse + validate Trade messages (header, TLV walk, Trade fields) without
//! and with the CRC-32 checksum.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use myc_codec::{Checksum, Domain, Header, Message, MessageWriter, Source, TlvType, Trade};

use super::{RunResult, Scenario, rate};

/// Distinct messages cycled through by the parse scenarios, so the branch
/// predictor and the cache see a realistic stream rather than one message.
const N_DISTINCT: usize = 1024;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "codec_build", payload_bytes: Trade::LEN, run: build, n_messages: 20_000_000 },
        Scenario { name: "codec_parse", payload_bytes: Trade::LEN, run: parse, n_messages: 20_000_000 },
        Scenario { name: "codec_parse_crc", payload_bytes: Trade::LEN, run: parse_crc, n_messages: 10_000_000 },
    ]
}

fn sample_trade(n: u64) -> Trade {
    Trade {
        asset_id: 0x4254_4355_5344_0000,
        price: 7_293_010_000_000 + i64::try_from(n % 1000).unwrap_or(0),
        volume: 7_509_315,
        execution_timestamp_ns: 1_710_426_505_066_587_000 + n,
        venue_id: 101,
        asset_type: 51,
        reserved: 0,
        side: u8::try_from(n % 2).unwrap_or(0),
    }
}

fn build(n_messages: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    let mut buf = [0u8; 128];
    let started = Instant::now();
    for sequence in 1..=n_messages {
        let mut writer = MessageWriter::new(&mut buf)?;
        writer.push_trade(&sample_trade(black_box(sequence)))?;
        let header =
            Header::new(Domain::MarketData, Source::KrakenCollector, sequence, 1_710_426_537_049_841_000 + sequence);
        let len = writer.finish(&header, Checksum::Zero)?;
        black_box(&buf[..len]);
    }
    Ok(RunResult::rate(rate(n_messages, started.elapsed())))
}

fn parse(n_messages: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    parse_stream(n_messages, Checksum::Zero)
}

fn parse_crc(n_messages: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    parse_stream(n_messages, Checksum::Compute)
}

fn parse_stream(n_messages: u64, checksum: Checksum) -> anyhow::Result<RunResult> {
    let (stream, message_len) = distinct_messages(checksum)?;
    let verify = checksum == Checksum::Compute;
    let mut volume_sum = 0i64;
    let started = Instant::now();
    for (index, offset) in (0..n_messages).zip((0..N_DISTINCT).cycle()) {
        let start = offset * message_len;
        let message = Message::parse(black_box(&stream[start..start + message_len]))
            .with_context(|| format!("message {index}"))?;
        if verify {
            message.verify_checksum()?;
        }
        for tlv in message.tlvs() {
            if tlv.tlv_type == TlvType::Trade {
                volume_sum = volume_sum.wrapping_add(Trade::decode(tlv.payload)?.volume);
            }
        }
    }
    let elapsed = started.elapsed();
    black_box(volume_sum);
    Ok(RunResult::rate(rate(n_messages, elapsed)))
}

/// `N_DISTINCT` Trade messages back to back, and the length of each.
fn distinct_messages(checksum: Checksum) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut stream = Vec::new();
    let mut buf = [0u8; 128];
    let mut message_len = 0;
    for sequence in 1..=N_DISTINCT as u64 {
        let mut writer = MessageWriter::new(&mut buf)?;
        writer.push_trade(&sample_trade(sequence))?;
        let header = Header::new(Domain::MarketData, Source::KrakenCollector, sequence, sequence);
        message_len = writer.finish(&header, checksum)?;
        stream.extend_from_slice(&buf[..message_len]);
    }
    Ok((stream, message_len))
}
