//! Property tests: encode → decode round trips with arbitrary configurations and
//! arbitrary chunking, and writer → reader round trips of arbitrary value sequences.

use proptest::prelude::*;
use sockloop::fuzzing::decode_chunks;
use sockloop::{
    ByteOrder, DataReader, DataWriter, DateTime, Encoder, Guid, LengthField, LengthPrefixed,
    LineEnding, Lines, TimeSpan, UnicodeEncoding,
};

fn byte_order() -> impl Strategy<Value = ByteOrder> {
    prop_oneof![Just(ByteOrder::BigEndian), Just(ByteOrder::LittleEndian)]
}

fn length_prefixed() -> impl Strategy<Value = LengthPrefixed> {
    let field = prop_oneof![
        Just(LengthField::U8),
        Just(LengthField::U16),
        Just(LengthField::U32),
        Just(LengthField::U64),
    ];
    (field, byte_order(), any::<bool>(), 0usize..600).prop_map(|(f, o, inc, max)| {
        LengthPrefixed::new()
            .with_length_field(f)
            .with_byte_order(o)
            .with_length_including_header(inc)
            .with_max_frame_length(max)
    })
}

fn lines() -> impl Strategy<Value = Lines> {
    let ending = prop_oneof![
        Just(LineEnding::Lf),
        Just(LineEnding::CrLf),
        Just(LineEnding::LfOrCrLf),
    ];
    (ending, 0usize..40, any::<bool>()).prop_map(|(e, max, d)| {
        Lines::new()
            .with_ending(e)
            .with_max_length(max)
            .with_discard_overlong(d)
    })
}

/// Cuts `wire` at the given fractions.
fn cut<'a>(wire: &'a [u8], cuts: &[f64]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|f| (f * wire.len() as f64) as usize)
        .collect();
    points.push(0);
    points.push(wire.len());
    points.sort_unstable();
    points.windows(2).map(|w| &wire[w[0]..w[1]]).collect()
}

/// Encodes the frames the encoder accepts; returns them and the wire bytes.
fn encode_all<E: Encoder>(encoder: &mut E, frames: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut wire = Vec::new();
    let accepted = frames
        .into_iter()
        .filter(|f| encoder.encode(f, &mut wire).is_ok())
        .collect();
    (accepted, wire)
}

proptest! {
    #[test]
    fn length_prefixed_round_trip(
        codec in length_prefixed(),
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        cuts in prop::collection::vec(0.0..1.0f64, 0..8),
    ) {
        let (accepted, wire) = encode_all(&mut codec.clone(), frames);
        let out = decode_chunks(&mut codec.clone(), cut(&wire, &cuts));
        prop_assert_eq!(out.error, None);
        prop_assert_eq!(out.frames, accepted);
        prop_assert!(out.max_leftover <= codec.max_frame_length().max(8));
    }

    #[test]
    fn lines_round_trip(
        codec in lines(),
        frames in prop::collection::vec(
            prop::collection::vec(prop::sample::select(b"ab\r\n".to_vec()), 0..50), 0..12),
        cuts in prop::collection::vec(0.0..1.0f64, 0..8),
    ) {
        let (accepted, wire) = encode_all(&mut codec.clone(), frames);
        let out = decode_chunks(&mut codec.clone(), cut(&wire, &cuts));
        prop_assert_eq!(out.error, None);
        prop_assert_eq!(out.frames, accepted);
        prop_assert!(out.max_leftover <= codec.max_length() + 2);
    }

    #[test]
    fn lines_never_return_more_than_the_maximum(
        codec in lines(),
        input in prop::collection::vec(prop::sample::select(b"ab\r\n".to_vec()), 0..400),
        cuts in prop::collection::vec(0.0..1.0f64, 0..8),
    ) {
        let whole = decode_chunks(&mut codec.clone(), [&input[..]]);
        let chunked = decode_chunks(&mut codec.clone(), cut(&input, &cuts));
        prop_assert!(whole.frames.iter().all(|f| f.len() <= codec.max_length()));
        prop_assert_eq!(whole.frames, chunked.frames);
        prop_assert_eq!(whole.error, chunked.error);
    }

    #[test]
    fn data_round_trip(
        order in byte_order(),
        encoding in prop_oneof![
            Just(UnicodeEncoding::Utf8), Just(UnicodeEncoding::Utf16Le), Just(UnicodeEncoding::Utf16Be)],
        values in prop::collection::vec(value(), 0..20),
    ) {
        let mut w = DataWriter::new().with_byte_order(order).with_unicode_encoding(encoding);
        for v in &values {
            v.write(&mut w);
        }
        let bytes = w.into_inner();
        let mut r = DataReader::new(&bytes).with_byte_order(order).with_unicode_encoding(encoding);
        for v in &values {
            prop_assert_eq!(&Value::read_like(v, &mut r), v);
        }
        prop_assert_eq!(r.unconsumed_len(), 0);
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    U8(u8),
    I16(i16),
    U32(u32),
    I64(i64),
    F64Bits(u64),
    Bool(bool),
    Str(String),
    Guid(u32, u16, u16, [u8; 8]),
    DateTime(i64),
    TimeSpan(i64),
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::F64Bits),
        any::<bool>().prop_map(Value::Bool),
        any::<String>().prop_map(Value::Str),
        any::<(u32, u16, u16, [u8; 8])>().prop_map(|(a, b, c, d)| Value::Guid(a, b, c, d)),
        any::<i64>().prop_map(Value::DateTime),
        any::<i64>().prop_map(Value::TimeSpan),
    ]
}

impl Value {
    fn write(&self, w: &mut DataWriter) {
        match self {
            Value::U8(v) => w.write_u8(*v),
            Value::I16(v) => w.write_i16(*v),
            Value::U32(v) => w.write_u32(*v),
            Value::I64(v) => w.write_i64(*v),
            Value::F64Bits(v) => w.write_f64(f64::from_bits(*v)),
            Value::Bool(v) => w.write_bool(*v),
            Value::Str(s) => {
                w.write_u32(w.measure_string(s) as u32);
                w.write_string(s);
            }
            Value::Guid(a, b, c, d) => w.write_guid(Guid::new(*a, *b, *c, *d)),
            Value::DateTime(t) => w.write_date_time(DateTime::from_ticks(*t)),
            Value::TimeSpan(t) => w.write_time_span(TimeSpan::from_ticks(*t)),
        }
    }

    fn read_like(like: &Value, r: &mut DataReader<'_>) -> Value {
        match like {
            Value::U8(_) => Value::U8(r.read_u8().unwrap()),
            Value::I16(_) => Value::I16(r.read_i16().unwrap()),
            Value::U32(_) => Value::U32(r.read_u32().unwrap()),
            Value::I64(_) => Value::I64(r.read_i64().unwrap()),
            Value::F64Bits(_) => Value::F64Bits(r.read_f64().unwrap().to_bits()),
            Value::Bool(_) => Value::Bool(r.read_bool().unwrap()),
            Value::Str(_) => {
                let n = r.read_u32().unwrap() as usize;
                Value::Str(r.read_string(n).unwrap().into_owned())
            }
            Value::Guid(..) => {
                let g = r.read_guid().unwrap();
                Value::Guid(g.data1, g.data2, g.data3, g.data4)
            }
            Value::DateTime(_) => Value::DateTime(r.read_date_time().unwrap().ticks()),
            Value::TimeSpan(_) => Value::TimeSpan(r.read_time_span().unwrap().ticks()),
        }
    }
}
