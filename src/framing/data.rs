//! [`DataReader`] and [`DataWriter`]: typed values to and from byte buffers.

use std::borrow::Cow;

use super::values::{DateTime, Guid, TimeSpan};
use crate::error::{Error, Result, SocketErrorStatus};

/// The byte order of multi-byte numbers. Big endian (network order) by default, as on
/// Windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Most significant byte first (network order).
    #[default]
    BigEndian,
    /// Least significant byte first.
    LittleEndian,
}

/// The encoding of strings. UTF-8 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UnicodeEncoding {
    /// UTF-8.
    #[default]
    Utf8,
    /// UTF-16, little endian code units.
    Utf16Le,
    /// UTF-16, big endian code units.
    Utf16Be,
}

/// Reads typed values from a borrowed byte slice, front to back.
///
/// The counterpart of [`DataWriter`] and of Windows' `DataReader` after `LoadAsync`:
/// numbers in the reader's [`ByteOrder`], strings in its [`UnicodeEncoding`]. A read
/// that finds too few bytes or an invalid value returns an error with status
/// `ProtocolError` and a detail saying what was expected, and consumes nothing, so
/// the caller can retry once more bytes have arrived.
///
/// Reading never allocates, except [`read_string`](Self::read_string) in UTF-16
/// (bounded by the input).
///
/// # Examples
///
/// ```
/// use sockloop::{ByteOrder, DataReader};
///
/// let mut r = DataReader::new(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o', 0x34, 0x12]);
/// let len = r.read_u32()? as usize;
/// assert_eq!(r.read_string(len)?, "hello");
/// r.set_byte_order(ByteOrder::LittleEndian);
/// assert_eq!(r.read_u16()?, 0x1234);
/// assert_eq!(r.unconsumed_len(), 0);
/// let err = r.read_u8().unwrap_err();
/// assert_eq!(err.status(), sockloop::SocketErrorStatus::ProtocolError);
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DataReader<'a> {
    buf: &'a [u8],
    pos: usize,
    byte_order: ByteOrder,
    encoding: UnicodeEncoding,
}

