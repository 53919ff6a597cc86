//! Bytes in and out of the kernel: the write queue, read buffers and the few
//! Linux-specific calls that need `unsafe`.

pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod sys;

/// Size of the chunks the write queue is made of.
pub(crate) const CHUNK: usize = 16 * 1024;

/// A reactor-wide pool of write-queue chunks, so a socket that writes and drains in
/// steady state allocates nothing, and an idle socket holds no buffer.
pub(crate) struct BufPool {
    bufs: Vec<Vec<u8>>,
    max: usize,
}

impl BufPool {
    pub(crate) fn new(max: usize) -> BufPool {
        BufPool {
            bufs: Vec::new(),
            max,
        }
    }

    /// An empty buffer with a capacity of [`CHUNK`] bytes.
    pub(crate) fn get(&mut self) -> Vec<u8> {
        self.bufs.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// Gives a buffer back; kept if it is a chunk and the pool is not full.
    pub(crate) fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == CHUNK && self.bufs.len() < self.max {
            buf.clear();
            self.bufs.push(buf);
        }
    }
}
