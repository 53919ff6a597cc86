//! What a handler receives: a view of the bytes read, with a consume count.
//!
//! Reads land in one reactor-wide scratch buffer. The handler consumes what it can;
//! only the rest is copied into the socket's own remainder buffer, which is freed as
//! soon as it is empty again, so an idle socket owns no read buffer.

/// Bytes received on a stream socket, handed to its handler with
/// [`StreamEvent::Received`](crate::StreamEvent::Received).
///
/// The handler calls [`consume`](Input::consume) (or [`consume_all`](Input::consume_all))
/// for the bytes it has dealt with. Bytes it leaves are kept and offered again, in
/// front of the next bytes to arrive — the way a parser waits for the rest of a message.
///
/// # Examples
///
/// ```
/// # #[allow(dead_code)]
/// # fn demo(input: &mut sockloop::Input<'_>) {
/// // A line parser: take complete lines, leave a partial one for later.
/// while let Some(end) = input.bytes().iter().position(|&b| b == b'\n') {
///     let line = &input.bytes()[..end];
///     println!("{}", String::from_utf8_lossy(line));
///     input.consume(end + 1);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
    consumed: &'a mut usize,
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8], consumed: &'a mut usize) -> Input<'a> {
        *consumed = 0;
        Input { data, consumed }
    }

    /// The bytes not consumed yet.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        &self.data[*self.consumed..]
    }

    /// How many bytes are not consumed yet.
    pub fn len(&self) -> usize {
        self.data.len() - *self.consumed
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the first `n` of the remaining bytes as consumed; more than remain is
    /// clamped to what remains.
    pub fn consume(&mut self, n: usize) {
        *self.consumed += n.min(self.len());
    }

    /// Marks every byte as consumed.
    #[inline]
    pub fn consume_all(&mut self) {
        *self.consumed = self.data.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_is_clamped() {
        let mut consumed = 99;
        let mut i = Input::new(b"hello", &mut consumed);
        i.consume(2);
        assert_eq!(i.bytes(), b"llo");
        i.consume(100);
        assert!(i.is_empty());
        assert_eq!(consumed, 5);
    }
}
