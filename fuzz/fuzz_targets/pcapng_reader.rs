//! Fuzz target: arbitrary bytes as a capture file — the pcapng reader must
//! never panic, never allocate past its block limit, and stop at the first
//! bad block with an offset inside the file.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = myc_verify::pcapng::Reader::new(std::io::Cursor::new(data));
    loop {
        match reader.next_packet() {
            Ok(Some(packet)) => assert!(packet.data.len() <= data.len()),
            Ok(None) => break,
            Err(error) => {
                assert!(error.offset <= data.len() as u64);
                break;
            }
        }
    }
});
