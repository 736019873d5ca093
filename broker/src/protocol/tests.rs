//! Byte-exact vectors for every op (written from the spec tables), round
//! trips, and truncation at every offset of every vector.

use bytes::{Bytes, BytesMut};

use super::*;

fn frame_hex(encode: impl FnOnce(&mut BytesMut)) -> String {
    let mut dst = BytesMut::new();
    encode(&mut dst);
    hex::encode(&dst)
}

/// (op, frame hex) for every client op, written by hand from the tables of `docs/broker-protocol.md`.
fn client_vectors() -> Vec<(ClientOp, &'static str)> {
    vec![
        (
            ClientOp::Hello { version: 1, flags: 0, client_name: "ab".to_owned(), token: "t".to_owned() },
            "0c000000 01 0100 0000 0200 6162 0100 74",
        ),
        (
            ClientOp::Publish { topic: Bytes::from_static(b"md"), payload: Bytes::from_static(b"\x01\x02\x03") },
            "07000000 02 02 6d64 010203",
        ),
        (ClientOp::Publish { topic: Bytes::from_static(b"x"), payload: Bytes::new() }, "03000000 02 01 78"),
        (
            ClientOp::Subscribe { sub_id: 7, topic: Bytes::from_static(b"md"), group: Bytes::from_static(b"g") },
            "0a000000 03 07000000 02 6d64 01 67",
        ),
        (
            ClientOp::Subscribe { sub_id: 0x0102_0304, topic: Bytes::from_static(b"x"), group: Bytes::new() },
            "08000000 03 04030201 01 78 00",
        ),
        (ClientOp::Unsubscribe { sub_id: 9 }, "05000000 04 09000000"),
        (ClientOp::Ping { nonce: 0x0102_0304_0506_0708 }, "09000000 05 0807060504030201"),
    ]
}

fn server_vectors() -> Vec<(ServerOp, &'static str)> {
    vec![
        (
            ServerOp::Welcome { version: 1, server_id: "b1".to_owned(), max_frame: 1_049_600 },
            "0b000000 81 0100 0200 6231 00041000",
        ),
        (ServerOp::SubAck { sub_id: 7 }, "05000000 83 07000000"),
        (ServerOp::UnsubAck { sub_id: 7 }, "05000000 84 07000000"),
        (ServerOp::Pong { nonce: 5 }, "09000000 85 0500000000000000"),
        (ServerOp::Ack { count: 258 }, "09000000 86 0201000000000000"),
        (
            ServerOp::Deliver { sub_id: 2, topic: Bytes::from_static(b"md"), payload: Bytes::from_static(b"\xef\xbe") },
            "0a000000 87 02000000 02 6d64 efbe",
        ),
        (ServerOp::Error { code: ErrorCode::BadTopic, message: "no".to_owned() }, "07000000 88 0300 0200 6e6f"),
    ]
}

fn unspaced(hex: &str) -> String {
    hex.replace(' ', "")
}

#[test]
fn client_ops_encode_to_the_spec_bytes_and_decode_back() {
    for (op, expect) in client_vectors() {
        assert_eq!(frame_hex(|dst| op.encode(dst).unwrap()), unspaced(expect), "{op:?}");
        let frame = hex::decode(unspaced(expect)).unwrap();
        assert_eq!(ClientOp::decode(Bytes::from(frame[4..].to_vec())), Ok(op));
    }
}

#[test]
fn server_ops_encode_to_the_spec_bytes_and_decode_back() {
    for (op, expect) in server_vectors() {
        assert_eq!(frame_hex(|dst| op.encode(dst).unwrap()), unspaced(expect), "{op:?}");
        let frame = hex::decode(unspaced(expect)).unwrap();
        assert_eq!(ServerOp::decode(Bytes::from(frame[4..].to_vec())), Ok(op));
    }
}

#[test]
fn hot_path_encoders_match_the_op_encoders() {
    let md = TopicRef::new(b"md").unwrap();
    assert_eq!(frame_hex(|dst| encode_publish(dst, md, b"\x01\x02\x03")), unspaced("07000000 02 02 6d64 010203"));
    assert_eq!(frame_hex(|dst| encode_deliver(dst, 2, md, b"\xef\xbe")), unspaced("0a000000 87 02000000 02 6d64 efbe"));
}

