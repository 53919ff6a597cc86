//! Lines: tables for every ending, partial input, over-long lines, a 1 GiB stream.

use std::time::Instant;

use sockloop::fuzzing::{decode_chunks, split, Outcome};
use sockloop::SocketErrorStatus::{self, InvalidArgument, MessageTooLong, ProtocolError};
use sockloop::{Decoded, Decoder, Encoder, LineEnding, Lines};

use LineEnding::{CrLf, Lf, LfOrCrLf};

fn lines(ending: LineEnding, max: usize, discard: bool) -> Lines {
    Lines::new()
        .with_ending(ending)
        .with_max_length(max)
        .with_discard_overlong(discard)
}

type Case = (
    LineEnding,
    usize,
    bool,
    &'static [u8],
    &'static [&'static [u8]],
    Option<SocketErrorStatus>,
);

/// (ending, max length, discard over-long, input, lines, error)
const TABLE: &[Case] = &[
    (
        LfOrCrLf,
        64,
        false,
        b"a\nb\r\nc\n",
        &[b"a", b"b", b"c"],
        None,
    ),
    (LfOrCrLf, 64, false, b"\n\r\n\n", &[b"", b"", b""], None),
    (LfOrCrLf, 64, false, b"a\r\r\n", &[b"a\r"], None),
    (Lf, 64, false, b"a\r\nb\n", &[b"a\r", b"b"], None),
    (CrLf, 64, false, b"a\nb\r\nc\r\n", &[b"a\nb", b"c"], None),
    (CrLf, 64, false, b"\n\r\n\r\r\n", &[b"\n", b"\r"], None),
    (LfOrCrLf, 3, false, b"abc\r\nabc\n", &[b"abc", b"abc"], None),
    (
        LfOrCrLf,
        3,
        false,
        b"ab\nabcd\nx\n",
        &[b"ab"],
        Some(MessageTooLong),
    ),
    (LfOrCrLf, 3, false, b"abcd", &[], Some(ProtocolError)),
    (LfOrCrLf, 3, false, b"abcde", &[], Some(MessageTooLong)),
    (Lf, 3, false, b"abc\r\n", &[], Some(MessageTooLong)),
    (CrLf, 3, false, b"abc\n\r\n", &[], Some(MessageTooLong)),
    (
        LfOrCrLf,
        0,
        false,
        b"\n\r\nx\n",
        &[b"", b""],
        Some(MessageTooLong),
    ),
    (LfOrCrLf, 3, true, b"toolong\nok\n", &[b"ok"], None),
    (LfOrCrLf, 3, true, b"abcd\nabcde\r\nabc\n", &[b"abc"], None),
    (Lf, 3, true, b"abc\r\nab\n", &[b"ab"], None),
    (CrLf, 3, true, b"toolong\nstill\r\nok\r\n", &[b"ok"], None),
    (CrLf, 3, true, b"abcd\r\nok\r\n", &[b"ok"], None),
    (CrLf, 3, true, b"abcd\n\r\nok\r\n", &[b"ok"], None),
    (LfOrCrLf, 3, true, b"abcdef", &[], None),
    (LfOrCrLf, 3, false, b"abc", &[], Some(ProtocolError)),
    (CrLf, 3, false, b"ab\r", &[], Some(ProtocolError)),
];

fn check(outcome: &Outcome, lines: &[&[u8]], error: Option<SocketErrorStatus>, what: &str) {
    assert_eq!(outcome.frames, lines, "{what}");
    assert_eq!(outcome.error, error, "{what}");
}

#[test]
fn decode_table() {
    for &(ending, max, discard, input, want, error) in TABLE {
        let what = format!(
            "{ending:?} {max} {discard} {:?}",
            String::from_utf8_lossy(input)
        );
        let whole = decode_chunks(&mut lines(ending, max, discard), [input]);
        check(&whole, want, error, &what);
    }
}

/// Every split into two chunks, and many random splits, give the lines of the whole,
/// and the same error at the same place.
#[test]
fn partial_input_gives_the_same_lines() {
    for &(ending, max, discard, input, want, error) in TABLE {
        let what = format!(
            "{ending:?} {max} {discard} {:?}",
            String::from_utf8_lossy(input)
        );
        for i in 0..=input.len() {
            let got = decode_chunks(&mut lines(ending, max, discard), [&input[..i], &input[i..]]);
            check(&got, want, error, &format!("{what} split at {i}"));
        }
        let bytes: Vec<[u8; 1]> = input.iter().map(|&b| [b]).collect();
        let got = decode_chunks(
            &mut lines(ending, max, discard),
            bytes.iter().map(|b| &b[..]),
        );
        check(&got, want, error, &format!("{what} byte by byte"));
        for seed in 1..50 {
            let got = decode_chunks(&mut lines(ending, max, discard), split(input, seed));
            check(&got, want, error, &format!("{what} seed {seed}"));
        }
    }
}

#[test]
fn discarded_lines_are_counted() {
    let mut l = lines(LfOrCrLf, 3, true);
    let input = b"abcdef\nabcdefgh";
    assert_eq!(
        l.decode(input).unwrap(),
        Decoded::NeedMore {
            consumed: input.len()
        }
    );
    assert_eq!(l.discarded_lines(), 1);
    assert_eq!(
        l.decode(b"ij\nok\n").unwrap(),
        Decoded::Frame {
            frame: 3..5,
            consumed: 6
        }
    );
    assert_eq!(l.discarded_lines(), 2);
    assert_eq!(
        l.decode_eof(b"").unwrap(),
        Decoded::NeedMore { consumed: 0 }
    );
    // A line being discarded when the stream ends is dropped too, not an error.
    assert_eq!(
        l.decode_eof(b"xxxxxx").unwrap(),
        Decoded::NeedMore { consumed: 6 }
    );
    assert_eq!(l.discarded_lines(), 3);
    assert!(l.discards_overlong());
}

