//! Bytes in and out of the kernel: the write queue, read buffers and the few
//! Linux-specific calls that need `unsafe`.

pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod stage;
pub(crate) mod sys;

/// Size of the chunks the write queue is made of: 16 KiB, and room for the overhead
/// of a TLS record (header, nonce, tag), so that a full record of 16 KiB of plaintext
/// is encrypted straight into one chunk.
pub(crate) const CHUNK: usize = 16 * 1024 + 64;

/// The end of a chunk list.
pub(crate) const NIL: u32 = u32::MAX;

/// One write-queue chunk: a buffer, the next chunk of the same queue, and (in the
/// first chunk of a queue) the last chunk and how much of this one is already sent.
pub(crate) struct Chunk {
    pub(crate) buf: Vec<u8>,
    pub(crate) next: u32,
    /// First chunk of a queue only: the queue's last chunk.
    pub(crate) tail: u32,
    /// First chunk of a queue only: bytes of this chunk already written.
    pub(crate) sent: u32,
}

/// The reactor's chunk arena. Every socket's write queue is a list of chunks in it,
/// linked by index, so a socket with nothing queued holds no memory at all (its queue
/// is two integers), and a socket that writes and drains in steady state allocates
/// nothing: a sent chunk goes back to the free list with its buffer, up to `max` idle
/// buffers.
pub(crate) struct BufPool {
    chunks: Vec<Chunk>,
    /// Free chunk slots, linked through `next`; the most recently freed first.
    free: u32,
    /// Free slots that still hold a [`CHUNK`]-sized buffer.
    idle: usize,
    max: usize,
}

impl BufPool {
    pub(crate) fn new(max: usize) -> BufPool {
        BufPool {
            chunks: Vec::new(),
            free: NIL,
            idle: 0,
            max,
        }
    }

    /// A chunk with an empty buffer that can take `size` bytes: a [`CHUNK`] for
    /// anything up to a chunk, a buffer of its own for more.
    pub(crate) fn take(&mut self, size: usize) -> u32 {
        let id = if self.free == NIL {
            assert!(self.chunks.len() < NIL as usize, "chunk arena full");
            self.chunks.push(Chunk {
                buf: Vec::new(),
                next: NIL,
                tail: NIL,
                sent: 0,
            });
            (self.chunks.len() - 1) as u32
        } else {
            let id = self.free;
            self.free = self.chunks[id as usize].next;
            if self.chunks[id as usize].buf.capacity() != 0 {
                self.idle -= 1;
            }
            id
        };
        let chunk = &mut self.chunks[id as usize];
        let want = size.max(CHUNK);
        if chunk.buf.capacity() != want {
            chunk.buf = Vec::with_capacity(want);
        }
        chunk.next = NIL;
        chunk.tail = id;
        chunk.sent = 0;
        id
    }

    /// A chunk with an empty [`CHUNK`] buffer: the most recently freed one when it
    /// kept its buffer (the usual case once the pool is warm), else as [`take`].
    ///
    /// [`take`]: BufPool::take
    #[inline]
    pub(crate) fn take_chunk(&mut self) -> u32 {
        let id = self.free;
        if let Some(chunk) = self.chunks.get_mut(id as usize) {
            if chunk.buf.capacity() == CHUNK {
                self.free = chunk.next;
                self.idle -= 1;
                chunk.next = NIL;
                chunk.tail = id;
                chunk.sent = 0;
                return id;
            }
        }
        self.take(CHUNK)
    }

    /// Gives a chunk back. Its buffer is kept for reuse if it is a [`CHUNK`] and fewer
    /// than `max` are idle; otherwise it is freed.
    #[inline]
    pub(crate) fn give(&mut self, id: u32) {
        let keep = self.idle < self.max;
        let chunk = &mut self.chunks[id as usize];
        if keep && chunk.buf.capacity() == CHUNK {
            chunk.buf.clear();
            self.idle += 1;
        } else {
            chunk.buf = Vec::new();
        }
        chunk.next = self.free;
        self.free = id;
    }

    /// Free chunks that hold a buffer, ready for reuse.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle
    }

    pub(crate) fn chunk(&self, id: u32) -> &Chunk {
        &self.chunks[id as usize]
    }

    pub(crate) fn chunk_mut(&mut self, id: u32) -> &mut Chunk {
        &mut self.chunks[id as usize]
    }
}
