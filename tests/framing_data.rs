//! DataReader and DataWriter: every call, both byte orders, every string encoding.

use sockloop::SocketErrorStatus;
use sockloop::{ByteOrder, DataReader, DataWriter, DateTime, Guid, TimeSpan, UnicodeEncoding};

use ByteOrder::{BigEndian as Be, LittleEndian as Le};

fn writer(order: ByteOrder) -> DataWriter {
    DataWriter::new().with_byte_order(order)
}

/// `$read`/`$write` of `$value` give exactly `$bytes` in `$order`, and the reader
/// refuses every truncation of them without consuming anything.
macro_rules! number_table {
    ($($read:ident / $write:ident: $value:expr, $order:ident => $bytes:expr;)*) => {$(
        let bytes: &[u8] = &$bytes;
        let mut w = writer($order);
        w.$write($value);
        assert_eq!(w.as_bytes(), bytes, "{} {:?}", stringify!($write), $order);
        let mut r = DataReader::new(bytes).with_byte_order($order);
        assert_eq!(r.$read().unwrap(), $value, "{} {:?}", stringify!($read), $order);
        assert_eq!(r.unconsumed_len(), 0);
        for cut in 0..bytes.len() {
            let mut r = DataReader::new(&bytes[..cut]).with_byte_order($order);
            let err = r.$read().unwrap_err();
            assert_eq!(err.status(), SocketErrorStatus::ProtocolError);
            assert!(err.detail().unwrap().contains(&format!("{} bytes", bytes.len())), "{err}");
            assert_eq!(r.position(), 0);
        }
    )*};
}

#[test]
fn numbers_in_both_byte_orders() {
    number_table! {
        read_u8 / write_u8: 0xab_u8, Be => [0xab];
        read_u8 / write_u8: 0xab_u8, Le => [0xab];
        read_i8 / write_i8: -2_i8, Be => [0xfe];
        read_i8 / write_i8: -2_i8, Le => [0xfe];
        read_u16 / write_u16: 0x1234_u16, Be => [0x12, 0x34];
        read_u16 / write_u16: 0x1234_u16, Le => [0x34, 0x12];
        read_i16 / write_i16: -2_i16, Be => [0xff, 0xfe];
        read_i16 / write_i16: -2_i16, Le => [0xfe, 0xff];
        read_u32 / write_u32: 0x1234_5678_u32, Be => [0x12, 0x34, 0x56, 0x78];
        read_u32 / write_u32: 0x1234_5678_u32, Le => [0x78, 0x56, 0x34, 0x12];
        read_i32 / write_i32: -2_i32, Be => [0xff, 0xff, 0xff, 0xfe];
        read_i32 / write_i32: i32::MIN, Le => [0, 0, 0, 0x80];
        read_u64 / write_u64: 0x0102_0304_0506_0708_u64, Be => [1, 2, 3, 4, 5, 6, 7, 8];
        read_u64 / write_u64: 0x0102_0304_0506_0708_u64, Le => [8, 7, 6, 5, 4, 3, 2, 1];
        read_i64 / write_i64: -2_i64, Be => [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];
        read_i64 / write_i64: i64::MIN, Le => [0, 0, 0, 0, 0, 0, 0, 0x80];
        read_f32 / write_f32: 1.5_f32, Be => [0x3f, 0xc0, 0, 0];
        read_f32 / write_f32: 1.5_f32, Le => [0, 0, 0xc0, 0x3f];
        read_f64 / write_f64: -2.0_f64, Be => [0xc0, 0, 0, 0, 0, 0, 0, 0];
        read_f64 / write_f64: -2.0_f64, Le => [0, 0, 0, 0, 0, 0, 0, 0xc0];
        read_bool / write_bool: true, Be => [1];
        read_bool / write_bool: false, Le => [0];
        read_date_time / write_date_time: DateTime::from_ticks(0x0102_0304_0506_0708), Be => [1, 2, 3, 4, 5, 6, 7, 8];
        read_date_time / write_date_time: DateTime::UNIX_EPOCH, Le => 116_444_736_000_000_000_i64.to_le_bytes();
        read_time_span / write_time_span: TimeSpan::from_ticks(-1), Be => [0xff; 8];
        read_time_span / write_time_span: TimeSpan::from_ticks(10_000_000), Le => 10_000_000_i64.to_le_bytes();
    }
}

#[test]
fn guid_follows_the_windows_layout() {
    let g = Guid::new(0x0102_0304, 0x0506, 0x0708, [9, 10, 11, 12, 13, 14, 15, 16]);
    let be = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    let le = [4, 3, 2, 1, 6, 5, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16];
    for (order, bytes) in [(Be, be), (Le, le)] {
        let mut w = writer(order);
        w.write_guid(g);
        assert_eq!(w.as_bytes(), bytes);
        let mut r = DataReader::new(&bytes).with_byte_order(order);
        assert_eq!(r.read_guid().unwrap(), g);
        let mut short = DataReader::new(&bytes[..15]).with_byte_order(order);
        assert_eq!(
            short.read_guid().unwrap_err().status(),
            SocketErrorStatus::ProtocolError
        );
    }
    assert_eq!(g.to_string(), "01020304-0506-0708-090a-0b0c0d0e0f10");
}

