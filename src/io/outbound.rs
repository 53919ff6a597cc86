//! The write queue of a stream socket.
//!
//! Bytes are copied into fixed-size chunks of the reactor's [`BufPool`]; small writes
//! share a chunk (coalescing), and the whole queue leaves in one call: a `send` when it
//! fits one chunk, else a `writev` of up to [`MAX_IOV`] slices. A partial write resumes
//! in the middle of a chunk. The queue itself is the index of its first chunk and a
//! byte count: the chunks are linked in the pool, so an empty queue owns no memory,
//! and sent chunks go back to the pool.

use std::io::{self, IoSlice, Write};

use super::{BufPool, CHUNK, NIL};

/// Slices per `writev`; well under Linux's `IOV_MAX` (1024). With 16 KiB chunks one
/// call can carry 1 MiB, more than any socket buffer takes at once.
pub(crate) const MAX_IOV: usize = 64;

/// The most a queue can hold; the reactor's write limit is capped well under it.
pub(crate) const MAX_QUEUED: usize = u32::MAX as usize;

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything queued was written.
    All,
    /// The kernel took less than offered: wait for the socket to become writable.
    Partial,
}

pub(crate) struct Outbound {
    /// The first chunk (its `tail` and `sent` describe the queue), or [`NIL`].
    head: u32,
    /// Bytes queued and not yet written.
    len: u32,
}

impl Default for Outbound {
    fn default() -> Outbound {
        Outbound { head: NIL, len: 0 }
    }
}

impl Outbound {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn add_len(&mut self, n: usize) {
        self.len = u32::try_from(self.len as usize + n).expect("write queue over 4 GiB");
    }

    /// The last chunk if it has room for `size` more bytes (any room if `size` is 0),
    /// else a new chunk from the pool appended to the queue.
    fn last_with_room(&mut self, size: usize, pool: &mut BufPool) -> u32 {
        if self.head != NIL {
            let tail = pool.chunk(self.head).tail;
            let buf = &pool.chunk(tail).buf;
            let room = buf.capacity() - buf.len();
            if room > 0 && room >= size {
                return tail;
            }
            let fresh = pool.take(size);
            pool.chunk_mut(tail).next = fresh;
            pool.chunk_mut(self.head).tail = fresh;
            fresh
        } else {
            self.head = pool.take(size);
            self.head
        }
    }

    /// Appends `data`, filling the last chunk before taking new ones from the pool.
    #[inline]
    pub(crate) fn push(&mut self, data: &[u8], pool: &mut BufPool) {
        // The usual case: a small write into the last chunk, which has room.
        if self.head != NIL {
            let tail = pool.chunk(self.head).tail;
            let buf = &mut pool.chunk_mut(tail).buf;
            let len = u32::try_from(data.len())
                .ok()
                .and_then(|n| self.len.checked_add(n));
            if let (Some(len), true) = (len, buf.capacity() - buf.len() >= data.len()) {
                buf.extend_from_slice(data);
                self.len = len;
                return;
            }
        }
        if self.head == NIL && data.len() <= CHUNK {
            // The other usual case: the first write into an empty queue (which owns
            // no chunk): one chunk from the pool, one copy.
            let id = pool.take_chunk();
            pool.chunk_mut(id).buf.extend_from_slice(data);
            self.head = id;
            self.len = data.len() as u32;
            return;
        }
        self.push_slow(data, pool);
    }

