//! The client session core against hand-written broker frames: what it
//! holds, resends, settles and delivers, and how it ends on bad input.

use bytes::{Bytes, BytesMut};

use super::*;

/// Bytes from spaced hex.
fn bytes(spaced_hex: &str) -> Bytes {
    Bytes::from(hex::decode(spaced_hex.replace(' ', "")).unwrap())
}

/// PUBLISH "md" with a one-byte payload `value`: 9 bytes.
fn publish(value: u8) -> String {
    format!("05000000 02 02 6d64 {value:02x}")
}

/// Chunks of `n` PUBLISH frames each (payloads `first`, `first + 1`, …).
fn chunk(first: u8, n: u8) -> Bytes {
    bytes(&(first..first + n).map(publish).collect::<String>())
}

fn ack(count: u64) -> String {
    format!("09000000 86 {}", hex::encode(count.to_le_bytes()))
}

fn receive(session: &mut ClientSession, frames: &str) -> Received {
    let mut received = Received::default();
    session.receive(&bytes(frames), &mut received).unwrap();
    received
}

#[test]
fn publishes_are_held_until_an_ack_covers_them_even_part_of_a_chunk() {
    let mut session = ClientSession::new(1 << 20);
    let mut out = BytesMut::new();
    assert_eq!(session.connected(&mut out, None).frames, 0);
    assert!(out.is_empty(), "nothing to subscribe or resend");
    session.sent(chunk(1, 3), 3);
    session.sent(chunk(4, 1), 1);
    assert_eq!(session.in_flight(), 4 * 9);

    // Two of the first chunk's three frames.
    let received = receive(&mut session, &ack(2));
    assert_eq!((received.settled_frames, received.settled_bytes), (2, 18));
    assert!(received.recycle.is_empty(), "the chunk is not done yet");
    assert_eq!(session.in_flight(), 2 * 9);

    // The count is cumulative: 4 settles the two left.
    let received = receive(&mut session, &ack(4));
    assert_eq!((received.settled_frames, received.settled_bytes), (2, 18));
    assert_eq!(received.recycle, vec![bytes(&publish(3)), chunk(4, 1)]);
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn an_ack_that_does_not_grow_settles_nothing_and_one_past_everything_settles_only_what_was_sent() {
    let mut session = ClientSession::new(1 << 20);
    session.connected(&mut BytesMut::new(), None);
    session.sent(chunk(1, 2), 2);
    assert_eq!(receive(&mut session, &ack(1)).settled_frames, 1);
    assert_eq!(receive(&mut session, &ack(1)).settled_frames, 0, "a repeated ACK");
    assert_eq!(receive(&mut session, &ack(0)).settled_frames, 0, "an ACK going backwards");
    let received = receive(&mut session, &ack(u64::MAX));
    assert_eq!((received.settled_frames, received.settled_bytes), (1, 9));
    assert_eq!(session.in_flight(), 0);
    session.sent(chunk(3, 1), 1);
    assert_eq!(receive(&mut session, &ack(u64::MAX)).settled_frames, 0, "already counted on this connection");
}

#[test]
fn a_new_connection_subscribes_again_then_resends_the_unacknowledged_in_order_and_counts_acks_afresh() {
    let mut session = ClientSession::new(1 << 20);
    let mut out = BytesMut::new();
    // Subscribed while disconnected: nothing written yet.
    assert_eq!(session.subscribe(Bytes::from_static(b"md"), Bytes::from_static(b"g"), &mut out), 1);
    assert!(out.is_empty());
    assert_eq!(session.connected(&mut out, None).frames, 0);
    assert_eq!(out.freeze(), bytes("0a000000 03 01000000 02 6d64 01 67"));
    // Subscribed while connected: written at once.
    let mut out = BytesMut::new();
    assert_eq!(session.subscribe(Bytes::from_static(b"x"), Bytes::new(), &mut out), 2);
    assert_eq!(out.freeze(), bytes("08000000 03 02000000 01 78 00"));

    session.sent(chunk(1, 2), 2);
    session.sent(chunk(3, 1), 1);
    assert_eq!(receive(&mut session, &ack(1)).settled_frames, 1);
    session.disconnected();

    let mut out = BytesMut::new();
    assert_eq!(session.connected(&mut out, None).frames, 2, "two publishes resent");
    let expected =
        format!("0a000000 03 01000000 02 6d64 01 67 08000000 03 02000000 01 78 00 {} {}", publish(2), publish(3));
    assert_eq!(out.freeze(), bytes(&expected));
    // The new connection's first ACK counts from zero.
    let received = receive(&mut session, &ack(1));
    assert_eq!((received.settled_frames, received.recycle.len()), (1, 1));
    assert_eq!(receive(&mut session, &ack(2)).settled_frames, 1);
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn the_in_flight_window_closes_at_its_bound_and_an_ack_reopens_it() {
    let mut session = ClientSession::new(18);
    session.connected(&mut BytesMut::new(), None);
    assert!(session.has_room());
    session.sent(chunk(1, 1), 1);
    assert!(session.has_room(), "9 of 18 bytes");
    session.sent(chunk(2, 1), 1);
    assert!(!session.has_room(), "18 of 18 bytes");
    receive(&mut session, &ack(1));
    assert!(session.has_room());
    session.sent(Bytes::new(), 0);
    assert_eq!(session.in_flight(), 9, "an empty chunk holds nothing");
}

#[test]
fn deliveries_are_grouped_per_subscription_as_ranges_of_the_batch() {
    let mut session = ClientSession::new(1 << 20);
    session.connected(&mut BytesMut::new(), None);
    // DELIVER sub 1 "md" "ab", sub 2 "md" "c", sub 1 "md" "" (empty payload).
    let frames = "0a000000 87 01000000 02 6d64 6162 09000000 87 02000000 02 6d64 63 08000000 87 01000000 02 6d64";
    let received = receive(&mut session, frames);
    let lists: Vec<(u32, Vec<&[u8]>)> =
        received.deliveries.iter().map(|(sub_id, batch)| (*sub_id, batch.payloads().collect())).collect();
    assert_eq!(lists, vec![(1, vec![&b"ab"[..], &b""[..]]), (2, vec![&b"c"[..]])]);
    assert_eq!(received.settled_frames, 0);
}

#[test]
fn a_subscription_is_reported_active_at_its_first_suback_only() {
    let mut session = ClientSession::new(1 << 20);
    let mut out = BytesMut::new();
    session.subscribe(Bytes::from_static(b"md"), Bytes::new(), &mut out);
    session.connected(&mut out, None);
    // SUBACK 1, SUBACK 9 (unknown), SUBACK 1 again.
    let received = receive(&mut session, "05000000 83 01000000 05000000 83 09000000 05000000 83 01000000");
    assert_eq!(received.activated, vec![1]);
    session.disconnected();
    session.connected(&mut out, None);
    assert!(receive(&mut session, "05000000 83 01000000").activated.is_empty(), "not again after a reconnect");
}

#[test]
fn refused_publishes_are_counted_and_other_non_fatal_errors_kept_for_the_log() {
    let mut session = ClientSession::new(1 << 20);
    session.connected(&mut BytesMut::new(), None);
    let refused = protocol::PUBLISH_REFUSED;
    let mut frames = BytesMut::new();
    for (code, message) in
        [(ErrorCode::Unauthorized, refused), (ErrorCode::BadTopic, "no"), (ErrorCode::Unauthorized, "sub")]
    {
        ServerOp::Error { code, message: message.to_owned() }.encode(&mut frames).unwrap();
    }
    let mut received = Received::default();
    session.receive(&frames.freeze(), &mut received).unwrap();
    assert_eq!(received.refused, 1, "only the refused publish");
    assert_eq!(received.errors.len(), 3);
    assert_eq!(received.errors[1], (ErrorCode::BadTopic, "no".to_owned()));
}

#[test]
fn a_fatal_error_or_a_malformed_frame_ends_the_connection_after_what_came_before() {
    let mut session = ClientSession::new(1 << 20);
    session.connected(&mut BytesMut::new(), None);
    session.sent(chunk(1, 1), 1);
    let mut frames = BytesMut::from(&bytes(&ack(1))[..]);
    ServerOp::Error { code: ErrorCode::SlowConsumer, message: "too slow".to_owned() }.encode(&mut frames).unwrap();
    let mut received = Received::default();
    let error = session.receive(&frames.freeze(), &mut received).unwrap_err();
    assert!(matches!(error, Error::Broker { code: ErrorCode::SlowConsumer, .. }), "{error}");
    assert_eq!(received.settled_frames, 1, "the ACK before it still counts");

    // Hostile frames: an unknown op, a DELIVER cut short, an ACK without
    // its count.
    for frames in ["01000000 7f", "03000000 87 0100", "05000000 86 01020304"] {
        let mut received = Received::default();
        let error = session.receive(&bytes(frames), &mut received).unwrap_err();
        assert!(matches!(error, Error::Protocol(_)), "{frames}: {error}");
    }
}

/// PUBLISH "md" with a payload of `n` bytes `value`: `4 + 4 + n` bytes.
fn publish_of(value: u8, n: usize) -> String {
    let body = 1 + 1 + 2 + n;
    format!(
        "{} 02 02 6d64 {}",
        hex::encode(u32::try_from(body).unwrap().to_le_bytes()),
        format!("{value:02x}").repeat(n)
    )
}

#[test]
fn frames_over_a_lowered_limit_are_dropped_from_the_resend_and_the_rest_kept_in_order() {
    let mut session = ClientSession::new(1 << 20);
    session.connected(&mut BytesMut::new(), None);
    // 9, 108 and 9 bytes, then 9 and 9.
    let first = bytes(&(publish(1) + &publish_of(2, 100) + &publish(3)));
    session.sent(first, 3);
    session.sent(chunk(4, 2), 2);
    assert_eq!(session.in_flight(), 144);
    session.disconnected();

    let mut out = BytesMut::new();
    let resent = session.connected(&mut out, Some(50));
    assert_eq!(resent, Resent { frames: 4, dropped_frames: 1, dropped_bytes: 108 });
    assert_eq!(out.freeze(), bytes(&[1, 3, 4, 5].map(publish).concat()));
    assert_eq!(session.in_flight(), 36);
    // The ACK count of the new connection counts only what was resent.
    let received = receive(&mut session, &ack(4));
    assert_eq!((received.settled_frames, received.settled_bytes), (4, 36));
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn a_chunk_that_fits_is_not_copied_and_one_that_does_not_loses_only_its_long_frames() {
    let fits = chunk(1, 3);
    assert_eq!(without_oversized(&fits, 9), None);
    let mixed = bytes(&(publish_of(7, 100) + &publish(1) + &publish_of(8, 100)));
    let kept = without_oversized(&mixed, 9).unwrap();
    assert_eq!(kept, Kept { chunk: bytes(&publish(1)), frames: 1, dropped_frames: 2, dropped_bytes: 216 });
    let none = without_oversized(&bytes(&publish_of(7, 100)), 9).unwrap();
    assert_eq!((none.frames, none.chunk.len(), none.dropped_frames), (0, 0, 1));
}
