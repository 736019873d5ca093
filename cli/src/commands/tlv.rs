//! `myc tlv decode` (binary or hex messages, or the packets of a pcapng
//! capture → canonical JSON lines) and `myc tlv encode` (JSON lines → binary
//! or hex messages).
//!
//! Both stream: messages are written as they are read, so a malformed one
//! stops the run after every message before it has been printed, and the
//! error names the message index, the byte offset and the reason.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, anyhow};
use myc_codec::Message;

use super::Outcome;
use crate::args::{TlvDecodeArgs, TlvEncodeArgs};

/// Bytes read from the input per call in binary mode.
const READ_CHUNK: usize = 64 * 1024;

/// The first four bytes of a pcapng file (its Section Header Block type),
/// the same in either byte order.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

pub(crate) fn decode(args: &TlvDecodeArgs) -> anyhow::Result<Outcome> {
    let mut input = open_input(args.input.as_deref())?;
    let mut out = BufWriter::new(io::stdout().lock());
    let is_capture = !args.hex && input.fill_buf().context("cannot read input")?.starts_with(&PCAPNG_MAGIC);
    if args.interface.is_some() && !is_capture {
        return Err(anyhow!("--interface picks a stream of a pcapng capture, and the input is not one"));
    }
    let result = if args.hex {
        decode_hex_lines(input, &mut out, args.verify_checksum)
    } else if is_capture {
        decode_capture(input, &mut out, args.verify_checksum, args.interface.as_deref())
    } else {
        decode_stream(input, &mut out, args.verify_checksum)
    };
    // Whatever was decoded before a failure is printed before the error.
    out.flush()?;
    result.map(|()| Outcome::Success)
}

pub(crate) fn encode(args: &TlvEncodeArgs) -> anyhow::Result<Outcome> {
    let input = open_input(args.input.as_deref())?;
    let mut out = BufWriter::new(io::stdout().lock());
    let result = encode_lines(input, &mut out, args.hex);
    out.flush()?;
    result.map(|()| Outcome::Success)
}

fn open_input(path: Option<&Path>) -> anyhow::Result<Box<dyn BufRead>> {
    match path {
        None => Ok(Box::new(io::stdin().lock())),
        Some(path) if path == Path::new("-") => Ok(Box::new(io::stdin().lock())),
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            Ok(Box::new(BufReader::new(file)))
        }
    }
}

/// Renders one message as a JSON line, checking its checksum when asked.
fn write_message(
    out: &mut impl Write,
    message: &Message<'_>,
    verify_checksum: bool,
    line: &mut String,
) -> Result<(), myc_codec::Error> {
    if verify_checksum {
        message.verify_checksum()?;
    }
    line.clear();
    myc_codec::render_json(message, line);
    line.push('\n');
    // I/O errors surface at the next flush; the codec error type has no I/O.
    let _ = out.write_all(line.as_bytes());
    Ok(())
}

/// Decodes concatenated binary messages, framing them by `payload_size`.
fn decode_stream(mut input: impl Read, out: &mut impl Write, verify_checksum: bool) -> anyhow::Result<()> {
    let mut buffer: Vec<u8> = Vec::with_capacity(2 * READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut line = String::new();
    // Stream offset of `buffer[0]`, and the index of the next message.
    let mut buffer_offset = 0usize;
    let mut message_index = 0usize;
    loop {
        let mut start = 0;
        loop {
            let failure = |error: myc_codec::Error| describe(message_index, buffer_offset + start, None, &error);
            match Message::decode(&buffer[start..]).map_err(failure)? {
                Some((message, used)) => {
                    write_message(out, &message, verify_checksum, &mut line).map_err(failure)?;
                    start += used;
                    message_index += 1;
                }
                None => break,
            }
        }
        buffer.drain(..start);
        buffer_offset += start;
        let n_read = input.read(&mut chunk).context("cannot read input")?;
        if n_read == 0 {
            if buffer.is_empty() {
                return Ok(());
            }
            let error =
                Message::parse(&buffer).err().unwrap_or(myc_codec::Error::Truncated { offset: buffer.len(), need: 1 });
            return Err(describe(message_index, buffer_offset, None, &error));
        }
        buffer.extend_from_slice(&chunk[..n_read]);
    }
}

/// Decodes the packets of a pcapng capture, each one message, optionally
/// only those of one interface (checked against the file's interfaces once
/// the file is read, so a typo is an error that lists the real names).
fn decode_capture(
    input: impl Read,
    out: &mut impl Write,
    verify_checksum: bool,
    interface: Option<&str>,
) -> anyhow::Result<()> {
    let mut reader = myc_verify::pcapng::Reader::new(input);
    let mut line = String::new();
    let mut message_index = 0;
    while let Some(packet) = reader.next_packet().context("capture unreadable")? {
        if let Some(wanted) = interface {
            let name = reader.interfaces().get(packet.interface as usize).map(|found| found.name.as_str());
            if name != Some(wanted) {
                continue;
            }
        }
        let failure = |error: myc_codec::Error| describe(message_index, 0, None, &error);
        let message = Message::parse(&packet.data).map_err(failure)?;
        write_message(out, &message, verify_checksum, &mut line).map_err(failure)?;
        message_index += 1;
    }
    if let Some(wanted) = interface
        && !reader.interfaces().iter().any(|found| found.name == wanted)
    {
        let names: Vec<&str> = reader.interfaces().iter().map(|found| found.name.as_str()).collect();
        return Err(anyhow!("the capture has no interface {wanted:?}; it has: {}", names.join(", ")));
    }
    Ok(())
}

/// Decodes one hex message per line; blank lines and `#` comments are skipped.
fn decode_hex_lines(input: impl BufRead, out: &mut impl Write, verify_checksum: bool) -> anyhow::Result<()> {
    let mut rendered = String::new();
    let mut message_index = 0;
    for (line_index, text) in input.lines().enumerate() {
        let text = text.context("cannot read input")?;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let line_number = line_index + 1;
        let bytes = hex::decode(text)
            .map_err(|error| anyhow!("message index {message_index} (line {line_number}): not hex: {error}"))?;
        let failure = |error: myc_codec::Error| describe(message_index, 0, Some(line_number), &error);
        let message = Message::parse(&bytes).map_err(failure)?;
        write_message(out, &message, verify_checksum, &mut rendered).map_err(failure)?;
        message_index += 1;
    }
    Ok(())
}

fn encode_lines(input: impl BufRead, out: &mut impl Write, hex_out: bool) -> anyhow::Result<()> {
    for (line_index, text) in input.lines().enumerate() {
        let text = text.context("cannot read input")?;
        if text.trim().is_empty() {
            continue;
        }
        let bytes = myc_codec::message_from_json(&text).map_err(|error| anyhow!("line {}: {error}", line_index + 1))?;
        if hex_out {
            writeln!(out, "{}", hex::encode(&bytes))?;
        } else {
            out.write_all(&bytes)?;
        }
    }
    Ok(())
}

/// The one-line error for a bad message: its index, the absolute byte offset
/// of the problem in the input (or the offset within the line's message in
/// hex mode), and the codec's reason.
fn describe(
    message_index: usize,
    message_start: usize,
    line: Option<usize>,
    error: &myc_codec::Error,
) -> anyhow::Error {
    let at = error.offset().map_or(String::new(), |offset| format!(", byte {}", message_start + offset));
    match line {
        Some(line) => anyhow!("message index {message_index} (line {line}{at} of the message): {error}"),
        None => anyhow!("message index {message_index} (starting at byte {message_start}{at}): {error}"),
    }
}
