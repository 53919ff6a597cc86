//! [`Lines`]: newline-terminated lines.

use super::{eof_error, Decoded, Decoder, Encoder};
use crate::error::{Error, Result, SocketErrorStatus};

/// What ends a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LineEnding {
    /// `\n` only; a `\r` before it belongs to the line.
    Lf,
    /// `\r\n` only; a `\n` without `\r` before it belongs to the line.
    CrLf,
    /// `\n`, with a `\r` before it stripped (the default). Encodes `\n`.
    #[default]
    LfOrCrLf,
}

impl LineEnding {
    /// The longest terminator.
    const fn max_len(self) -> usize {
        match self {
            LineEnding::Lf => 1,
            LineEnding::CrLf | LineEnding::LfOrCrLf => 2,
        }
    }
}

/// A codec for newline-terminated lines.
///
/// Each frame is a line without its terminator, as bytes (check UTF-8 with
/// `std::str::from_utf8` if the protocol is text). A line longer than the maximum
/// (default 64 KiB, terminator excluded) is an error with status `MessageTooLong`, or,
/// if [`with_discard_overlong`](Self::with_discard_overlong) is set, is skipped up to
/// the next terminator, counted in [`discarded_lines`](Self::discarded_lines), and
/// decoding resumes with the line after it.
///
/// Bounded and linear: the decoder remembers how far it has scanned, so each byte is
/// looked at once however the input is chunked, and it never leaves more than
/// `max_length + 2` bytes unconsumed (discarded input is consumed as it arrives).
///
/// # Examples
///
/// ```
/// use sockloop::{Decoded, Decoder, Encoder, Lines};
///
/// let mut lines = Lines::new().with_max_length(5).with_discard_overlong(true);
/// let input = b"hi\r\nway too long\nok\n";
/// assert_eq!(lines.decode(input)?, Decoded::Frame { frame: 0..2, consumed: 4 });
/// // The over-long line is skipped and the next one returned.
/// assert_eq!(lines.decode(&input[4..])?, Decoded::Frame { frame: 13..15, consumed: 16 });
/// assert_eq!(lines.discarded_lines(), 1);
///
/// let mut wire = Vec::new();
/// lines.encode(b"bye", &mut wire)?;
/// assert_eq!(wire, b"bye\n");
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lines {
    ending: LineEnding,
    max_length: usize,
    discard_overlong: bool,
    unterminated_last_line: bool,
    /// Bytes at the start of the next input already searched without finding a line end.
    scanned: usize,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    /// While discarding with `CrLf`: the last byte consumed was `\r`.
    pending_cr: bool,
    discarded: u64,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new()
    }
}

const DECODE: &str = "decode line";
const ENCODE: &str = "encode line";

enum Scan {
    /// A line: content `..end`, next line at `next`.
    Line { end: usize, next: usize },
    /// No terminator yet.
    Partial,
    /// Over the maximum; the next line starts at `next` if the terminator was seen.
    TooLong { next: Option<usize> },
}

impl Lines {
    /// The default maximum line length: 64 KiB.
    pub const DEFAULT_MAX_LENGTH: usize = 64 * 1024;

    /// A codec for lines ended by `\n` or `\r\n`, 64 KiB max, over-long lines an error.
    pub const fn new() -> Lines {
        Lines {
            ending: LineEnding::LfOrCrLf,
            max_length: Self::DEFAULT_MAX_LENGTH,
            discard_overlong: false,
            unterminated_last_line: false,
            scanned: 0,
            discarding: false,
            pending_cr: false,
            discarded: 0,
        }
    }

    /// Sets what ends a line.
    #[must_use]
    pub const fn with_ending(mut self, ending: LineEnding) -> Self {
        self.ending = ending;
        self
    }

    /// Sets the maximum line length, terminator excluded.
    #[must_use]
    pub const fn with_max_length(mut self, max: usize) -> Self {
        self.max_length = max;
        self
    }

    /// Sets whether an over-long line is skipped (`true`) or an error (`false`, default).
    #[must_use]
    pub const fn with_discard_overlong(mut self, discard: bool) -> Self {
        self.discard_overlong = discard;
        self
    }

    /// Sets whether bytes after the last terminator at end of stream are a last line
    /// (`true`) or an error (`false`, default).
    #[must_use]
    pub const fn with_unterminated_last_line(mut self, accept: bool) -> Self {
        self.unterminated_last_line = accept;
        self
    }

    /// What ends a line.
    pub const fn ending(&self) -> LineEnding {
        self.ending
    }

    /// The maximum line length, terminator excluded.
    pub const fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether over-long lines are skipped rather than an error.
    pub const fn discards_overlong(&self) -> bool {
        self.discard_overlong
    }

    /// How many over-long lines were skipped so far.
    pub const fn discarded_lines(&self) -> u64 {
        self.discarded
    }

    /// Looks for a line end in `s`, resuming where the last call stopped.
    fn scan(&mut self, s: &[u8]) -> Scan {
        let limit = self.max_length.saturating_add(self.ending.max_len());
        let window = &s[..s.len().min(limit)];
        let mut from = self.scanned.min(window.len());
        while let Some(offset) = find_newline(&window[from..]) {
            let i = from + offset;
            let cr = i > 0 && window[i - 1] == b'\r';
            let end = match (self.ending, cr) {
                (LineEnding::Lf, _) | (LineEnding::LfOrCrLf, false) => i,
                (_, true) => i - 1,
                (LineEnding::CrLf, false) => {
                    from = i + 1;
                    continue;
                }
            };
            self.scanned = 0;
            return match end > self.max_length {
                true => Scan::TooLong { next: Some(i + 1) },
                false => Scan::Line { end, next: i + 1 },
            };
        }
        if window.len() == limit {
            self.scanned = 0;
            Scan::TooLong { next: None }
        } else {
            self.scanned = window.len();
            Scan::Partial
        }
    }

