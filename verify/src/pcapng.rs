//! Capture files in pcapng (docs/capture.md §1): one Section Header Block, one
//! Interface Description Block per stream (link type `LINKTYPE_USER0` = 147,
//! `if_tsresol` = 9 for nanoseconds, `if_name` naming the stream), and one
//! Enhanced Packet Block per message whose data is the exact message bytes.
//!
//! A small, documented module rather than a general pcapng library: the
//! writer emits only those three block types (little-endian), and the reader
//! reads them in either byte order, skips every other block type, and stops
//! at the first corrupt or truncated block with the byte offset of the
//! problem, keeping everything before it. Streaming both ways, in bounded
//! memory: a block's length is checked before its body is read.

use std::io::{self, BufWriter, Read, Write};

/// `LINKTYPE_USER0`: private use, as the spec fixes for Protocol V2 streams.
pub const LINKTYPE_USER0: u16 = 147;
/// The largest block the reader accepts (a 1 MiB message plus headroom).
pub const MAX_BLOCK_LEN: u32 = 16 * 1024 * 1024;

const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
const ENHANCED_PACKET: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;

/// A stream's interface in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `if_name`: `relay:<path>`, `broker:<topic>`, `nats:<subject>`, …
    pub name: String,
    /// The link type (147 for our streams).
    pub link_type: u16,
    /// Timestamp units per second (10^9 for our streams).
    pub units_per_second: u64,
}

/// One captured message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Index of its interface, in order of appearance.
    pub interface: u32,
    /// Arrival time, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Writes a capture, streaming and buffered. Every block is complete before
/// the next starts, so a file cut short by a crash is valid up to its last
/// whole block.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: BufWriter<W>,
    interfaces: u32,
}

impl<W: Write> Writer<W> {
    /// Starts a capture: writes the Section Header Block.
    ///
    /// # Errors
    /// When writing fails.
    pub fn new(out: W) -> io::Result<Writer<W>> {
        let mut writer = Writer { out: BufWriter::with_capacity(256 * 1024, out), interfaces: 0 };
        let mut body = Vec::with_capacity(16);
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        writer.block(SECTION_HEADER, &body)?;
        Ok(writer)
    }

    /// Adds a stream; returns its interface index for [`Writer::packet`].
    ///
    /// # Errors
    /// When writing fails.
    pub fn interface(&mut self, name: &str) -> io::Result<u32> {
        let mut body = Vec::with_capacity(32 + name.len());
        body.extend_from_slice(&LINKTYPE_USER0.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes()); // snaplen: no limit
        option(&mut body, IF_NAME, name.as_bytes());
        option(&mut body, IF_TSRESOL, &[9]);
        option(&mut body, OPT_END, &[]);
        self.block(INTERFACE_DESCRIPTION, &body)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Writes one message of `interface`, arrived at `timestamp_ns`.
    ///
    /// # Errors
    /// An unknown interface or a message over the block limit
    /// (`InvalidInput`), or a failed write.
    pub fn packet(&mut self, interface: u32, timestamp_ns: u64, data: &[u8]) -> io::Result<()> {
        if interface >= self.interfaces {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no interface {interface}")));
        }
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&len| len <= MAX_BLOCK_LEN - 64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message too large for a capture block"))?;
        let padded = data.len().next_multiple_of(4);
        let total = u32::try_from(12 + 20 + padded).unwrap_or(u32::MAX);
        let mut head = [0u8; 28];
        head[0..4].copy_from_slice(&ENHANCED_PACKET.to_le_bytes());
        head[4..8].copy_from_slice(&total.to_le_bytes());
        head[8..12].copy_from_slice(&interface.to_le_bytes());
        head[12..16].copy_from_slice(&u32::try_from(timestamp_ns >> 32).unwrap_or(0).to_le_bytes());
        head[16..20].copy_from_slice(&u32::try_from(timestamp_ns & 0xFFFF_FFFF).unwrap_or(0).to_le_bytes());
        head[20..24].copy_from_slice(&len.to_le_bytes());
        head[24..28].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(data)?;
        self.out.write_all(&[0u8; 3][..padded - data.len()])?;
        self.out.write_all(&total.to_le_bytes())
    }

    /// Flushes and returns the inner writer.
    ///
    /// # Errors
    /// When flushing fails.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(io::IntoInnerError::into_error)
    }

    /// Flushes what is buffered (so the file on disk is valid so far).
    ///
    /// # Errors
    /// When flushing fails.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn block(&mut self, block_type: u32, body: &[u8]) -> io::Result<()> {
        let total = u32::try_from(12 + body.len()).unwrap_or(u32::MAX);
        self.out.write_all(&block_type.to_le_bytes())?;
        self.out.write_all(&total.to_le_bytes())?;
        self.out.write_all(body)?;
        self.out.write_all(&total.to_le_bytes())
    }
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_le_bytes());
    body.extend_from_slice(value);
    body.resize(body.len().next_multiple_of(4), 0);
}

/// Why a capture stopped being readable, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {reason}")]
pub struct ReadError {
    /// Offset of the block (or field) where the problem is.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Reads a capture block by block.
#[derive(Debug)]
pub struct Reader<R: Read> {
    input: R,
    /// Offset of the next block.
    offset: u64,
    big_endian: bool,
    interfaces: Vec<Interface>,
    seen_section: bool,
    /// The current block's body (reused from block to block).
    body: Vec<u8>,
}

impl<R: Read> Reader<R> {
    /// A reader over `input` (nothing is read yet).
    pub fn new(input: R) -> Reader<R> {
        Reader { input, offset: 0, big_endian: false, interfaces: Vec::new(), seen_section: false, body: Vec::new() }
    }

