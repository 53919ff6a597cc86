//! LengthPrefixed: tables in every configuration, partial input, hostile input.

use sockloop::fuzzing::{decode_chunks, split};
use sockloop::SocketErrorStatus;
use sockloop::{ByteOrder, Decoded, Decoder, Encoder, LengthField, LengthPrefixed};

use ByteOrder::{BigEndian as Be, LittleEndian as Le};
use LengthField::{U16, U32, U64, U8};

fn codec(field: LengthField, order: ByteOrder, includes: bool) -> LengthPrefixed {
    LengthPrefixed::new()
        .with_length_field(field)
        .with_byte_order(order)
        .with_length_including_header(includes)
}

/// (field, order, length counts the header, payload, wire bytes)
type Case = (LengthField, ByteOrder, bool, &'static [u8], &'static [u8]);

const TABLE: &[Case] = &[
    (U8, Be, false, b"ab", &[2, b'a', b'b']),
    (U8, Le, true, b"ab", &[3, b'a', b'b']),
    (U8, Be, false, b"", &[0]),
    (U16, Be, false, b"ab", &[0, 2, b'a', b'b']),
    (U16, Le, false, b"ab", &[2, 0, b'a', b'b']),
    (U16, Be, true, b"ab", &[0, 4, b'a', b'b']),
    (U32, Be, false, b"ab", &[0, 0, 0, 2, b'a', b'b']),
    (U32, Le, false, b"ab", &[2, 0, 0, 0, b'a', b'b']),
    (U32, Le, true, b"", &[4, 0, 0, 0]),
    (U64, Be, false, b"a", &[0, 0, 0, 0, 0, 0, 0, 1, b'a']),
    (U64, Le, true, b"a", &[9, 0, 0, 0, 0, 0, 0, 0, b'a']),
];

#[test]
fn encode_and_decode_table() {
    for &(field, order, includes, payload, wire) in TABLE {
        let mut c = codec(field, order, includes);
        let mut out = vec![0xee];
        c.encode(payload, &mut out).unwrap();
        assert_eq!(&out[1..], wire, "{field:?} {order:?} {includes}");
        assert_eq!(c.encoded_len(payload.len()), Some(wire.len()));
        let width = field.width();
        assert_eq!(
            c.decode(wire).unwrap(),
            Decoded::Frame {
                frame: width..wire.len(),
                consumed: wire.len()
            }
        );
        assert_eq!(c.size_hint(), width);
        assert!(!c.is_mid_frame());
    }
}

#[test]
fn defaults_match_write_uint32_then_payload() {
    let c = LengthPrefixed::default();
    assert_eq!(c.length_field(), U32);
    assert_eq!(c.byte_order(), Be);
    assert!(!c.length_includes_header());
    assert_eq!(c.max_frame_length(), 8 * 1024 * 1024);
    let mut w = sockloop::DataWriter::new();
    w.write_u32(w.measure_string("hello") as u32);
    w.write_string("hello");
    let mut c = c;
    let wire = w.into_inner();
    assert_eq!(
        c.decode(&wire).unwrap(),
        Decoded::Frame {
            frame: 4..9,
            consumed: 9
        }
    );
}

#[test]
fn header_then_payload_in_two_calls() {
    let mut c = LengthPrefixed::new();
    assert_eq!(
        c.decode(&[0, 0]).unwrap(),
        Decoded::NeedMore { consumed: 0 }
    );
    assert_eq!(
        c.decode(&[0, 0, 0, 3, b'a']).unwrap(),
        Decoded::NeedMore { consumed: 4 }
    );
    assert!(c.is_mid_frame());
    assert_eq!(
        c.size_hint(),
        3,
        "the caller can size its buffer for the payload"
    );
    assert_eq!(c.decode(b"a").unwrap(), Decoded::NeedMore { consumed: 0 });
    assert_eq!(
        c.decode(b"abcX").unwrap(),
        Decoded::Frame {
            frame: 0..3,
            consumed: 3
        }
    );
    assert_eq!(c.size_hint(), 4);
}

