//! Framing: typed binary reads and writes, and codecs that cut a byte stream into messages.
//!
//! This module is pure code: no sockets, no I/O, no `unsafe`. It is the layer that
//! fuzzers drive directly, so every entry point is bounded (a maximum frame or line
//! length, checked before anything is reserved), never panics on bad input, and reports
//! malformed input as an [`Error`] with a [`SocketErrorStatus`]:
//! `ProtocolError` for malformed input, `MessageTooLong` for an over-long frame or line.
//!
//! - [`DataReader`] and [`DataWriter`]: the `Windows.Storage.Streams` pair, over byte
//!   buffers: numbers in either byte order, strings in UTF-8 or UTF-16, GUIDs, Windows
//!   date-times and time spans.
//! - [`Decoder`] and [`Encoder`]: the codec traits. A decoder returns each frame as a
//!   range *into the caller's buffer* ([`Decoded`]), so decoding allocates nothing per
//!   frame; an encoder appends header, payload and trailer to the caller's `Vec<u8>`
//!   (a socket's write queue), so encoding copies the payload once.
//! - [`LengthPrefixed`]: a length field of 1, 2, 4 or 8 bytes, then the payload.
//! - [`Lines`]: newline-terminated lines.

use std::ops::Range;

use crate::error::{Error, Result, SocketErrorStatus};

mod data;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod length;
mod lines;
mod values;

pub use data::{ByteOrder, DataReader, DataWriter, UnicodeEncoding};
pub use length::{LengthField, LengthPrefixed};
pub use lines::{LineEnding, Lines};
pub use values::{DateTime, Guid, TimeSpan};

/// What one call to [`Decoder::decode`] found.
///
/// Small and `Clone`; ranges and counts refer to the `src` slice of that call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decoded {
    /// A whole frame: its payload is `src[frame]`. Drop the first `consumed` bytes
    /// (`frame.end <= consumed`, `consumed > 0`) and call again: more frames may follow.
    Frame {
        /// Where the payload lies in `src`.
        frame: Range<usize>,
        /// How many bytes of `src` the frame took, header and trailer included.
        consumed: usize,
    },
    /// No whole frame yet. Drop the first `consumed` bytes (a parsed header, discarded
    /// input; often 0) and call again once more bytes have arrived.
    NeedMore {
        /// How many bytes of `src` were used up without completing a frame.
        consumed: usize,
    },
}

impl Decoded {
    /// How many bytes of the input this result consumed.
    ///
    /// ```
    /// use sockloop::Decoded;
    /// assert_eq!(Decoded::Frame { frame: 4..9, consumed: 9 }.consumed(), 9);
    /// assert_eq!(Decoded::NeedMore { consumed: 0 }.consumed(), 0);
    /// ```
    pub fn consumed(&self) -> usize {
        match *self {
            Decoded::Frame { consumed, .. } | Decoded::NeedMore { consumed } => consumed,
        }
    }
}