    /// Bytes consumed so far: the offset of the next block.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The interfaces seen so far.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// The next packet; `Ok(None)` at a clean end of file.
    ///
    /// # Errors
    /// A [`ReadError`] naming the byte offset of the first corrupt or
    /// truncated block; packets before it were returned already.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        loop {
            let block_offset = self.offset;
            let fail = |reason: String| ReadError { offset: block_offset, reason };
            let mut head = [0u8; 8];
            match read_full(&mut self.input, &mut head) {
                Ok(0) => return Ok(None),
                Ok(8) => {}
                Ok(_) => return Err(fail("truncated block header".to_owned())),
                Err(error) => return Err(fail(format!("read failed: {error}"))),
            }
            let raw_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            if raw_type == SECTION_HEADER {
                let mut magic = [0u8; 4];
                if read_full(&mut self.input, &mut magic).map_err(|error| fail(error.to_string()))? != 4 {
                    return Err(fail("truncated section header".to_owned()));
                }
                self.big_endian = match u32::from_le_bytes(magic) {
                    BYTE_ORDER_MAGIC => false,
                    magic if magic.swap_bytes() == BYTE_ORDER_MAGIC => true,
                    _ => return Err(fail("bad byte-order magic".to_owned())),
                };
                let total = self.u32(&head[4..8]);
                self.read_body(block_offset, total, 4)?;
                self.seen_section = true;
                continue;
            }
            if !self.seen_section {
                return Err(fail("not a pcapng file (no section header block)".to_owned()));
            }
            let block_type = self.u32(&head[0..4]);
            let total = self.u32(&head[4..8]);
            self.read_body(block_offset, total, 0)?;
            match block_type {
                INTERFACE_DESCRIPTION => {
                    let interface = self.parse_interface(&self.body).map_err(|reason| fail(reason.to_owned()))?;
                    self.interfaces.push(interface);
                }
                ENHANCED_PACKET => {
                    return self.parse_packet(&self.body).map(Some).map_err(|reason| fail(reason.to_owned()));
                }
                _ => {}
            }
        }
    }

    /// Reads the rest of a block whose total length is `total` (`already`
    /// body bytes were consumed) into `self.body` and checks the trailing
    /// length.
    fn read_body(&mut self, block_offset: u64, total: u32, already: usize) -> Result<(), ReadError> {
        let fail = |reason: &str| ReadError { offset: block_offset, reason: reason.to_owned() };
        if total < 12 || total % 4 != 0 {
            return Err(fail("bad block length"));
        }
        if total > MAX_BLOCK_LEN {
            return Err(fail("block longer than the 16 MiB limit"));
        }
        let body_len = total as usize - 12 - already;
        let mut rest = std::mem::take(&mut self.body);
        rest.resize(body_len + 4, 0);
        let read = read_full(&mut self.input, &mut rest);
        let trailer = if rest.len() >= 4 { self.u32(&rest[body_len..]) } else { 0 };
        rest.truncate(body_len);
        self.body = rest;
        match read {
            Err(error) => return Err(fail(&error.to_string())),
            Ok(n) if n < body_len + 4 => return Err(fail("truncated block")),
            Ok(_) => {}
        }
        if trailer != total {
            return Err(fail("trailing block length does not match"));
        }
        self.offset = block_offset + u64::from(total);
        Ok(())
    }

    fn u16(&self, bytes: &[u8]) -> u16 {
        let array = [bytes[0], bytes[1]];
        if self.big_endian { u16::from_be_bytes(array) } else { u16::from_le_bytes(array) }
    }

    fn u32(&self, bytes: &[u8]) -> u32 {
        let array = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if self.big_endian { u32::from_be_bytes(array) } else { u32::from_le_bytes(array) }
    }

    fn parse_interface(&self, body: &[u8]) -> Result<Interface, &'static str> {
        if body.len() < 8 {
            return Err("interface description too short");
        }
        let mut interface =
            Interface { name: String::new(), link_type: self.u16(&body[0..2]), units_per_second: 1_000_000 };
        let mut position = 8;
        while position + 4 <= body.len() {
            let code = self.u16(&body[position..]);
            let len = usize::from(self.u16(&body[position + 2..]));
            let value = body.get(position + 4..position + 4 + len).ok_or("option runs past its block")?;
            match code {
                OPT_END => break,
                IF_NAME => interface.name = String::from_utf8_lossy(value).into_owned(),
                IF_TSRESOL => {
                    let resolution = *value.first().ok_or("empty if_tsresol")?;
                    let exponent = u32::from(resolution & 0x7F);
                    interface.units_per_second = if resolution & 0x80 == 0 {
                        10u64.checked_pow(exponent).ok_or("if_tsresol out of range")?
                    } else {
                        1u64.checked_shl(exponent).ok_or("if_tsresol out of range")?
                    };
                }
                _ => {}
            }
            position += 4 + len.next_multiple_of(4);
        }
        Ok(interface)
    }

    fn parse_packet(&self, body: &[u8]) -> Result<Packet, &'static str> {
        if body.len() < 20 {
            return Err("enhanced packet block too short");
        }
        let interface = self.u32(&body[0..4]);
        let units = u64::from(self.u32(&body[4..8])) << 32 | u64::from(self.u32(&body[8..12]));
        let captured = self.u32(&body[12..16]) as usize;
        let data = body.get(20..20 + captured).ok_or("packet data runs past its block")?;
        let per_second =
            self.interfaces.get(interface as usize).ok_or("packet for an interface not described")?.units_per_second;
        let timestamp_ns =
            u64::try_from(u128::from(units) * 1_000_000_000 / u128::from(per_second)).unwrap_or(u64::MAX);
        Ok(Packet { interface, timestamp_ns, data: data.to_vec() })
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