fn whole_stream(field: LengthField, order: ByteOrder, includes: bool) -> (Vec<Vec<u8>>, Vec<u8>) {
    let payloads: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"x".to_vec(),
        b"hello".to_vec(),
        (0..=255).collect(),
        b"".to_vec(),
        b"last".to_vec(),
    ];
    let mut c = codec(field, order, includes);
    let mut wire = Vec::new();
    for p in &payloads {
        let limit =
            (field.max_value() as usize).saturating_sub(if includes { field.width() } else { 0 });
        if p.len() <= limit {
            c.encode(p, &mut wire).unwrap();
        }
    }
    let frames = payloads
        .into_iter()
        .filter(|p| c.encoded_len(p.len()).is_some())
        .collect();
    (frames, wire)
}

/// Every split into two chunks, and many random splits, give the frames of the whole.
#[test]
fn partial_input_gives_the_same_frames() {
    for field in [U8, U16, U32, U64] {
        for order in [Be, Le] {
            for includes in [false, true] {
                let (frames, wire) = whole_stream(field, order, includes);
                let whole = decode_chunks(&mut codec(field, order, includes), [&wire[..]]);
                assert_eq!(whole.frames, frames);
                assert_eq!(whole.error, None);
                for i in 0..=wire.len() {
                    let two = [&wire[..i], &wire[i..]];
                    let got = decode_chunks(&mut codec(field, order, includes), two);
                    assert_eq!(
                        (got.frames, got.ends),
                        (whole.frames.clone(), whole.ends.clone()),
                        "split at {i}"
                    );
                    assert_eq!(got.error, None);
                }
                for seed in 1..200 {
                    let chunks = split(&wire, seed);
                    let got = decode_chunks(&mut codec(field, order, includes), chunks);
                    assert_eq!(got.frames, whole.frames, "seed {seed}");
                    assert_eq!(got.error, None);
                }
            }
        }
    }
}

fn status(result: sockloop::Result<Decoded>) -> SocketErrorStatus {
    result.unwrap_err().status()
}

#[test]
fn hostile_lengths() {
    // 0xFFFFFFFF: over the maximum as soon as the header is complete.
    let mut c = LengthPrefixed::new();
    let err = c.decode(&[0xff, 0xff, 0xff, 0xff]).unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::MessageTooLong);
    assert!(err.to_string().contains("4294967295"), "{err}");
    // With a maximum that would allow it, nothing is consumed beyond the header and
    // nothing is reserved: the hint is the announced size, the caller decides.
    let mut c = LengthPrefixed::new().with_max_frame_length(usize::MAX);
    assert_eq!(
        c.decode(&[0xff; 5]).unwrap(),
        Decoded::NeedMore { consumed: 4 }
    );
    assert_eq!(c.size_hint(), 0xffff_ffff);

    // A length counting its header but smaller than the header.
    for (field, wire) in [
        (U8, vec![0]),
        (U16, vec![0, 1]),
        (U32, vec![0, 0, 0, 3]),
        (U64, vec![0; 8]),
    ] {
        let mut c = codec(field, Be, true);
        assert_eq!(
            status(c.decode(&wire)),
            SocketErrorStatus::ProtocolError,
            "{field:?}"
        );
    }
    // Header plus payload overflowing usize: refused, not wrapped.
    let mut c = codec(U64, Be, false).with_max_frame_length(usize::MAX);
    assert_eq!(
        status(c.decode(&[0xff; 8])),
        SocketErrorStatus::MessageTooLong
    );
    let mut c = codec(U64, Le, true).with_max_frame_length(usize::MAX);
    assert_eq!(
        c.decode(&[0xff; 8]).unwrap(),
        Decoded::NeedMore { consumed: 8 }
    );
    assert_eq!(c.size_hint(), usize::MAX - 8);
    // One over the maximum, in every width.
    for field in [U8, U16, U32, U64] {
        let mut c = codec(field, Be, false).with_max_frame_length(9);
        let mut wire = vec![0; field.width()];
        *wire.last_mut().unwrap() = 10;
        assert_eq!(
            status(c.decode(&wire)),
            SocketErrorStatus::MessageTooLong,
            "{field:?}"
        );
        *wire.last_mut().unwrap() = 9;
        assert_eq!(
            c.decode(&wire).unwrap(),
            Decoded::NeedMore {
                consumed: field.width()
            }
        );
    }
}