#[test]
fn floats_keep_their_bits() {
    for bits in [0x7fc0_0001_u32, 0xff80_0000, 0x8000_0000, 1] {
        let mut w = writer(Le);
        w.write_f32(f32::from_bits(bits));
        let bytes = w.into_inner();
        let mut r = DataReader::new(&bytes).with_byte_order(Le);
        assert_eq!(r.read_f32().unwrap().to_bits(), bits);
    }
    let nan = f64::from_bits(0x7ff8_0000_dead_beef);
    let mut w = writer(Be);
    w.write_f64(nan);
    let bytes = w.detach();
    assert_eq!(
        DataReader::new(&bytes).read_f64().unwrap().to_bits(),
        nan.to_bits()
    );
}

#[test]
fn bool_must_be_zero_or_one() {
    let mut r = DataReader::new(&[2, 1]);
    let err = r.read_bool().unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::ProtocolError);
    assert_eq!(err.operation(), "read bool");
    assert_eq!(r.position(), 0);
    assert_eq!(r.read_u8().unwrap(), 2);
    assert!(r.read_bool().unwrap());
}

#[test]
fn strings_in_every_encoding() {
    let table: [(UnicodeEncoding, &str, &[u8]); 6] = [
        (UnicodeEncoding::Utf8, "é€", &[0xc3, 0xa9, 0xe2, 0x82, 0xac]),
        (UnicodeEncoding::Utf8, "", &[]),
        (UnicodeEncoding::Utf16Le, "a€", &[0x61, 0, 0xac, 0x20]),
        (UnicodeEncoding::Utf16Be, "a€", &[0, 0x61, 0x20, 0xac]),
        (UnicodeEncoding::Utf16Le, "😀", &[0x3d, 0xd8, 0x00, 0xde]),
        (UnicodeEncoding::Utf16Be, "😀", &[0xd8, 0x3d, 0xde, 0x00]),
    ];
    for (encoding, text, bytes) in table {
        // The string's byte order comes from the encoding, not from the writer's order.
        for order in [Be, Le] {
            let mut w = writer(order).with_unicode_encoding(encoding);
            assert_eq!(w.measure_string(text), bytes.len(), "{encoding:?} {text}");
            assert_eq!(w.write_string(text), bytes.len());
            assert_eq!(w.unstored_len(), bytes.len());
            assert_eq!(w.as_bytes(), bytes, "{encoding:?} {text}");
            let mut r = DataReader::new(bytes)
                .with_byte_order(order)
                .with_unicode_encoding(encoding);
            assert_eq!(r.read_string(bytes.len()).unwrap(), text);
            assert_eq!(r.unconsumed_len(), 0);
        }
    }
}

#[test]
fn invalid_strings_are_errors_that_consume_nothing() {
    let table: [(UnicodeEncoding, &[u8], usize, &str); 6] = [
        (UnicodeEncoding::Utf8, &[0xc3], 1, "valid UTF-8"),
        (UnicodeEncoding::Utf8, &[0xff, 0xfe], 2, "valid UTF-8"),
        (UnicodeEncoding::Utf8, b"abc", 4, "4 bytes, 3 left"),
        (UnicodeEncoding::Utf16Le, &[0x3d, 0xd8], 2, "lone surrogate"),
        (UnicodeEncoding::Utf16Be, &[0, 0x61, 0], 3, "even number"),
        (UnicodeEncoding::Utf16Be, &[0, 0x61], usize::MAX, "left"),
    ];
    for (encoding, bytes, n, expected) in table {
        let mut r = DataReader::new(bytes).with_unicode_encoding(encoding);
        let err = r.read_string(n).unwrap_err();
        assert_eq!(err.status(), SocketErrorStatus::ProtocolError);
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(r.position(), 0);
    }
}

#[test]
fn bytes_are_borrowed_and_bounded() {
    let data = [1, 2, 3, 4, 5];
    let mut r = DataReader::new(&data);
    assert_eq!(r.read_bytes(2).unwrap(), [1, 2]);
    assert_eq!(r.read_bytes(0).unwrap(), []);
    assert_eq!(
        r.read_bytes(4).unwrap_err().status(),
        SocketErrorStatus::ProtocolError
    );
    assert_eq!(
        r.read_bytes(usize::MAX).unwrap_err().status(),
        SocketErrorStatus::ProtocolError
    );
    assert_eq!(r.remaining(), [3, 4, 5]);
    assert_eq!(r.unconsumed_len(), 3);
    let mut w = DataWriter::with_capacity(8);
    w.write_bytes(r.read_bytes(3).unwrap());
    assert_eq!(w.into_inner(), [3, 4, 5]);
}