/// Cuts a byte stream into frames, borrowing each frame from the caller's buffer.
///
/// [The decoding contract](#the-decoding-contract) says how a caller drives it, and
/// [the netstring example](#writing-a-codec) shows an implementation.
///
/// # The decoding contract
///
/// The caller owns one input buffer and calls [`Decoder::decode`] with all the bytes it
/// holds that the decoder has not consumed yet:
///
/// 1. On [`Decoded::Frame`]`{ frame, consumed }` the payload is `src[frame]`; the caller
///    uses it, drops the first `consumed` bytes and calls `decode` again at once (more
///    frames may be buffered).
/// 2. On [`Decoded::NeedMore`]`{ consumed }` the caller drops the first `consumed` bytes
///    (a header already parsed, or input being discarded) and calls again only once new
///    bytes have arrived; [`Decoder::size_hint`] says how many bytes the buffer must hold
///    for the next call to make progress, so the buffer can be sized once.
/// 3. The bytes not consumed are presented again at the start of the next call's buffer,
///    followed by new bytes. A decoder may therefore remember how far it has scanned.
/// 4. At end of stream the caller calls [`Decoder::decode_eof`] the same way until it
///    returns `NeedMore`; input left in the middle of a frame is a `ProtocolError`.
/// 5. After an error the stream is unusable: close the connection.
///
/// ```
/// use sockloop::{Decoded, Decoder, Encoder, LengthPrefixed};
///
/// let mut codec = LengthPrefixed::new();
/// let mut wire = Vec::new();
/// codec.encode(b"hello", &mut wire)?;
/// codec.encode(b"world", &mut wire)?;
///
/// let mut buf = &wire[..];
/// let mut frames = Vec::new();
/// while let Decoded::Frame { frame, consumed } = codec.decode(buf)? {
///     frames.push(&buf[frame]);
///     buf = &buf[consumed..];
/// }
/// assert_eq!(frames, [&b"hello"[..], &b"world"[..]]);
/// # Ok::<(), sockloop::Error>(())
/// ```
///
/// # Writing a codec
///
/// The traits are small enough to implement for any protocol. A
/// [netstring](https://cr.yp.to/proto/netstrings.txt) codec (`5:hello,`):
///
/// ```
/// use sockloop::{Decoded, Decoder, Encoder};
/// use sockloop::{Error, SocketErrorStatus};
///
/// #[derive(Debug)]
/// struct Netstring {
///     max: usize,
/// }
///
/// fn malformed(expected: &'static str) -> Error {
///     Error::new(SocketErrorStatus::ProtocolError, "decode netstring").with_detail(expected)
/// }
///
/// impl Decoder for Netstring {
///     fn decode(&mut self, src: &[u8]) -> Result<Decoded, Error> {
///         // At most 20 digits, then ':'.
///         let head = &src[..src.len().min(21)];
///         let Some(colon) = head.iter().position(|&b| b == b':') else {
///             if head.len() == 21 || !head.iter().all(u8::is_ascii_digit) {
///                 return Err(malformed("decimal digits then ':'"));
///             }
///             return Ok(Decoded::NeedMore { consumed: 0 });
///         };
///         let digits = std::str::from_utf8(&src[..colon]).map_err(|_| malformed("digits"))?;
///         let len: usize = digits.parse().map_err(|_| malformed("a decimal length"))?;
///         if len > self.max {
///             return Err(Error::new(SocketErrorStatus::MessageTooLong, "decode netstring"));
///         }
///         let start = colon + 1;
///         let end = start + len; // len <= max: no overflow for any sane max
///         match src.get(end) {
///             None => Ok(Decoded::NeedMore { consumed: 0 }),
///             Some(b',') => Ok(Decoded::Frame { frame: start..end, consumed: end + 1 }),
///             Some(_) => Err(malformed("',' after the payload")),
///         }
///     }
/// }
///
/// impl Encoder for Netstring {
///     fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), Error> {
///         if frame.len() > self.max {
///             return Err(Error::new(SocketErrorStatus::MessageTooLong, "encode netstring"));
///         }
///         dst.extend_from_slice(frame.len().to_string().as_bytes());
///         dst.push(b':');
///         dst.extend_from_slice(frame);
///         dst.push(b',');
///         Ok(())
///     }
/// }
///
/// let mut codec = Netstring { max: 1024 };
/// let mut wire = Vec::new();
/// codec.encode(b"hello", &mut wire)?;
/// assert_eq!(wire, b"5:hello,");
/// assert_eq!(codec.decode(&wire[..4])?, Decoded::NeedMore { consumed: 0 });
/// assert_eq!(codec.decode(&wire)?, Decoded::Frame { frame: 2..7, consumed: 8 });
/// // A partial frame at end of stream is an error (the default `decode_eof`).
/// let err = codec.decode_eof(&wire[..4]).unwrap_err();
/// assert_eq!(err.status(), SocketErrorStatus::ProtocolError);
/// # Ok::<(), Error>(())
/// ```
pub trait Decoder {
    /// Looks for the next frame at the start of `src`.
    ///
    /// # Errors
    ///
    /// `ProtocolError` for malformed input, `MessageTooLong` for a frame over the
    /// decoder's limit. After an error the decoder's state is unspecified: the stream
    /// should be closed.
    fn decode(&mut self, src: &[u8]) -> Result<Decoded>;