#[test]
fn eof_in_a_header_or_a_frame() {
    let mut c = LengthPrefixed::new();
    let err = c.decode_eof(&[0, 0]).unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::ProtocolError);
    assert!(
        err.to_string().contains("EOF in the middle of a frame"),
        "{err}"
    );

    let mut c = LengthPrefixed::new();
    let err = c.decode_eof(&[0, 0, 0, 5, b'a', b'b']).unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::ProtocolError);
    assert!(
        err.to_string().contains("expected 5 payload bytes, got 2"),
        "{err}"
    );

    let mut c = LengthPrefixed::new();
    assert_eq!(
        c.decode(&[0, 0, 0, 5]).unwrap(),
        Decoded::NeedMore { consumed: 4 }
    );
    assert_eq!(status(c.decode_eof(&[])), SocketErrorStatus::ProtocolError);

    // A clean end: the last frame, then nothing.
    let mut c = LengthPrefixed::new();
    assert_eq!(
        c.decode_eof(&[0, 0, 0, 1, b'z']).unwrap(),
        Decoded::Frame {
            frame: 4..5,
            consumed: 5
        }
    );
    assert_eq!(
        c.decode_eof(&[]).unwrap(),
        Decoded::NeedMore { consumed: 0 }
    );
}

#[test]
fn encode_refuses_what_cannot_be_carried() {
    let mut dst = b"queued".to_vec();
    let table: [(LengthPrefixed, usize); 5] = [
        (LengthPrefixed::new().with_max_frame_length(4), 5),
        (codec(U8, Be, false), 256),
        (codec(U8, Be, true), 255),
        (codec(U16, Le, true), 65_534),
        (codec(U16, Le, false).with_max_frame_length(100_000), 65_536),
    ];
    for (mut c, len) in table {
        let frame = vec![0; len];
        let err = c.encode(&frame, &mut dst).unwrap_err();
        assert_eq!(
            err.status(),
            SocketErrorStatus::MessageTooLong,
            "{c:?} {len}"
        );
        assert_eq!(c.encoded_len(len), None);
        assert_eq!(dst, b"queued", "nothing appended");
        assert!(c.encode(&frame[1..], &mut dst).is_ok(), "{c:?} {}", len - 1);
        dst.truncate(6);
    }
}

#[test]
fn fuzz_glue_on_the_seed_corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/length_prefixed");
    for input in corpus(dir) {
        sockloop::fuzzing::length_prefixed_target(&input);
    }
    for c in 0..=255u8 {
        let (_, wire) = whole_stream(U16, Le, true);
        let mut input = vec![c, c.wrapping_mul(7)];
        input.extend_from_slice(&wire);
        sockloop::fuzzing::length_prefixed_target(&input);
    }
}

/// The files of a seed corpus directory (none if it does not exist yet).
fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect()
}

#[test]
fn a_boxed_codec_forwards_every_method() {
    let mut boxed: Box<dyn sockloop::Codec> = Box::new(LengthPrefixed::new());
    assert_eq!(boxed.encoded_len(3), Some(7));
    assert_eq!(
        boxed.decode(&[0, 0, 0, 3, b'a']).unwrap(),
        Decoded::NeedMore { consumed: 4 }
    );
    assert_eq!(boxed.size_hint(), 3);
    let err = boxed.decode_eof(b"a").unwrap_err();
    assert!(
        err.to_string().contains("expected 3 payload bytes, got 1"),
        "{err}"
    );
    // After an error the stream is closed; a new connection gets a new codec.
    let mut boxed: Box<dyn sockloop::Codec> = Box::new(LengthPrefixed::new());
    let out = decode_chunks(&mut boxed, [&[0u8, 0, 0, 1, b'z'][..]]);
    assert_eq!(out.frames, [b"z"]);
}