#[test]
fn writer_reuses_and_hands_over_its_buffer() {
    let mut w = DataWriter::from_vec(vec![9]).with_byte_order(Le);
    w.write_u16(1);
    assert_eq!(w.detach(), [9, 1, 0]);
    assert_eq!(w.unstored_len(), 0);
    assert_eq!(w.byte_order(), Le, "detach keeps the settings");
    w.write_u16(1);
    w.clear();
    w.write_u8(7);
    assert_eq!(w.into_inner(), [7]);
}

/// Everything a writer can write, read back in order, in every configuration.
#[test]
fn round_trip_every_type() {
    let guid = Guid::new(0xdead_beef, 0xcafe, 0xf00d, *b"sockloop");
    for order in [Be, Le] {
        for encoding in [
            UnicodeEncoding::Utf8,
            UnicodeEncoding::Utf16Le,
            UnicodeEncoding::Utf16Be,
        ] {
            let mut w = writer(order).with_unicode_encoding(encoding);
            w.write_u8(200);
            w.write_i8(-100);
            w.write_u16(65_000);
            w.write_i16(-30_000);
            w.write_u32(4_000_000_000);
            w.write_i32(-2_000_000_000);
            w.write_u64(u64::MAX - 1);
            w.write_i64(i64::MIN + 1);
            w.write_f32(3.25);
            w.write_f64(-1e300);
            w.write_bool(true);
            w.write_bytes(b"raw");
            let text = "Grüße, 世界 🌍";
            let n = w.measure_string(text);
            w.write_u32(n as u32);
            assert_eq!(w.write_string(text), n);
            w.write_guid(guid);
            w.write_date_time(DateTime::from_ticks(-5));
            w.write_time_span(TimeSpan::from_ticks(i64::MAX));
            let bytes = w.into_inner();

            let mut r = DataReader::new(&bytes)
                .with_byte_order(order)
                .with_unicode_encoding(encoding);
            assert_eq!(r.read_u8().unwrap(), 200);
            assert_eq!(r.read_i8().unwrap(), -100);
            assert_eq!(r.read_u16().unwrap(), 65_000);
            assert_eq!(r.read_i16().unwrap(), -30_000);
            assert_eq!(r.read_u32().unwrap(), 4_000_000_000);
            assert_eq!(r.read_i32().unwrap(), -2_000_000_000);
            assert_eq!(r.read_u64().unwrap(), u64::MAX - 1);
            assert_eq!(r.read_i64().unwrap(), i64::MIN + 1);
            assert_eq!(r.read_f32().unwrap(), 3.25);
            assert_eq!(r.read_f64().unwrap(), -1e300);
            assert!(r.read_bool().unwrap());
            assert_eq!(r.read_bytes(3).unwrap(), b"raw");
            let n = r.read_u32().unwrap() as usize;
            assert_eq!(r.read_string(n).unwrap(), text);
            assert_eq!(r.read_guid().unwrap(), guid);
            assert_eq!(r.read_date_time().unwrap(), DateTime::from_ticks(-5));
            assert_eq!(r.read_time_span().unwrap(), TimeSpan::from_ticks(i64::MAX));
            assert_eq!(r.unconsumed_len(), 0);
        }
    }
}

#[test]
fn settings_can_change_between_reads() {
    let mut w = DataWriter::new();
    w.write_u16(1);
    w.set_byte_order(Le);
    w.write_u16(1);
    w.set_unicode_encoding(UnicodeEncoding::Utf16Be);
    w.write_string("A");
    assert_eq!(w.unicode_encoding(), UnicodeEncoding::Utf16Be);
    let bytes = w.into_inner();
    assert_eq!(bytes, [0, 1, 1, 0, 0, 0x41]);
    let mut r = DataReader::new(&bytes);
    assert_eq!(r.byte_order(), Be);
    assert_eq!(r.read_u16().unwrap(), 1);
    r.set_byte_order(Le);
    assert_eq!(r.read_u16().unwrap(), 1);
    r.set_unicode_encoding(UnicodeEncoding::Utf16Be);
    assert_eq!(r.unicode_encoding(), UnicodeEncoding::Utf16Be);
    assert_eq!(r.read_string(2).unwrap(), "A");
}

/// The fuzz target's oracle on a few inputs, so the glue is tested by `cargo test`.
#[test]
fn data_reader_fuzz_glue() {
    let inputs: [&[u8]; 4] = [
        b"",
        &[0, 4, 0, 0, 0, 1, 10, 1, 10, 2],
        &[3, 16, 6, 1, 2, 3, 4, 5, 6, 7, 8, 17, 35, 0x61, 0],
        &[1, 19, 2, 0, 0, 0, 0xc3, 0xa9, 19, 255, 255, 255, 255],
    ];
    for input in inputs {
        sockloop::fuzzing::data_reader_target(input);
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/data_reader");
    for entry in std::fs::read_dir(dir).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        sockloop::fuzzing::data_reader_target(&input);
    }
}
