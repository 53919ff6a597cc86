//! The staging buffer of the socket being served: where its handler's writes go while
//! nothing else is queued on it.
//!
//! A handler that answers what it was given (an echo, a request/response protocol)
//! writes a few bytes into an empty queue, and the queue is sent in full as the handler
//! returns. Staged here rather than in a write-queue chunk, such a write is one copy:
//! no slot lookup, no chunk taken from and given back to the pool. Whatever the
//! handler does to the socket besides writing (and any write that does not fit)
//! first moves the staged bytes to the socket's own queue ([`Reactor::unstage`]), so
//! the order of bytes and every state check stay those of the queue.
//!
//! [`Reactor::unstage`]: crate::reactor::Reactor

use crate::reactor::Key;

/// Bytes written by the handler of the socket being served (`key`), not queued yet.
#[derive(Default)]
pub(crate) struct Stage {
    /// The socket whose handler runs and whose writes are staged; `None` outside such a
    /// call, and once the staged bytes moved to the socket's queue.
    pub(crate) key: Option<Key>,
    /// The staged bytes; its capacity is at least `limit` once a socket was staged.
    pub(crate) buf: Vec<u8>,
    /// At most this many bytes are staged: no more than a chunk, the high watermark
    /// and the write limit, so that staged bytes pass every check a queue makes.
    pub(crate) limit: usize,
}

impl Stage {
    /// Most bytes staged at once: one write-queue chunk's payload.
    pub(crate) const MAX: usize = 16 * 1024;

    pub(crate) fn new(high_watermark: usize, write_limit: usize) -> Stage {
        Stage {
            key: None,
            buf: Vec::new(),
            limit: Stage::MAX.min(high_watermark).min(write_limit),
        }
    }

    /// Stages the writes of `key`'s handler from now on (the buffer, allocated once,
    /// on first use).
    #[inline]
    pub(crate) fn open(&mut self, key: Key) {
        if self.buf.capacity() < self.limit {
            self.buf.reserve_exact(self.limit);
        }
        self.key = Some(key);
    }

    /// Takes `data` if `key` is staged and it fits; `false` leaves it to the queue.
    #[inline(always)]
    pub(crate) fn take(&mut self, key: Key, data: &[u8]) -> bool {
        if self.key == Some(key) && data.len() <= self.limit - self.buf.len() {
            self.buf.extend_from_slice(data);
            true
        } else {
            false
        }
    }

    /// Bytes staged for `key`.
    #[inline]
    pub(crate) fn len_of(&self, key: Key) -> usize {
        if self.key == Some(key) {
            self.buf.len()
        } else {
            0
        }
    }
}
