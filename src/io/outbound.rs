//! The write queue of a stream socket.
//!
//! Bytes are copied into fixed-size chunks taken from the reactor's [`BufPool`]; small
//! writes share a chunk (coalescing), and the whole queue leaves in one `writev` of up
//! to [`MAX_IOV`] slices. A partial write resumes in the middle of a chunk. Chunks that
//! have been sent go back to the pool, so a drained queue owns no memory beyond the
//! (unallocated until needed) deque of extra chunks.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use super::BufPool;

/// Slices per `writev`; well under Linux's `IOV_MAX` (1024). With 16 KiB chunks one
/// call can carry 1 MiB, more than any socket buffer takes at once.
pub(crate) const MAX_IOV: usize = 64;

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything queued was written.
    All,
    /// The kernel took less than offered: wait for the socket to become writable.
    Partial,
}

#[derive(Default)]
pub(crate) struct Outbound {
    /// The chunk being sent; `off` bytes of it are already written.
    head: Vec<u8>,
    off: usize,
    /// Further chunks, in order.
    tail: VecDeque<Vec<u8>>,
    /// Bytes queued and not yet written.
    len: usize,
}

impl Outbound {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`, filling the last chunk before taking new ones from the pool.
    pub(crate) fn push(&mut self, mut data: &[u8], pool: &mut BufPool) {
        self.len += data.len();
        while !data.is_empty() {
            let last = self.last_with_room(pool);
            let n = (last.capacity() - last.len()).min(data.len());
            last.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
    }

    /// Appends bytes produced by `fill` (an encoder writing header, payload and
    /// trailer), which expects to write about `size` bytes: into the last chunk if it
    /// has the room, else into a fresh chunk, or into a buffer of its own for a frame
    /// larger than a chunk. On error nothing is appended.
    pub(crate) fn push_with<E>(
        &mut self,
        pool: &mut BufPool,
        size: usize,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let last = self.last_with_room_for(size, pool);
        let before = last.len();
        let result = fill(last);
        if result.is_err() {
            last.truncate(before);
        }
        let added = last.len() - before;
        self.len += added;
        result.map(|()| added)
    }

    fn last_with_room_for(&mut self, size: usize, pool: &mut BufPool) -> &mut Vec<u8> {
        let room = match self.tail.back() {
            Some(b) => b.capacity() - b.len(),
            None => self.head.capacity() - self.head.len(),
        };
        if room < size {
            let fresh = if size > super::CHUNK {
                Vec::with_capacity(size)
            } else {
                pool.get()
            };
            if self.head.capacity() == 0 {
                self.head = fresh;
                self.off = 0;
            } else {
                self.tail.push_back(fresh);
            }
        }
        self.tail.back_mut().unwrap_or(&mut self.head)
    }

    fn last_with_room(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.head.capacity() == 0 {
            self.head = pool.get();
            self.off = 0;
        }
        let last_full = match self.tail.back() {
            Some(b) => b.len() == b.capacity(),
            None => self.head.len() == self.head.capacity(),
        };
        if last_full {
            self.tail.push_back(pool.get());
        }
        self.tail.back_mut().unwrap_or(&mut self.head)
    }

    /// Writes as much as the kernel takes, in `writev` calls of up to [`MAX_IOV`]
    /// slices. A short write counts as "buffer full" and ends the flush without
    /// another attempt (which would only return `EAGAIN`).
    pub(crate) fn flush(&mut self, w: &mut impl Write, pool: &mut BufPool) -> io::Result<Flushed> {
        while self.len > 0 {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            iov[0] = IoSlice::new(&self.head[self.off..]);
            let mut count = 1;
            let mut offered = self.head.len() - self.off;
            for chunk in self.tail.iter().take(MAX_IOV - 1) {
                iov[count] = IoSlice::new(chunk);
                count += 1;
                offered += chunk.len();
            }
            match w.write_vectored(&iov[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(n, pool);
                    if n < offered {
                        return Ok(Flushed::Partial);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Partial),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::All)
    }

    fn advance(&mut self, mut n: usize, pool: &mut BufPool) {
        self.len -= n;
        while n > 0 {
            let left = self.head.len() - self.off;
            if n < left {
                self.off += n;
                return;
            }
            n -= left;
            self.next_head(pool);
        }
        if self.off == self.head.len() && self.tail.is_empty() {
            self.release(pool);
        }
    }

    fn next_head(&mut self, pool: &mut BufPool) {
        let done = std::mem::replace(&mut self.head, self.tail.pop_front().unwrap_or_default());
        pool.put(done);
        self.off = 0;
    }

    /// Returns every chunk to the pool; the queue is empty afterwards.
    pub(crate) fn release(&mut self, pool: &mut BufPool) {
        pool.put(std::mem::take(&mut self.head));
        for chunk in self.tail.drain(..) {
            pool.put(chunk);
        }
        self.off = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::CHUNK;

    /// A writer that takes at most `limit` bytes per call and records them.
    struct Trickle {
        limit: usize,
        got: Vec<u8>,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            assert!(bufs.len() <= MAX_IOV);
            self.calls += 1;
            if self.limit == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = (self.limit - n).min(b.len());
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
    }

    #[test]
    fn coalesces_small_writes_into_one_writev() {
        let mut pool = BufPool::new(8);
        let mut q = Outbound::default();
        let mut expect = Vec::new();
        for i in 0..1000 {
            let p = pattern(7, i);
            q.push(&p, &mut pool);
            expect.extend_from_slice(&p);
        }
        assert_eq!(q.len(), 7000);
        let mut w = Trickle {
            limit: usize::MAX / 2,
            got: Vec::new(),
            calls: 0,
        };
        assert_eq!(q.flush(&mut w, &mut pool).unwrap(), Flushed::All);
        assert_eq!(w.calls, 1);
        assert_eq!(w.got, expect);
        assert!(q.is_empty());
        assert_eq!(q.head.capacity(), 0, "a drained queue holds no chunk");
    }

    #[test]
    fn resumes_mid_chunk_after_partial_writes() {
        for limit in [1, 5, 100, CHUNK - 1, CHUNK + 3, 3 * CHUNK] {
            let mut pool = BufPool::new(8);
            let mut q = Outbound::default();
            let data = pattern(5 * CHUNK + 123, limit);
            for piece in data.chunks(777) {
                q.push(piece, &mut pool);
            }
            let mut w = Trickle {
                limit,
                got: Vec::new(),
                calls: 0,
            };
            while q.flush(&mut w, &mut pool).unwrap() == Flushed::Partial {}
            assert_eq!(w.got, data, "limit {limit}");
        }
    }

    #[test]
    fn would_block_keeps_everything() {
        let mut pool = BufPool::new(8);
        let mut q = Outbound::default();
        q.push(b"hello", &mut pool);
        let mut w = Trickle {
            limit: 0,
            got: Vec::new(),
            calls: 0,
        };
        assert_eq!(q.flush(&mut w, &mut pool).unwrap(), Flushed::Partial);
        assert_eq!(q.len(), 5);
        w.limit = 100;
        assert_eq!(q.flush(&mut w, &mut pool).unwrap(), Flushed::All);
        assert_eq!(w.got, b"hello");
    }

    #[test]
    fn more_chunks_than_iovecs() {
        let mut pool = BufPool::new(8);
        let mut q = Outbound::default();
        let data = pattern(CHUNK * (MAX_IOV + 10), 1);
        q.push(&data, &mut pool);
        let mut w = Trickle {
            limit: usize::MAX / 2,
            got: Vec::new(),
            calls: 0,
        };
        assert_eq!(q.flush(&mut w, &mut pool).unwrap(), Flushed::All);
        assert_eq!(w.calls, 2);
        assert_eq!(w.got, data);
    }

    #[test]
    fn push_with_rolls_back_on_error() {
        let mut pool = BufPool::new(8);
        let mut q = Outbound::default();
        q.push(b"ab", &mut pool);
        let r: Result<usize, ()> = q.push_with(&mut pool, 4, |v| {
            v.extend_from_slice(b"junk");
            Err(())
        });
        assert!(r.is_err());
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.push_with::<()>(&mut pool, 2, |v| {
                v.extend_from_slice(b"cd");
                Ok(())
            }),
            Ok(2)
        );
        let mut w = Trickle {
            limit: 100,
            got: Vec::new(),
            calls: 0,
        };
        q.flush(&mut w, &mut pool).unwrap();
        assert_eq!(w.got, b"abcd");
    }
}
