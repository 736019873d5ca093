//! `myc tlv decode` / `encode` on the codec's golden vectors, which were
//! written from the spec independently of the codec.

use std::fs;

use super::{myc, workspace};

/// `(name, bytes, canonical JSON line)` for every good vector, sorted by name.
fn good_vectors() -> Vec<(String, Vec<u8>, String)> {
    let dir = workspace().join("codec/tests/data/ok");
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "hex"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let bytes = hex::decode(fs::read_to_string(dir.join(format!("{name}.hex"))).unwrap().trim()).unwrap();
            let json = fs::read_to_string(dir.join(format!("{name}.json"))).unwrap().trim_end().to_owned();
            (name, bytes, json)
        })
        .collect()
}

fn stdout_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8(output.stdout.clone()).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn decode_renders_a_binary_stream_as_canonical_json_lines() {
    let vectors = good_vectors();
    let stream: Vec<u8> = vectors.iter().flat_map(|(_, bytes, _)| bytes.clone()).collect();
    let output = myc(&["tlv", "decode", "--verify-checksum"], &stream);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let expect: Vec<_> = vectors.iter().map(|(_, _, json)| json.clone()).collect();
    assert_eq!(stdout_lines(&output), expect);
}

#[test]
fn decode_reads_a_file_argument_and_hex_lines() {
    let vectors = good_vectors();
    let dir = tempfile::tempdir().unwrap();
    let hex_file = dir.path().join("in.hex");
    let hex_text: String =
        vectors.iter().map(|(name, bytes, _)| format!("# {name}\n{}\n\n", hex::encode(bytes))).collect();
    fs::write(&hex_file, hex_text).unwrap();
    let output = myc(&["tlv", "decode", "--hex", hex_file.to_str().unwrap()], b"");
    assert!(output.status.success());
    assert_eq!(stdout_lines(&output).len(), vectors.len());
}

#[test]
fn encode_turns_json_lines_back_into_the_same_bytes() {
    let vectors = good_vectors();
    let json: String = vectors.iter().map(|(_, _, json)| format!("{json}\n")).collect();
    let binary = myc(&["tlv", "encode"], json.as_bytes());
    assert!(binary.status.success(), "{}", String::from_utf8_lossy(&binary.stderr));
    let expect: Vec<u8> = vectors.iter().flat_map(|(_, bytes, _)| bytes.clone()).collect();
    assert_eq!(binary.stdout, expect);
    let hex = myc(&["tlv", "encode", "--hex"], json.as_bytes());
    let expect_hex: Vec<_> = vectors.iter().map(|(_, bytes, _)| hex::encode(bytes)).collect();
    assert_eq!(stdout_lines(&hex), expect_hex);
}

#[test]
fn a_malformed_message_stops_decode_after_the_good_ones_with_index_offset_and_reason() {
    let vectors = good_vectors();
    let first = &vectors[0].1;
    let second = &vectors[1].1;
    let mut bad = second.clone();
    bad[5] = 7; // version
    let stream = [first.clone(), first.clone(), bad, second.clone()].concat();
    let output = myc(&["tlv", "decode"], &stream);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout_lines(&output), [vectors[0].2.clone(), vectors[0].2.clone()]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let offset = 2 * first.len() + 5;
    assert!(stderr.contains("message index 2"), "{stderr}");
    assert!(stderr.contains(&format!("byte {offset}")), "{stderr}");
    assert!(stderr.contains("bad version 7"), "{stderr}");
}

#[test]
fn a_stream_ending_mid_message_is_reported_as_truncated() {
    let vectors = good_vectors();
    let first = &vectors[0].1;
    let stream = [first.clone(), first[..first.len() - 3].to_vec()].concat();
    let output = myc(&["tlv", "decode"], &stream);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout_lines(&output).len(), 1);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("message index 1") && stderr.contains("truncated"), "{stderr}");
}

#[test]
fn every_bad_vector_fails_decode_with_its_reason() {
    let dir = workspace().join("codec/tests/data/err");
    for entry in fs::read_dir(dir).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        let reason = text.lines().find_map(|line| line.strip_prefix("# error: ")).unwrap();
        let output = myc(&["tlv", "decode", "--hex"], text.as_bytes());
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(reason), "{stderr} lacks {reason}");
    }
}

#[test]
fn verify_checksum_rejects_a_wrong_checksum_only_when_asked() {
    let (_, bytes, _) = good_vectors().into_iter().find(|(name, _, _)| name == "trade_checksum").unwrap();
    let mut corrupt = bytes;
    corrupt[28] ^= 0xFF;
    assert!(myc(&["tlv", "decode"], &corrupt).status.success());
    let checked = myc(&["tlv", "decode", "--verify-checksum"], &corrupt);
    assert_eq!(checked.status.code(), Some(2));
    assert!(String::from_utf8(checked.stderr).unwrap().contains("checksum"));
}

#[test]
fn encode_names_the_line_of_bad_json() {
    let output = myc(&["tlv", "encode"], b"\n{\"header\":{\"relay_domain\":1,\"source\":2},\"tlvs\":[]}\nnot json\n");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(output.stdout.len(), 32, "the good line before the bad one is written");
    assert!(String::from_utf8(output.stderr).unwrap().contains("line 3"));
}
