//! Glue shared by the fuzz targets (`fuzz/`) and the tests. Not part of the API: it
//! may change at any time.
//!
//! Each `*_target` function takes the fuzzer's input and panics when an oracle fails:
//! the decoder disagrees with itself over different chunkings, a decoded frame does
//! not encode back to the bytes it came from, or a decoder holds more input than its
//! limits allow. Bad input alone must never panic.

use super::{
    ByteOrder, DataReader, DataWriter, Decoded, Decoder, Encoder, LengthField, LengthPrefixed,
    LineEnding, Lines, UnicodeEncoding,
};
use crate::error::{Result, SocketErrorStatus};

/// What a decoder made of a whole stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The frames, in order.
    pub frames: Vec<Vec<u8>>,
    /// For each frame, the stream offset just after it.
    pub ends: Vec<usize>,
    /// The status of the error that stopped decoding, if one did.
    pub error: Option<SocketErrorStatus>,
    /// The most bytes left unconsumed in the buffer after a `NeedMore`.
    pub max_leftover: usize,
}

/// Drives `decoder` over `chunks` the way a socket does: one buffer, new bytes appended,
/// consumed bytes dropped, `decode_eof` at the end. Checks the decoder's side of the
/// contract (ranges inside the input, progress on every frame).
pub fn decode_chunks<'c, D: Decoder + ?Sized>(
    decoder: &mut D,
    chunks: impl IntoIterator<Item = &'c [u8]>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut buf = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        if let Err(e) = drain(decoder, &mut buf, &mut offset, &mut out, false) {
            out.error = Some(e.status());
            return out;
        }
    }
    if let Err(e) = drain(decoder, &mut buf, &mut offset, &mut out, true) {
        out.error = Some(e.status());
    }
    out
}

fn drain<D: Decoder + ?Sized>(
    decoder: &mut D,
    buf: &mut Vec<u8>,
    offset: &mut usize,
    out: &mut Outcome,
    eof: bool,
) -> Result<()> {
    let mut start = 0;
    let result = loop {
        let src = &buf[start..];
        let decoded = match eof {
            true => decoder.decode_eof(src),
            false => decoder.decode(src),
        };
        match decoded {
            Err(e) => break Err(e),
            Ok(Decoded::Frame { frame, consumed }) => {
                assert!(
                    frame.start <= frame.end && frame.end <= consumed,
                    "{frame:?} {consumed}"
                );
                assert!(
                    consumed > 0 && consumed <= src.len(),
                    "{consumed} of {}",
                    src.len()
                );
                out.frames.push(src[frame].to_vec());
                start += consumed;
                out.ends.push(*offset + start);
            }
            Ok(Decoded::NeedMore { consumed }) => {
                assert!(consumed <= src.len(), "{consumed} of {}", src.len());
                start += consumed;
                out.max_leftover = out.max_leftover.max(src.len() - consumed);
                break Ok(());
            }
        }
    };
    buf.drain(..start);
    *offset += start;
    result
}

/// Splits `data` into chunks of pseudo-random sizes drawn from `seed` (seed 0: whole).
pub fn split(data: &[u8], seed: u64) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let mut state = seed;
    let mut rest = data;
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = 1 + (state % 64) as usize;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// A `LengthPrefixed` configuration from one byte.
pub fn length_prefixed_config(c: u8) -> LengthPrefixed {
    let field = [
        LengthField::U8,
        LengthField::U16,
        LengthField::U32,
        LengthField::U64,
    ][usize::from(c & 3)];
    let order = [ByteOrder::BigEndian, ByteOrder::LittleEndian][usize::from(c >> 2 & 1)];
    let max = match c >> 4 {
        15 => usize::MAX,
        14 => LengthPrefixed::DEFAULT_MAX_FRAME_LENGTH,
        n => (1usize << n) - 1,
    };
    LengthPrefixed::new()
        .with_length_field(field)
        .with_byte_order(order)
        .with_length_including_header(c & 8 != 0)
        .with_max_frame_length(max)
}

/// A `Lines` configuration from one byte.
pub fn lines_config(c: u8) -> Lines {
    let ending = [
        LineEnding::Lf,
        LineEnding::CrLf,
        LineEnding::LfOrCrLf,
        LineEnding::LfOrCrLf,
    ][usize::from(c & 3)];
    let max = match c >> 4 {
        15 => Lines::DEFAULT_MAX_LENGTH,
        n => usize::from(n) * 3,
    };
    Lines::new()
        .with_ending(ending)
        .with_discard_overlong(c & 4 != 0)
        .with_unterminated_last_line(c & 8 != 0)
        .with_max_length(max)
}

/// Length-prefixed decoding: same frames however chunked, every frame encodes back to
/// exactly the bytes it was decoded from, nothing held beyond one frame.
pub fn length_prefixed_target(data: &[u8]) {
    let [c, seed, data @ ..] = data else { return };
    let whole = decode_chunks(&mut length_prefixed_config(*c), [data]);
    let chunked = decode_chunks(
        &mut length_prefixed_config(*c),
        split(data, u64::from(*seed)),
    );
    assert_eq!(whole.frames, chunked.frames);
    assert_eq!(whole.ends, chunked.ends);
    assert_eq!(whole.error, chunked.error);
    let mut encoder = length_prefixed_config(*c);
    let bound = encoder.max_frame_length().max(8);
    assert!(
        chunked.max_leftover <= bound,
        "{} > {bound}",
        chunked.max_leftover
    );
    let mut wire = Vec::new();
    for frame in &whole.frames {
        let before = wire.len();
        encoder
            .encode(frame, &mut wire)
            .expect("a decoded frame encodes");
        assert_eq!(encoder.encoded_len(frame.len()), Some(wire.len() - before));
    }
    assert_eq!(wire, data[..whole.ends.last().copied().unwrap_or(0)]);
}