    /// Like [`decode`](Decoder::decode), called at end of stream with what is left.
    ///
    /// The default calls `decode` and reports bytes left unconsumed as an error.
    /// Decoders that keep a state between calls (a header already consumed) override it.
    ///
    /// # Errors
    ///
    /// As `decode`, plus `ProtocolError` ("EOF in the middle of a frame") when the
    /// stream ends inside a frame.
    fn decode_eof(&mut self, src: &[u8]) -> Result<Decoded> {
        match self.decode(src)? {
            Decoded::NeedMore { consumed } if consumed < src.len() => Err(eof_error(
                "decode",
                "a whole frame before the end of the stream",
            )),
            decoded => Ok(decoded),
        }
    }

    /// How many bytes the next call's `src` must hold, at least, for `decode` to make
    /// progress. The caller may size its buffer with it; the default, 0, means unknown.
    ///
    /// Never more than the decoder's maximum frame size plus its header.
    fn size_hint(&self) -> usize {
        0
    }
}

/// Appends frames to an output buffer, header and trailer included.
pub trait Encoder {
    /// Appends `frame`, framed, to `dst`.
    ///
    /// # Errors
    ///
    /// `MessageTooLong` for a frame over the encoder's limit, `InvalidArgument` for a
    /// frame the format cannot carry (a line holding its own terminator). On error
    /// nothing is appended.
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<()>;

    /// How many bytes `encode` would append for a frame of `frame_len` bytes, or `None`
    /// if it would fail or the encoder cannot tell. The default is `None`.
    fn encoded_len(&self, frame_len: usize) -> Option<usize> {
        let _ = frame_len;
        None
    }
}

/// A [`Decoder`] that is also an [`Encoder`]: what a socket's framing is set with.
///
/// Implemented for every type that implements both, so `Box<dyn Codec>` holds any codec.
///
/// ```
/// use sockloop::{Codec, Decoded, LengthPrefixed, Lines};
///
/// let mut codecs: Vec<Box<dyn Codec>> = vec![Box::new(LengthPrefixed::new()), Box::new(Lines::new())];
/// let mut wire = Vec::new();
/// for codec in &mut codecs {
///     wire.clear();
///     codec.encode(b"ping", &mut wire)?;
///     assert!(matches!(codec.decode(&wire)?, Decoded::Frame { consumed, .. } if consumed == wire.len()));
/// }
/// # Ok::<(), sockloop::Error>(())
/// ```
pub trait Codec: Decoder + Encoder {}

impl<T: Decoder + Encoder + ?Sized> Codec for T {}

impl<D: Decoder + ?Sized> Decoder for Box<D> {
    fn decode(&mut self, src: &[u8]) -> Result<Decoded> {
        (**self).decode(src)
    }

    fn decode_eof(&mut self, src: &[u8]) -> Result<Decoded> {
        (**self).decode_eof(src)
    }

    fn size_hint(&self) -> usize {
        (**self).size_hint()
    }
}

impl<E: Encoder + ?Sized> Encoder for Box<E> {
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<()> {
        (**self).encode(frame, dst)
    }

    fn encoded_len(&self, frame_len: usize) -> Option<usize> {
        (**self).encoded_len(frame_len)
    }
}

/// The error for a stream that ends inside a frame.
pub(crate) fn eof_error(operation: &'static str, expected: &'static str) -> Error {
    Error::new(SocketErrorStatus::ProtocolError, operation)
        .with_detail(format!("EOF in the middle of a frame: expected {expected}"))
}
