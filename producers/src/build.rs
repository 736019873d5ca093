//! Building the messages: one TLV per message, market-data domain, the
//! adapter's source, a per-process sequence from 1, and `timestamp_ns` the
//! build time — or, in deterministic replay, the event's own time (0 when it
//! has none), so that the same input always gives the same bytes.

use myc_codec::{Checksum, Domain, Header, MessageWriter, Quote, Source, Trade};

/// The largest message an adapter builds (header + one Quote TLV).
const MAX_MESSAGE: usize = myc_codec::HEADER_LEN + 2 + Quote::LEN;

/// Built messages, concatenated, waiting to be published.
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    count: usize,
}

impl Outbox {
    /// The messages, concatenated.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each message.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let len = myc_codec::peek_message_len(rest)?.min(rest.len());
            let (message, tail) = rest.split_at(len);
            rest = tail;
            Some(message)
        })
    }

    /// Adds one whole message built elsewhere.
    pub fn push(&mut self, message: &[u8]) {
        self.bytes.extend_from_slice(message);
        self.count += 1;
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }
}

/// Stamps and numbers the messages of one producer process.
#[derive(Debug, Clone)]
pub struct Stamper {
    source: Source,
    sequence: u64,
    deterministic: bool,
}

impl Stamper {
    /// Messages from `source`; `deterministic` takes `timestamp_ns` from
    /// the events.
    pub fn new(source: Source, deterministic: bool) -> Stamper {
        Stamper { source, sequence: 0, deterministic }
    }

    /// Whether timestamps come from the events.
    pub fn deterministic(&self) -> bool {
        self.deterministic
    }

    /// Messages built so far.
    pub fn built(&self) -> u64 {
        self.sequence
    }

    fn header(&mut self, event_ns: u64, now_ns: u64) -> Header {
        self.sequence += 1;
        let timestamp = if self.deterministic { event_ns } else { now_ns };
        Header::new(Domain::MarketData, self.source, self.sequence, timestamp)
    }

    /// Appends a Trade message.
    pub fn trade(&mut self, trade: &Trade, now_ns: u64, out: &mut Outbox) {
        let header = self.header(trade.execution_timestamp_ns, now_ns);
        self.append(out, |writer| writer.push_trade(trade), &header);
    }

    /// Appends a Quote message; `event_ns` is the event's time (0 if none).
    pub fn quote(&mut self, quote: &Quote, event_ns: u64, now_ns: u64, out: &mut Outbox) {
        let header = self.header(event_ns, now_ns);
        self.append(out, |writer| writer.push_quote(quote), &header);
    }

    fn append(
        &mut self,
        out: &mut Outbox,
        push: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), myc_codec::Error>,
        header: &Header,
    ) {
        let start = out.bytes.len();
        out.bytes.resize(start + MAX_MESSAGE, 0);
        let written = MessageWriter::new(&mut out.bytes[start..]).and_then(|mut writer| {
            push(&mut writer)?;
            writer.finish(header, Checksum::Zero)
        });
        match written {
            Ok(len) => {
                out.bytes.truncate(start + len);
                out.count += 1;
            }
            // Cannot happen: the buffer fits the largest message built here.
            Err(_) => out.bytes.truncate(start),
        }
    }
}