    fn push_slow(&mut self, mut data: &[u8], pool: &mut BufPool) {
        self.add_len(data.len());
        while !data.is_empty() {
            let last = self.last_with_room(0, pool);
            let buf = &mut pool.chunk_mut(last).buf;
            let n = (buf.capacity() - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
    }

    /// Appends bytes produced by `fill` (an encoder writing header, payload and
    /// trailer), which expects to write about `size` bytes: into the last chunk if it
    /// has the room, else into a fresh chunk, or into a buffer of its own for a frame
    /// larger than a chunk. At most `max` bytes may be added: `fill` writing more
    /// (an encoder that wrote more than it announced) is an error made by `over`
    /// from the count it wrote. On error nothing is appended.
    pub(crate) fn push_with<E>(
        &mut self,
        pool: &mut BufPool,
        size: usize,
        max: usize,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        over: impl FnOnce(usize) -> E,
    ) -> Result<usize, E> {
        let last = self.last_with_room(size.max(1), pool);
        let buf = &mut pool.chunk_mut(last).buf;
        let before = buf.len();
        let mut result = fill(buf);
        let written = buf.len() - before;
        if result.is_ok() && written > max {
            result = Err(over(written));
        }
        if result.is_err() {
            buf.truncate(before);
        }
        let added = buf.len() - before;
        self.add_len(added);
        if self.len == 0 {
            // Nothing was ever added: do not keep an empty chunk.
            self.release(pool);
        }
        result.map(|()| added)
    }

    /// Writes as much as the kernel takes, in `writev` calls of up to [`MAX_IOV`]
    /// slices. A short write counts as "buffer full" and ends the flush without
    /// another attempt (which would only return `EAGAIN`).
    #[inline]
    pub(crate) fn flush(&mut self, w: &mut impl Write, pool: &mut BufPool) -> io::Result<Flushed> {
        if self.len == 0 {
            return Ok(Flushed::All);
        }
        let head = pool.chunk(self.head);
        if head.next == NIL {
            // One chunk, all taken (the usual case): one `send`, and the chunk goes
            // back to the pool, without the loop and its `writev` array.
            let first = &head.buf[head.sent as usize..];
            let offered = first.len();
            let written = w.write(first);
            if matches!(written, Ok(n) if n == offered && n == self.len as usize && n > 0) {
                pool.give(self.head);
                self.head = NIL;
                self.len = 0;
                return Ok(Flushed::All);
            }
            return self.flush_on(written, offered, w, pool);
        }
        self.flush_chunks(w, pool)
    }

    /// The rest of a flush after a first `send` that did not take the whole queue.
    #[inline(never)]
    fn flush_on(
        &mut self,
        written: io::Result<usize>,
        offered: usize,
        w: &mut impl Write,
        pool: &mut BufPool,
    ) -> io::Result<Flushed> {
        match written {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.advance(n, pool);
                if n < offered {
                    return Ok(Flushed::Partial);
                }
                self.flush_chunks(w, pool)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Flushed::Partial),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.flush_chunks(w, pool),
            Err(e) => Err(e),
        }
    }

    /// [`flush`](Outbound::flush)'s loop, for any number of chunks.
    #[inline(never)]
    fn flush_chunks(&mut self, w: &mut impl Write, pool: &mut BufPool) -> io::Result<Flushed> {
        while self.len > 0 {
            let head = pool.chunk(self.head);
            let first = IoSlice::new(&head.buf[head.sent as usize..]);
            let mut offered = first.len();
            let written = if head.next == NIL {
                // One chunk (the usual case): a plain send, which skips the array and,
                // in the kernel, the vectored write path (iovec import, file hooks).
                w.write(&first)
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                iov[0] = first;
                let mut count = 1;
                let mut next = head.next;
                while next != NIL && count < MAX_IOV {
                    let chunk = pool.chunk(next);
                    iov[count] = IoSlice::new(&chunk.buf);
                    offered += chunk.buf.len();
                    count += 1;
                    next = chunk.next;
                }
                w.write_vectored(&iov[..count])
            };
            match written {
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

    /// Drops `n` written bytes from the front, giving finished chunks back.
    #[inline]
    fn advance(&mut self, n: usize, pool: &mut BufPool) {
        if n == self.len as usize && pool.chunk(self.head).next == NIL {
            // Everything was sent from one chunk (the usual case): give it back.
            pool.give(self.head);
            self.head = NIL;
            self.len = 0;
            return;
        }
        self.advance_partly(n, pool);
    }

    /// [`advance`](Outbound::advance) past more than one chunk, or into one.
    #[inline(never)]
    fn advance_partly(&mut self, mut n: usize, pool: &mut BufPool) {
        self.len -= n as u32;
        while n > 0 {
            let head = pool.chunk_mut(self.head);
            let left = head.buf.len() - head.sent as usize;
            if n < left {
                head.sent += n as u32;
                return;
            }
            n -= left;
            let (done, next, tail) = (self.head, head.next, head.tail);
            pool.give(done);
            self.head = next;
            if next == NIL {
                debug_assert_eq!(n, 0);
                debug_assert_eq!(self.len, 0);
                return;
            }
            let first = pool.chunk_mut(next);
            first.tail = tail;
            first.sent = 0;
        }
        // Everything offered was taken and the last chunk is exactly used up.
        if self.len == 0 {
            self.release(pool);
        }
    }

    /// Returns every chunk to the pool; the queue is empty afterwards.
    pub(crate) fn release(&mut self, pool: &mut BufPool) {
        let mut id = self.head;
        while id != NIL {
            let next = pool.chunk(id).next;
            pool.give(id);
            id = next;
        }
        self.head = NIL;
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
        assert_eq!(q.head, NIL, "a drained queue holds no chunk");
        assert_eq!(pool.idle, 1, "its chunk went back to the pool");
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
        let r: Result<usize, ()> = q.push_with(
            &mut pool,
            4,
            4,
            |v| {
                v.extend_from_slice(b"junk");
                Err(())
            },
            |_| (),
        );
        assert!(r.is_err());
        assert_eq!(q.len(), 2);
        // More than the most it may add: refused, nothing queued.
        let r: Result<usize, usize> = q.push_with(
            &mut pool,
            2,
            3,
            |v| {
                v.extend_from_slice(b"toolong");
                Ok(())
            },
            |n| n,
        );
        assert_eq!(r, Err(7));
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.push_with::<()>(
                &mut pool,
                2,
                2,
                |v| {
                    v.extend_from_slice(b"cd");
                    Ok(())
                },
                |_| ()
            ),
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

    #[test]
    fn queues_share_the_pool_and_big_frames_get_their_own_buffer() {
        let mut pool = BufPool::new(2);
        let mut queues: Vec<Outbound> = (0..4).map(|_| Outbound::default()).collect();
        let mut expect = vec![Vec::new(); 4];
        for round in 0..3 {
            for (i, q) in queues.iter_mut().enumerate() {
                let p = pattern(100 + i, round);
                q.push(&p, &mut pool);
                expect[i].extend_from_slice(&p);
            }
        }
        // A frame larger than a chunk, written by an encoder, after small writes.
        let big = pattern(3 * CHUNK + 5, 9);
        let added = queues[1]
            .push_with::<()>(
                &mut pool,
                big.len(),
                big.len(),
                |v| {
                    v.extend_from_slice(&big);
                    Ok(())
                },
                |_| (),
            )
            .unwrap();
        assert_eq!(added, big.len());
        expect[1].extend_from_slice(&big);
        for (q, expect) in queues.iter_mut().zip(&expect) {
            let mut w = Trickle {
                limit: 1000,
                got: Vec::new(),
                calls: 0,
            };
            while q.flush(&mut w, &mut pool).unwrap() == Flushed::Partial {}
            assert_eq!(&w.got, expect);
            assert!(q.is_empty());
            assert_eq!(q.head, NIL);
        }
        // Four chunk buffers were used; two are kept, the big one is not.
        assert_eq!(pool.idle, 2);
        let kept = pool.chunks.iter().filter(|c| c.buf.capacity() != 0).count();
        assert_eq!(kept, 2);
    }
}