    /// While discarding: the index after the terminator in `s`, if there is one.
    fn skip_line(&mut self, s: &[u8]) -> Option<usize> {
        let mut from = 0;
        while let Some(offset) = find_newline(&s[from..]) {
            let i = from + offset;
            let cr = if i == 0 {
                self.pending_cr
            } else {
                s[i - 1] == b'\r'
            };
            if self.ending != LineEnding::CrLf || cr {
                self.pending_cr = false;
                return Some(i + 1);
            }
            from = i + 1;
        }
        if let Some(&last) = s.last() {
            self.pending_cr = last == b'\r';
        }
        None
    }

    #[cold]
    fn too_long(&self, op: &'static str) -> Error {
        Error::new(SocketErrorStatus::MessageTooLong, op).with_detail(format!(
            "a line of at most {} bytes before its terminator",
            self.max_length
        ))
    }
}

/// The index of the first `\n` in `s`.
///
/// Stretches without one are skipped with `<[u8]>::contains`, which the standard
/// library implements a word at a time; only the block holding the newline is searched
/// byte by byte.
#[inline]
fn find_newline(s: &[u8]) -> Option<usize> {
    const BLOCK: usize = 256;
    let mut start = 0;
    for block in s.chunks(BLOCK) {
        if block.contains(&b'\n') {
            return block.iter().position(|&b| b == b'\n').map(|i| start + i);
        }
        start += block.len();
    }
    None
}

impl Decoder for Lines {
    fn decode(&mut self, src: &[u8]) -> Result<Decoded> {
        // Bytes of `src` used up by discarding during this call.
        let mut base = 0;
        loop {
            if self.discarding {
                let Some(next) = self.skip_line(&src[base..]) else {
                    return Ok(Decoded::NeedMore {
                        consumed: src.len(),
                    });
                };
                base += next;
                self.discarding = false;
                self.discarded += 1;
            }
            match self.scan(&src[base..]) {
                Scan::Line { end, next } => {
                    return Ok(Decoded::Frame {
                        frame: base..base + end,
                        consumed: base + next,
                    })
                }
                Scan::Partial => return Ok(Decoded::NeedMore { consumed: base }),
                Scan::TooLong { .. } if !self.discard_overlong => return Err(self.too_long(DECODE)),
                Scan::TooLong { next: Some(next) } => {
                    base += next;
                    self.discarded += 1;
                }
                Scan::TooLong { next: None } => {
                    // The whole window was searched: skip it and look for the terminator.
                    let limit = self.max_length.saturating_add(self.ending.max_len());
                    self.pending_cr = src[base + limit - 1] == b'\r';
                    base += limit;
                    self.discarding = true;
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &[u8]) -> Result<Decoded> {
        let decoded = self.decode(src)?;
        let Decoded::NeedMore { consumed } = decoded else {
            return Ok(decoded);
        };
        if self.discarding {
            // The stream ended the line being skipped.
            self.discarding = false;
            self.pending_cr = false;
            self.discarded += 1;
            return Ok(decoded);
        }
        let rest = src.len() - consumed;
        if rest == 0 {
            return Ok(decoded);
        }
        if !self.unterminated_last_line {
            return Err(eof_error(DECODE, "a line terminator"));
        }
        self.scanned = 0;
        if rest <= self.max_length {
            Ok(Decoded::Frame {
                frame: consumed..src.len(),
                consumed: src.len(),
            })
        } else if self.discard_overlong {
            self.discarded += 1;
            Ok(Decoded::NeedMore {
                consumed: src.len(),
            })
        } else {
            Err(self.too_long(DECODE))
        }
    }
}

impl Encoder for Lines {
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<()> {
        if frame.len() > self.max_length {
            return Err(self.too_long(ENCODE));
        }
        let terminator: &[u8] = match self.ending {
            LineEnding::Lf | LineEnding::LfOrCrLf => b"\n",
            LineEnding::CrLf => b"\r\n",
        };
        let carries_terminator = match self.ending {
            LineEnding::Lf => find_newline(frame).is_some(),
            LineEnding::LfOrCrLf => find_newline(frame).is_some() || frame.last() == Some(&b'\r'),
            LineEnding::CrLf => frame.windows(2).any(|w| w == b"\r\n"),
        };
        if carries_terminator {
            let expected = match self.ending {
                LineEnding::Lf => "a line without '\\n'",
                LineEnding::CrLf => "a line without \"\\r\\n\"",
                LineEnding::LfOrCrLf => "a line without '\\n' that does not end with '\\r'",
            };
            return Err(
                Error::new(SocketErrorStatus::InvalidArgument, ENCODE).with_detail(expected)
            );
        }
        dst.reserve(frame.len() + terminator.len());
        dst.extend_from_slice(frame);
        dst.extend_from_slice(terminator);
        Ok(())
    }

    fn encoded_len(&self, frame_len: usize) -> Option<usize> {
        let terminator = match self.ending {
            LineEnding::CrLf => 2,
            _ => 1,
        };
        (frame_len <= self.max_length).then_some(frame_len + terminator)
    }
}