#[test]
fn unterminated_last_line() {
    let mut l = Lines::new().with_unterminated_last_line(true);
    assert_eq!(
        l.decode_eof(b"a\nbc").unwrap(),
        Decoded::Frame {
            frame: 0..1,
            consumed: 2
        }
    );
    assert_eq!(
        l.decode_eof(b"bc").unwrap(),
        Decoded::Frame {
            frame: 0..2,
            consumed: 2
        }
    );
    assert_eq!(
        l.decode_eof(b"").unwrap(),
        Decoded::NeedMore { consumed: 0 }
    );

    let mut l = Lines::new()
        .with_max_length(2)
        .with_unterminated_last_line(true);
    assert_eq!(l.decode_eof(b"abc").unwrap_err().status(), MessageTooLong);

    let mut l = Lines::new();
    let err = l.decode_eof(b"bc").unwrap_err();
    assert_eq!(err.status(), ProtocolError);
    assert!(
        err.to_string().contains("EOF in the middle of a frame"),
        "{err}"
    );
}

#[test]
fn scanning_resumes_where_it_stopped() {
    // The caller presents the same unconsumed bytes again, with more after them.
    let mut l = Lines::new();
    let mut buf = Vec::new();
    for _ in 0..1000 {
        buf.extend_from_slice(b"0123456789");
        assert_eq!(l.decode(&buf).unwrap(), Decoded::NeedMore { consumed: 0 });
    }
    buf.push(b'\n');
    assert_eq!(
        l.decode(&buf).unwrap(),
        Decoded::Frame {
            frame: 0..10_000,
            consumed: 10_001
        }
    );
}

#[test]
fn encode_table() {
    type Encoded = Result<&'static [u8], SocketErrorStatus>;
    let table: [(LineEnding, &[u8], Encoded); 9] = [
        (LfOrCrLf, b"hi", Ok(b"hi\n")),
        (LfOrCrLf, b"", Ok(b"\n")),
        (LfOrCrLf, b"a\nb", Err(InvalidArgument)),
        (LfOrCrLf, b"a\r", Err(InvalidArgument)),
        (Lf, b"a\r", Ok(b"a\r\n")),
        (Lf, b"a\n", Err(InvalidArgument)),
        (CrLf, b"a\nb\r", Ok(b"a\nb\r\r\n")),
        (CrLf, b"a\r\nb", Err(InvalidArgument)),
        (CrLf, b"abcde", Err(MessageTooLong)),
    ];
    for (ending, frame, want) in table {
        let mut l = lines(ending, 4, false);
        let mut dst = b">".to_vec();
        match (l.encode(frame, &mut dst), want) {
            (Ok(()), Ok(wire)) => {
                assert_eq!(&dst[1..], wire, "{ending:?}");
                assert_eq!(l.encoded_len(frame.len()), Some(wire.len()));
                let back = decode_chunks(&mut lines(ending, 4, false), [&dst[1..]]);
                assert_eq!(back.frames, [frame]);
            }
            (Err(e), Err(status)) => {
                assert_eq!(e.status(), status, "{ending:?} {frame:?}");
                assert_eq!(dst, b">", "nothing appended");
            }
            (got, want) => panic!("{ending:?} {frame:?}: {got:?}, expected {want:?}"),
        }
    }
}

/// A 1 GiB stream without a newline: the decoder consumes and drops it as it comes,
/// the caller's buffer never holds more than one chunk plus one maximal line.
#[test]
fn a_gibibyte_without_newline_stays_bounded() {
    const GIB: usize = 1 << 30;
    const CHUNK: usize = 4 << 20;
    let chunk = vec![b'x'; CHUNK];
    let started = Instant::now();

    // Discarding: the line is skipped and the stream resynchronises after it.
    let mut l = Lines::new().with_discard_overlong(true);
    let bound = Lines::DEFAULT_MAX_LENGTH + 2 + CHUNK;
    let mut buf: Vec<u8> = Vec::with_capacity(bound);
    let mut fed = 0;
    while fed < GIB {
        buf.extend_from_slice(&chunk);
        fed += CHUNK;
        let consumed = l.decode(&buf).unwrap().consumed();
        buf.drain(..consumed);
        assert!(
            buf.len() <= Lines::DEFAULT_MAX_LENGTH + 2,
            "{} bytes held",
            buf.len()
        );
    }
    assert!(buf.capacity() <= bound, "capacity {}", buf.capacity());
    buf.extend_from_slice(b"\nafter\n");
    let Decoded::Frame { frame, .. } = l.decode(&buf).unwrap() else {
        panic!("no line after the discarded one")
    };
    assert_eq!(&buf[frame], b"after");
    assert_eq!(l.discarded_lines(), 1);

    // Refusing: the error comes as soon as the maximum is passed.
    let mut l = Lines::new();
    let err = l.decode(&chunk).unwrap_err();
    assert_eq!(err.status(), MessageTooLong);
    eprintln!("1 GiB through Lines in {:?}", started.elapsed());
}

#[test]
fn fuzz_glue_on_the_seed_corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/lines");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for path in entries.filter_map(|e| Some(e.ok()?.path())) {
            sockloop::fuzzing::lines_target(&std::fs::read(path).unwrap());
        }
    }
    for &(_, _, _, input, _, _) in TABLE {
        for c in 0..=255u8 {
            let mut data = vec![c, c ^ 0x5a];
            data.extend_from_slice(input);
            sockloop::fuzzing::lines_target(&data);
        }
    }
}