macro_rules! read_numbers {
    ($($(#[$doc:meta])* $name:ident -> $ty:ty, $op:literal;)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// `ProtocolError` if fewer bytes than the type's size are left.
        pub fn $name(&mut self) -> Result<$ty> {
            let bytes = self.take_array($op)?;
            Ok(match self.byte_order {
                ByteOrder::BigEndian => <$ty>::from_be_bytes(bytes),
                ByteOrder::LittleEndian => <$ty>::from_le_bytes(bytes),
            })
        }
    )*};
}

impl<'a> DataReader<'a> {
    /// A reader over `buf`, big endian, UTF-8.
    pub fn new(buf: &'a [u8]) -> DataReader<'a> {
        DataReader {
            buf,
            pos: 0,
            byte_order: ByteOrder::BigEndian,
            encoding: UnicodeEncoding::Utf8,
        }
    }

    /// The same reader with another byte order.
    #[must_use]
    pub fn with_byte_order(mut self, order: ByteOrder) -> Self {
        self.byte_order = order;
        self
    }

    /// The same reader with another string encoding.
    #[must_use]
    pub fn with_unicode_encoding(mut self, encoding: UnicodeEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The byte order of the reads that follow.
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }

    /// Sets the byte order of the reads that follow.
    pub fn set_byte_order(&mut self, order: ByteOrder) {
        self.byte_order = order;
    }

    /// The encoding of the strings read next.
    pub fn unicode_encoding(&self) -> UnicodeEncoding {
        self.encoding
    }

    /// Sets the encoding of the strings read next.
    pub fn set_unicode_encoding(&mut self, encoding: UnicodeEncoding) {
        self.encoding = encoding;
    }

    /// How many bytes are left to read (Windows' `UnconsumedBufferLength`).
    pub fn unconsumed_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes left to read.
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    read_numbers! {
        /// Reads an `u16`.
        read_u16 -> u16, "read u16";
        /// Reads an `i16`.
        read_i16 -> i16, "read i16";
        /// Reads an `u32`.
        read_u32 -> u32, "read u32";
        /// Reads an `i32`.
        read_i32 -> i32, "read i32";
        /// Reads an `u64`.
        read_u64 -> u64, "read u64";
        /// Reads an `i64`.
        read_i64 -> i64, "read i64";
        /// Reads an IEEE 754 `f32`, bit for bit (NaN payloads included).
        read_f32 -> f32, "read f32";
        /// Reads an IEEE 754 `f64`, bit for bit (NaN payloads included).
        read_f64 -> f64, "read f64";
    }

    /// Reads one byte.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if no byte is left.
    pub fn read_u8(&mut self) -> Result<u8> {
        let [b] = self.take_array("read u8")?;
        Ok(b)
    }

    /// Reads one byte as an `i8`.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if no byte is left.
    pub fn read_i8(&mut self) -> Result<i8> {
        let [b] = self.take_array("read i8")?;
        Ok(i8::from_ne_bytes([b]))
    }

    /// Reads a boolean: one byte, 0 or 1.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if no byte is left, or if the byte is neither 0 nor 1 (Windows
    /// reads any non-zero byte as `true`; a strict reader makes a read → write round
    /// trip exact and catches misaligned reads).
    pub fn read_bool(&mut self) -> Result<bool> {
        match self.buf.get(self.pos) {
            Some(&b @ (0 | 1)) => {
                self.pos += 1;
                Ok(b == 1)
            }
            Some(_) => Err(invalid("read bool", "a byte 0 or 1")),
            None => Err(self.short("read bool", 1)),
        }
    }

    /// Reads `n` bytes, borrowed from the input.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if fewer than `n` bytes are left.
    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.take(n, "read bytes")
    }

    /// Reads a string of `n` bytes (as [`DataWriter::measure_string`] counts them) in
    /// the reader's encoding. UTF-8 is borrowed from the input; UTF-16 is decoded into
    /// a new `String`.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if fewer than `n` bytes are left, if `n` is odd in UTF-16, or if
    /// the bytes are not valid in the encoding (a lone surrogate, a bad UTF-8 sequence).
    /// Nothing is consumed on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{DataReader, UnicodeEncoding};
    ///
    /// let mut r = DataReader::new(&[0x3c, 0xd8, 0x0d, 0xdf]).with_unicode_encoding(UnicodeEncoding::Utf16Le);
    /// assert_eq!(r.read_string(4)?, "\u{1f30d}");
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn read_string(&mut self, n: usize) -> Result<Cow<'a, str>> {
        const OP: &str = "read string";
        let bytes = self.peek(n, OP)?;
        let s = match self.encoding {
            UnicodeEncoding::Utf8 => {
                Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| invalid(OP, "valid UTF-8"))?)
            }
            UnicodeEncoding::Utf16Le => Cow::Owned(decode_utf16(bytes, u16::from_le_bytes)?),
            UnicodeEncoding::Utf16Be => Cow::Owned(decode_utf16(bytes, u16::from_be_bytes)?),
        };
        self.pos += n;
        Ok(s)
    }

    /// Reads a GUID: `Data1`, `Data2`, `Data3` in the reader's byte order, then 8 bytes.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if fewer than 16 bytes are left.
    pub fn read_guid(&mut self) -> Result<Guid> {
        let b: [u8; 16] = self.take_array("read guid")?;
        let (d1, d2, d3) = ([b[0], b[1], b[2], b[3]], [b[4], b[5]], [b[6], b[7]]);
        let data4 = [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]];
        Ok(match self.byte_order {
            ByteOrder::BigEndian => Guid::new(
                u32::from_be_bytes(d1),
                u16::from_be_bytes(d2),
                u16::from_be_bytes(d3),
                data4,
            ),
            ByteOrder::LittleEndian => Guid::new(
                u32::from_le_bytes(d1),
                u16::from_le_bytes(d2),
                u16::from_le_bytes(d3),
                data4,
            ),
        })
    }

    /// Reads a Windows `DateTime`: an `i64` of 100-ns ticks since 1601-01-01 UTC.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if fewer than 8 bytes are left.
    pub fn read_date_time(&mut self) -> Result<DateTime> {
        self.read_i64().map(DateTime::from_ticks)
    }

    /// Reads a Windows `TimeSpan`: an `i64` of 100-ns ticks.
    ///
    /// # Errors
    ///
    /// `ProtocolError` if fewer than 8 bytes are left.
    pub fn read_time_span(&mut self) -> Result<TimeSpan> {
        self.read_i64().map(TimeSpan::from_ticks)
    }

    fn peek(&self, n: usize, op: &'static str) -> Result<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => Ok(&self.buf[self.pos..end]),
            _ => Err(self.short(op, n)),
        }
    }

    fn take(&mut self, n: usize, op: &'static str) -> Result<&'a [u8]> {
        let bytes = self.peek(n, op)?;
        self.pos += n;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self, op: &'static str) -> Result<[u8; N]> {
        let bytes = self.buf.get(self.pos..).and_then(|rest| rest.get(..N));
        match bytes.and_then(|b| <[u8; N]>::try_from(b).ok()) {
            Some(bytes) => {
                self.pos += N;
                Ok(bytes)
            }
            None => Err(self.short(op, N)),
        }
    }

    #[cold]
    fn short(&self, op: &'static str, n: usize) -> Error {
        Error::new(SocketErrorStatus::ProtocolError, op)
            .with_detail(format!("{n} bytes, {} left", self.unconsumed_len()))
    }
}

