//! [`LengthPrefixed`]: frames made of a length field then the payload.

use super::data::ByteOrder;
use super::{eof_error, Decoded, Decoder, Encoder};
use crate::error::{Error, Result, SocketErrorStatus};

/// The width of a length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LengthField {
    /// One byte.
    U8,
    /// Two bytes.
    U16,
    /// Four bytes (the default, as `DataWriter.WriteUInt32` sends it).
    #[default]
    U32,
    /// Eight bytes.
    U64,
}

impl LengthField {
    /// Its width in bytes: 1, 2, 4 or 8.
    pub const fn width(self) -> usize {
        match self {
            LengthField::U8 => 1,
            LengthField::U16 => 2,
            LengthField::U32 => 4,
            LengthField::U64 => 8,
        }
    }

    /// The largest value it can carry.
    pub const fn max_value(self) -> u64 {
        match self {
            LengthField::U8 => u8::MAX as u64,
            LengthField::U16 => u16::MAX as u64,
            LengthField::U32 => u32::MAX as u64,
            LengthField::U64 => u64::MAX,
        }
    }
}

/// Where the decoder is within a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a length field.
    Head,
    /// The length field was consumed; waiting for this many payload bytes.
    Data(usize),
}

/// A codec for frames made of a length field, then that many payload bytes.
///
/// Configurable: the field's width ([`LengthField`]) and byte order, whether the
/// length counts the field itself, and a maximum payload length (default 8 MiB),
/// checked as soon as a header is read, before the caller reserves anything for the
/// frame. Arithmetic on lengths is overflow-checked. The default configuration is a
/// 4-byte big-endian length excluding the header: `DataWriter.WriteUInt32(len)` then
/// the payload.
///
/// Decoding keeps an explicit state: once a header is parsed it is consumed
/// (`NeedMore { consumed: width }`) and the decoder waits for the payload, whose size
/// [`size_hint`](Decoder::size_hint) then tells. Frames are returned as ranges into the
/// caller's buffer: nothing is allocated.
///
/// # Examples
///
/// ```
/// use sockloop::{ByteOrder, Decoded, Decoder, Encoder, LengthField, LengthPrefixed};
///
/// let mut codec = LengthPrefixed::new()
///     .with_length_field(LengthField::U16)
///     .with_byte_order(ByteOrder::LittleEndian)
///     .with_length_including_header(true)
///     .with_max_frame_length(1024);
/// let mut wire = Vec::new();
/// codec.encode(b"abc", &mut wire)?;
/// assert_eq!(wire, [5, 0, b'a', b'b', b'c']);
///
/// // A frame arriving in two pieces: the header is consumed first.
/// assert_eq!(codec.decode(&wire[..3])?, Decoded::NeedMore { consumed: 2 });
/// assert_eq!(codec.size_hint(), 3);
/// assert_eq!(codec.decode(&wire[2..])?, Decoded::Frame { frame: 0..3, consumed: 3 });
///
/// // Over the maximum: an error as soon as the header is seen.
/// let err = codec.decode(&[0xff, 0xff]).unwrap_err();
/// assert_eq!(err.status(), sockloop::SocketErrorStatus::MessageTooLong);
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LengthPrefixed {
    field: LengthField,
    byte_order: ByteOrder,
    includes_header: bool,
    max_frame_length: usize,
    state: State,
}

impl Default for LengthPrefixed {
    fn default() -> Self {
        LengthPrefixed::new()
    }
}

const DECODE: &str = "decode length-prefixed frame";
const ENCODE: &str = "encode length-prefixed frame";

impl LengthPrefixed {
    /// The default maximum payload length: 8 MiB.
    pub const DEFAULT_MAX_FRAME_LENGTH: usize = 8 * 1024 * 1024;

    /// A codec with a 4-byte big-endian length that excludes the header, 8 MiB max.
    pub const fn new() -> LengthPrefixed {
        LengthPrefixed {
            field: LengthField::U32,
            byte_order: ByteOrder::BigEndian,
            includes_header: false,
            max_frame_length: Self::DEFAULT_MAX_FRAME_LENGTH,
            state: State::Head,
        }
    }

    /// Sets the width of the length field.
    #[must_use]
    pub const fn with_length_field(mut self, field: LengthField) -> Self {
        self.field = field;
        self
    }

    /// Sets the byte order of the length field.
    #[must_use]
    pub const fn with_byte_order(mut self, order: ByteOrder) -> Self {
        self.byte_order = order;
        self
    }

    /// Sets whether the length counts the length field itself (default: no).
    #[must_use]
    pub const fn with_length_including_header(mut self, includes: bool) -> Self {
        self.includes_header = includes;
        self
    }

    /// Sets the maximum payload length, header excluded (default 8 MiB).
    #[must_use]
    pub const fn with_max_frame_length(mut self, max: usize) -> Self {
        self.max_frame_length = max;
        self
    }

    /// The width of the length field.
    pub const fn length_field(&self) -> LengthField {
        self.field
    }