/// Line decoding: same lines however chunked, lines within the maximum, every line
/// the encoder accepts decodes back to itself, nothing held beyond one line.
pub fn lines_target(data: &[u8]) {
    let [c, seed, data @ ..] = data else { return };
    let whole = decode_chunks(&mut lines_config(*c), [data]);
    let chunked = decode_chunks(&mut lines_config(*c), split(data, u64::from(*seed)));
    assert_eq!(whole.frames, chunked.frames);
    assert_eq!(whole.ends, chunked.ends);
    assert_eq!(whole.error, chunked.error);
    let mut codec = lines_config(*c);
    assert!(chunked.max_leftover <= codec.max_length() + 2);
    for frame in &whole.frames {
        assert!(frame.len() <= codec.max_length());
        let mut wire = Vec::new();
        match codec.encode(frame, &mut wire) {
            Ok(()) => {
                let again = decode_chunks(&mut lines_config(*c), [&wire[..]]);
                assert_eq!(again.frames, std::slice::from_ref(frame));
                assert_eq!(again.error, None);
            }
            Err(e) => {
                assert_eq!(e.status(), SocketErrorStatus::InvalidArgument);
                assert_eq!(codec.ending(), LineEnding::LfOrCrLf);
                assert_eq!(frame.last(), Some(&b'\r'));
            }
        }
    }
}

/// A sequence of typed reads chosen by the input itself, each mirrored by the writer:
/// the writer must reproduce exactly the bytes read, and a failed read consumes nothing.
pub fn data_reader_target(data: &[u8]) {
    let [c, data @ ..] = data else { return };
    let order = [ByteOrder::BigEndian, ByteOrder::LittleEndian][usize::from(c & 1)];
    let encodings = [
        UnicodeEncoding::Utf8,
        UnicodeEncoding::Utf16Le,
        UnicodeEncoding::Utf16Be,
    ];
    let mut r = DataReader::new(data)
        .with_byte_order(order)
        .with_unicode_encoding(encodings[usize::from(c >> 1) % 3]);
    let mut w = DataWriter::new()
        .with_byte_order(order)
        .with_unicode_encoding(r.unicode_encoding());
    while let Ok(op) = r.read_u8() {
        w.write_u8(op);
        let before = r.position();
        if mirror_one(op, &mut r, &mut w).is_err() {
            assert_eq!(r.position(), before, "a failed read consumed input");
            break;
        }
    }
    assert_eq!(w.as_bytes(), &data[..r.position()]);
    assert_eq!(r.unconsumed_len(), data.len() - r.position());
}

fn mirror_one(op: u8, r: &mut DataReader<'_>, w: &mut DataWriter) -> Result<()> {
    match op % 20 {
        0 => r.read_u8().map(|v| w.write_u8(v)),
        1 => r.read_i8().map(|v| w.write_i8(v)),
        2 => r.read_u16().map(|v| w.write_u16(v)),
        3 => r.read_i16().map(|v| w.write_i16(v)),
        4 => r.read_u32().map(|v| w.write_u32(v)),
        5 => r.read_i32().map(|v| w.write_i32(v)),
        6 => r.read_u64().map(|v| w.write_u64(v)),
        7 => r.read_i64().map(|v| w.write_i64(v)),
        8 => r.read_f32().map(|v| w.write_f32(v)),
        9 => r.read_f64().map(|v| w.write_f64(v)),
        10 => r.read_bool().map(|v| w.write_bool(v)),
        11 => r.read_guid().map(|v| w.write_guid(v)),
        12 => r.read_date_time().map(|v| w.write_date_time(v)),
        13 => r.read_time_span().map(|v| w.write_time_span(v)),
        14 | 15 => {
            let n = usize::from(op / 20);
            match op % 20 {
                14 => r.read_bytes(n).map(|v| w.write_bytes(v)),
                _ => r.read_string(n).map(|s| {
                    assert_eq!(w.measure_string(&s), n);
                    assert_eq!(w.write_string(&s), n);
                }),
            }
        }
        16 => {
            let order = match r.byte_order() {
                ByteOrder::BigEndian => ByteOrder::LittleEndian,
                ByteOrder::LittleEndian => ByteOrder::BigEndian,
            };
            r.set_byte_order(order);
            w.set_byte_order(order);
            Ok(())
        }
        17 => {
            let encoding = match r.unicode_encoding() {
                UnicodeEncoding::Utf8 => UnicodeEncoding::Utf16Le,
                UnicodeEncoding::Utf16Le => UnicodeEncoding::Utf16Be,
                UnicodeEncoding::Utf16Be => UnicodeEncoding::Utf8,
            };
            r.set_unicode_encoding(encoding);
            w.set_unicode_encoding(encoding);
            Ok(())
        }
        _ => {
            // A length-prefixed string, as `WriteUInt32(MeasureString(s)); WriteString(s)`.
            let mut peek = r.clone();
            let n = peek.read_u32()? as usize;
            let s = peek.read_string(n)?;
            *r = peek;
            w.write_u32(n as u32);
            assert_eq!(w.write_string(&s), n);
            Ok(())
        }
    }
}