#[cold]
fn invalid(op: &'static str, expected: &'static str) -> Error {
    Error::new(SocketErrorStatus::ProtocolError, op).with_detail(expected)
}

fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String> {
    const OP: &str = "read string";
    if bytes.len() % 2 != 0 {
        return Err(invalid(OP, "an even number of bytes for UTF-16"));
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    let mut s = String::with_capacity(bytes.len());
    for c in char::decode_utf16(units) {
        s.push(c.map_err(|_| invalid(OP, "valid UTF-16 (no lone surrogate)"))?);
    }
    Ok(s)
}

/// Writes typed values into an owned byte buffer.
///
/// The counterpart of [`DataReader`] and of Windows' `DataWriter`: numbers in the
/// writer's [`ByteOrder`], strings in its [`UnicodeEncoding`]. Writing appends to the
/// buffer and cannot fail; hand the bytes to a socket with [`detach`](Self::detach)
/// (the writer stays usable) or [`into_inner`](Self::into_inner).
///
/// # Examples
///
/// ```
/// use sockloop::{DataReader, DataWriter};
///
/// let mut w = DataWriter::new();
/// let text = "héllo";
/// w.write_u32(w.measure_string(text) as u32);
/// assert_eq!(w.write_string(text), 6);
/// assert_eq!(w.unstored_len(), 10);
/// let bytes = w.detach();
///
/// let mut r = DataReader::new(&bytes);
/// let n = r.read_u32()? as usize;
/// assert_eq!(r.read_string(n)?, "héllo");
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DataWriter {
    buf: Vec<u8>,
    byte_order: ByteOrder,
    encoding: UnicodeEncoding,
}

macro_rules! write_numbers {
    ($($(#[$doc:meta])* $name:ident($ty:ty);)*) => {$(
        $(#[$doc])*
        pub fn $name(&mut self, value: $ty) {
            match self.byte_order {
                ByteOrder::BigEndian => self.buf.extend_from_slice(&value.to_be_bytes()),
                ByteOrder::LittleEndian => self.buf.extend_from_slice(&value.to_le_bytes()),
            }
        }
    )*};
}

impl DataWriter {
    /// An empty writer, big endian, UTF-8.
    pub fn new() -> DataWriter {
        DataWriter::default()
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> DataWriter {
        DataWriter::from_vec(Vec::with_capacity(capacity))
    }

    /// A writer that appends to `buf`, keeping its contents and its allocation (clear
    /// it first to reuse only the allocation).
    pub fn from_vec(buf: Vec<u8>) -> DataWriter {
        DataWriter {
            buf,
            ..DataWriter::default()
        }
    }

    /// The same writer with another byte order.
    #[must_use]
    pub fn with_byte_order(mut self, order: ByteOrder) -> Self {
        self.byte_order = order;
        self
    }

    /// The same writer with another string encoding.
    #[must_use]
    pub fn with_unicode_encoding(mut self, encoding: UnicodeEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The byte order of the writes that follow.
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }

    /// Sets the byte order of the writes that follow.
    pub fn set_byte_order(&mut self, order: ByteOrder) {
        self.byte_order = order;
    }

    /// The encoding of the strings written next.
    pub fn unicode_encoding(&self) -> UnicodeEncoding {
        self.encoding
    }

    /// Sets the encoding of the strings written next.
    pub fn set_unicode_encoding(&mut self, encoding: UnicodeEncoding) {
        self.encoding = encoding;
    }

    /// How many bytes are buffered (Windows' `UnstoredBufferLength`).
    pub fn unstored_len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes buffered so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes buffered so far, leaving the writer empty and usable, with its
    /// byte order and encoding.
    pub fn detach(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Forgets the bytes buffered, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    write_numbers! {
        /// Writes an `u16`.
        write_u16(u16);
        /// Writes an `i16`.
        write_i16(i16);
        /// Writes an `u32`.
        write_u32(u32);
        /// Writes an `i32`.
        write_i32(i32);
        /// Writes an `u64`.
        write_u64(u64);
        /// Writes an `i64`.
        write_i64(i64);
        /// Writes an IEEE 754 `f32`, bit for bit.
        write_f32(f32);
        /// Writes an IEEE 754 `f64`, bit for bit.
        write_f64(f64);
    }

    /// Writes one byte.
    pub fn write_u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    /// Writes one byte from an `i8`.
    pub fn write_i8(&mut self, value: i8) {
        self.buf.extend_from_slice(&value.to_ne_bytes());
    }

    /// Writes a boolean as one byte, 0 or 1.
    pub fn write_bool(&mut self, value: bool) {
        self.buf.push(u8::from(value));
    }

    /// Writes bytes as they are.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// How many bytes [`write_string`](Self::write_string) would write for `s` in the
    /// writer's encoding (Windows' `MeasureString`). No terminator, no byte order mark.
    pub fn measure_string(&self, s: &str) -> usize {
        match self.encoding {
            UnicodeEncoding::Utf8 => s.len(),
            UnicodeEncoding::Utf16Le | UnicodeEncoding::Utf16Be => s.encode_utf16().count() * 2,
        }
    }

    /// Writes `s` in the writer's encoding and returns how many bytes that took.
    pub fn write_string(&mut self, s: &str) -> usize {
        let before = self.buf.len();
        match self.encoding {
            UnicodeEncoding::Utf8 => self.buf.extend_from_slice(s.as_bytes()),
            UnicodeEncoding::Utf16Le => {
                self.buf.reserve(s.len() * 2);
                s.encode_utf16()
                    .for_each(|u| self.buf.extend_from_slice(&u.to_le_bytes()));
            }
            UnicodeEncoding::Utf16Be => {
                self.buf.reserve(s.len() * 2);
                s.encode_utf16()
                    .for_each(|u| self.buf.extend_from_slice(&u.to_be_bytes()));
            }
        }
        self.buf.len() - before
    }

    /// Writes a GUID: `Data1`, `Data2`, `Data3` in the writer's byte order, then 8 bytes.
    pub fn write_guid(&mut self, guid: Guid) {
        self.write_u32(guid.data1);
        self.write_u16(guid.data2);
        self.write_u16(guid.data3);
        self.buf.extend_from_slice(&guid.data4);
    }

    /// Writes a Windows `DateTime`: its ticks as an `i64`.
    pub fn write_date_time(&mut self, value: DateTime) {
        self.write_i64(value.ticks());
    }

    /// Writes a Windows `TimeSpan`: its ticks as an `i64`.
    pub fn write_time_span(&mut self, value: TimeSpan) {
        self.write_i64(value.ticks());
    }
}