#[test]
fn a_string_longer_than_its_length_field_is_an_error_and_nothing_is_written() {
    let long_topic = Bytes::from(vec![b'a'; 256]);
    let mut dst = BytesMut::from(&b"kept"[..]);
    let publish = ClientOp::Publish { topic: long_topic.clone(), payload: Bytes::new() };
    assert_eq!(publish.encode(&mut dst), Err(EncodeError { field: "topic", len: 256, max: 255 }));
    let subscribe = ClientOp::Subscribe { sub_id: 1, topic: Bytes::from_static(b"t"), group: long_topic.clone() };
    assert_eq!(subscribe.encode(&mut dst), Err(EncodeError { field: "group", len: 256, max: 255 }));
    let deliver = ServerOp::Deliver { sub_id: 1, topic: long_topic, payload: Bytes::new() };
    assert_eq!(deliver.encode(&mut dst), Err(EncodeError { field: "topic", len: 256, max: 255 }));
    let error = ServerOp::Error { code: ErrorCode::Protocol, message: "m".repeat(65_536) };
    assert_eq!(error.encode(&mut dst), Err(EncodeError { field: "message", len: 65_536, max: 65_535 }));
    assert_eq!(&dst[..], b"kept", "no partial frame left behind");
    // The hot-path encoders take only a checked topic.
    assert!(TopicRef::new(&[b'a'; 256]).is_err());
    assert!(TopicRef::new(&[b'a'; 255]).is_ok());
}

#[test]
fn every_truncated_fixed_shape_body_is_refused() {
    for (op, expect) in client_vectors() {
        let body = hex::decode(unspaced(expect)).unwrap()[4..].to_vec();
        let open_ended = matches!(op, ClientOp::Publish { .. });
        for len in 0..body.len() {
            let result = ClientOp::decode(Bytes::from(body[..len].to_vec()));
            if open_ended && result.is_ok() {
                continue; // A shorter payload is still a valid PUBLISH.
            }
            assert!(
                matches!(result, Err(DecodeError::Truncated { .. } | DecodeError::Empty)),
                "{op:?}[..{len}]: {result:?}"
            );
        }
    }
    for (op, expect) in server_vectors() {
        let body = hex::decode(unspaced(expect)).unwrap()[4..].to_vec();
        for len in 0..body.len() {
            let result = ServerOp::decode(Bytes::from(body[..len].to_vec()));
            if matches!(op, ServerOp::Deliver { .. }) && result.is_ok() {
                continue;
            }
            assert!(
                matches!(result, Err(DecodeError::Truncated { .. } | DecodeError::Empty)),
                "{op:?}[..{len}]: {result:?}"
            );
        }
    }
}

#[test]
fn malformed_bodies_name_the_problem() {
    assert_eq!(ClientOp::decode(Bytes::new()), Err(DecodeError::Empty));
    assert_eq!(ClientOp::decode(Bytes::from_static(b"\x09")), Err(DecodeError::UnknownOp(9)));
    assert_eq!(ClientOp::decode(Bytes::from_static(b"\x81")), Err(DecodeError::UnknownOp(0x81)));
    assert_eq!(
        ClientOp::decode(Bytes::from_static(b"\x04\x01\0\0\0\xff")),
        Err(DecodeError::Trailing { op: 4, extra: 1 })
    );
    assert_eq!(
        ClientOp::decode(Bytes::from_static(b"\x01\x01\0\0\0\x01\0\xff\0\0")),
        Err(DecodeError::BadUtf8 { offset: 7 })
    );
    assert_eq!(ClientOp::decode(Bytes::from_static(b"\x02\x05md")), Err(DecodeError::Truncated { offset: 2, need: 3 }));
}

#[test]
fn topic_rules() {
    for good in ["market_data", "a", "signals.v2", "x-y_z.0", &"t".repeat(255)] {
        assert!(Topic::new(Bytes::from(good.to_owned())).is_ok(), "{good}");
    }
    for bad in ["", "Market", "a/b", "..", ".a", "a.", "a b", "a\0", "é"] {
        assert!(Topic::new(Bytes::from(bad.to_owned())).is_err(), "{bad:?}");
    }
    assert!(Topic::new(Bytes::from(vec![b'a'; 256])).is_err());
    assert!(Topic::new(Bytes::from_static(b"\xff")).is_err());
}

#[test]
fn fatal_codes_are_the_spec_ones() {
    let fatal: Vec<u16> = (1..=10).filter(|&code| ErrorCode::from_code(code).is_fatal()).collect();
    assert_eq!(fatal, [1, 2, 4, 5, 6, 7, 8]);
    for code in 1..=11 {
        assert_eq!(ErrorCode::from_code(code).code(), code);
    }
}
