//! Fuzz target: arbitrary bytes arriving at a relay in arbitrary pieces —
//! the relay's Protocol V2 framing must find the same message boundaries
//! however the stream is split, never panic, and never announce a length
//! over its limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myc_transport::Framing;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cuts) = input;
    let framing = myc_relay_compat::ProtocolV2 { max_message: myc_codec::MAX_MESSAGE_LEN };
    // Whole: the boundaries of the stream read at once.
    let mut whole = Vec::new();
    let mut offset = 0;
    while let Ok(Some(len)) = framing.frame_len(&data[offset..]) {
        assert!(len <= myc_codec::MAX_MESSAGE_LEN);
        if offset + len > data.len() {
            break;
        }
        whole.push(len);
        offset += len;
    }
    // Pieces: the same stream fed in chunks given by `cuts`.
    let mut buffered = Vec::new();
    let mut pieces = Vec::new();
    let mut position = 0;
    for cut in cuts.iter().map(|&cut| usize::from(cut) + 1).chain(std::iter::once(data.len())) {
        let end = (position + cut).min(data.len());
        buffered.extend_from_slice(&data[position..end]);
        position = end;
        loop {
            match framing.frame_len(&buffered) {
                Ok(Some(len)) if len <= buffered.len() => {
                    pieces.push(len);
                    buffered.drain(..len);
                }
                _ => break,
            }
        }
        if position == data.len() {
            break;
        }
    }
    assert_eq!(whole, pieces, "framing depends on how the stream was split");
});