    /// The byte order of the length field.
    pub const fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }

    /// Whether the length counts the length field itself.
    pub const fn length_includes_header(&self) -> bool {
        self.includes_header
    }

    /// The maximum payload length.
    pub const fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// Whether a header has been consumed and its payload is still awaited.
    pub const fn is_mid_frame(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    /// The payload length announced by `header` (exactly `width` bytes).
    #[inline]
    fn parse_header(&self, header: &[u8]) -> Result<usize> {
        let width = header.len();
        let value = read_value(self.field, self.byte_order, header);
        let payload = if self.includes_header {
            match value.checked_sub(width as u64) {
                Some(p) => p,
                None => return Err(header_too_small(width, value)),
            }
        } else {
            value
        };
        match usize::try_from(payload) {
            Ok(p) if p <= self.max_frame_length && p.checked_add(width).is_some() => Ok(p),
            _ => Err(too_long(DECODE, payload, self.max_frame_length)),
        }
    }

    /// The header value for a payload of `len` bytes, checked against every limit.
    fn header_value(&self, len: usize) -> Result<u64> {
        let width = self.field.width();
        let value = if self.includes_header {
            len.checked_add(width)
        } else {
            Some(len)
        };
        match value.and_then(|v| u64::try_from(v).ok()) {
            Some(v) if len <= self.max_frame_length && v <= self.field.max_value() => Ok(v),
            _ => Err(Error::new(SocketErrorStatus::MessageTooLong, ENCODE).with_detail(format!(
                "a payload of at most {} bytes that a {width}-byte length field can carry, got {len}",
                self.max_frame_length
            ))),
        }
    }
}

/// The value of a length field; `header` holds exactly `field.width()` bytes.
#[inline]
fn read_value(field: LengthField, order: ByteOrder, header: &[u8]) -> u64 {
    fn array<const N: usize>(header: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&header[..N]);
        a
    }
    use ByteOrder::{BigEndian as Be, LittleEndian as Le};
    match (field, order) {
        (LengthField::U8, _) => u64::from(header[0]),
        (LengthField::U16, Be) => u64::from(u16::from_be_bytes(array(header))),
        (LengthField::U16, Le) => u64::from(u16::from_le_bytes(array(header))),
        (LengthField::U32, Be) => u64::from(u32::from_be_bytes(array(header))),
        (LengthField::U32, Le) => u64::from(u32::from_le_bytes(array(header))),
        (LengthField::U64, Be) => u64::from_be_bytes(array(header)),
        (LengthField::U64, Le) => u64::from_le_bytes(array(header)),
    }
}

#[cold]
fn too_long(op: &'static str, len: u64, max: usize) -> Error {
    Error::new(SocketErrorStatus::MessageTooLong, op).with_detail(format!(
        "a payload of at most {max} bytes, got a length of {len}"
    ))
}

#[cold]
fn header_too_small(width: usize, value: u64) -> Error {
    Error::new(SocketErrorStatus::ProtocolError, DECODE).with_detail(format!(
        "a length counting its own {width}-byte header (at least {width}), got {value}"
    ))
}

impl Decoder for LengthPrefixed {
    #[inline]
    fn decode(&mut self, src: &[u8]) -> Result<Decoded> {
        let (header, payload) = match self.state {
            State::Data(n) => (0, n),
            State::Head => {
                let width = self.field.width();
                match src.get(..width) {
                    Some(h) => (width, self.parse_header(h)?),
                    None => return Ok(Decoded::NeedMore { consumed: 0 }),
                }
            }
        };
        // parse_header checked that header + payload does not overflow.
        let end = header + payload;
        if src.len() >= end {
            self.state = State::Head;
            Ok(Decoded::Frame {
                frame: header..end,
                consumed: end,
            })
        } else {
            self.state = State::Data(payload);
            Ok(Decoded::NeedMore { consumed: header })
        }
    }

    fn decode_eof(&mut self, src: &[u8]) -> Result<Decoded> {
        let decoded = self.decode(src)?;
        let Decoded::NeedMore { consumed } = decoded else {
            return Ok(decoded);
        };
        match self.state {
            State::Data(n) => Err(Error::new(SocketErrorStatus::ProtocolError, DECODE)
                .with_detail(format!(
                    "EOF in the middle of a frame: expected {n} payload bytes, got {}",
                    src.len() - consumed
                ))),
            State::Head if consumed < src.len() => Err(eof_error(DECODE, "a whole length field")),
            State::Head => Ok(decoded),
        }
    }

    fn size_hint(&self) -> usize {
        match self.state {
            State::Head => self.field.width(),
            State::Data(n) => n,
        }
    }
}

impl Encoder for LengthPrefixed {
    #[inline]
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<()> {
        let value = self.header_value(frame.len())?;
        let width = self.field.width();
        dst.reserve(width + frame.len());
        match self.byte_order {
            ByteOrder::BigEndian => dst.extend_from_slice(&value.to_be_bytes()[8 - width..]),
            ByteOrder::LittleEndian => dst.extend_from_slice(&value.to_le_bytes()[..width]),
        }
        dst.extend_from_slice(frame);
        Ok(())
    }

    fn encoded_len(&self, frame_len: usize) -> Option<usize> {
        self.header_value(frame_len).ok()?;
        frame_len.checked_add(self.field.width())
    }
}
