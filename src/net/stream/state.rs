//! A stream's state: its phase, its read and write sides, and the rarely used part.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;
use socket2::SockRef;

use super::connect::Connecting;
use super::watch::Watch;
use super::StreamHandler;
use crate::error::{Error, SocketErrorStatus};
use crate::framing::{Decoder, Encoder};
use crate::io::outbound::Outbound;
use crate::net::hostname::HostName;
use crate::reactor::Key;
#[cfg(feature = "tls")]
use crate::tls::TlsSession;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Resolving,
    Connecting,
    Open,
    /// `close` was called: sending what is queued, then FIN.
    Closing,
    /// `Closed` is about to be delivered.
    Closed,
}

/// The receiving side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadSide {
    Open,
    /// The kernel reported the peer's FIN (or an error): read on to end of file, past
    /// short reads, since no new edge will come for it.
    Fin,
    /// End of file was read; `ReadClosed` is still to be delivered (after the bytes
    /// kept before it).
    Eof,
    /// `ReadClosed` was delivered.
    Done,
}

/// The sending side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteSide {
    Open,
    /// `shutdown_write` was called: FIN once the queue is sent.
    ShutdownQueued,
    /// FIN sent.
    Shut,
}

pub(crate) struct StreamState<S: 'static> {
    pub(crate) io: Option<TcpStream>,
    pub(crate) handler: Option<StreamHandler<S>>,
    pub(crate) phase: Phase,
    pub(crate) read: ReadSide,
    pub(crate) write: WriteSide,
    pub(crate) out: Outbound,
    /// What an established, idle socket does not use, allocated on first use.
    pub(crate) cold: Option<Box<Cold>>,
    /// The owner asked to stop receiving for now.
    pub(crate) receive_paused: bool,
    /// Received bytes are being handed to the handler (they live outside `inbuf`).
    pub(crate) delivering: bool,
    /// While `delivering`: the handler changed how the input is read (codec set or
    /// cleared, handler replaced); the rest is delivered again the new way.
    pub(crate) reinterpret: bool,
    /// Kept input (and a pending `ReadClosed`) must be offered again without waiting
    /// for new bytes: what held it back changed (a handler was set, receiving resumed,
    /// the codec changed).
    pub(crate) reoffer: bool,
    pub(crate) over_high: bool,
    /// The stream runs TLS (`cold.tls` is set): reads and writes go through it.
    pub(crate) tls: bool,
    /// While `delivering`: the handler upgraded to TLS. Whatever it left of that
    /// input came in plaintext after the upgrade point: the upgrade fails.
    pub(crate) upgrade_point: bool,
    pub(crate) dirty: bool,
    pub(crate) queued_ready: bool,
}

/// The rarely used part of a stream's state: unconsumed input, the codec, the connect
/// plan, the name connected to and the linger timer. An accepted connection that only
/// echoes never allocates it, which keeps an idle socket to a few dozen bytes; once
/// allocated it stays until the socket is closed, so nothing is allocated per message.
#[derive(Default)]
pub(crate) struct Cold {
    /// Bytes the handler left unconsumed, or received before it had a handler.
    pub(crate) inbuf: Vec<u8>,
    /// With a decoder, the handler gets `Message`s instead of `Received`.
    pub(crate) decoder: Option<Box<dyn Decoder>>,
    pub(crate) encoder: Option<Box<dyn Encoder>>,
    /// Changes when framing is set or cleared, so a delivery loop knows its decoder
    /// was replaced by the handler.
    pub(crate) framing_gen: u32,
    pub(crate) connect: Option<Box<Connecting>>,
    /// The name given to `connect`.
    pub(crate) host: Option<HostName>,
    /// The linger timer of a closing socket.
    pub(crate) timer: Option<Key>,
    /// The listener that accepted it, when that listener limits its live connections
    /// (told when this one goes).
    pub(crate) listener: Option<Key>,
    /// The TLS session, with `tls` set.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<TlsSession>>,
    /// The timer of a TLS handshake under way.
    #[cfg(feature = "tls")]
    pub(crate) handshake_timer: Option<Key>,
    /// Idle, read and write timeouts: reads and sends are stamped while it is set.
    pub(crate) watch: Option<Box<Watch>>,
}

impl<S: 'static> StreamState<S> {
    pub(crate) fn new(
        io: Option<TcpStream>,
        phase: Phase,
        handler: Option<StreamHandler<S>>,
    ) -> StreamState<S> {
        StreamState {
            io,
            handler,
            phase,
            out: Outbound::default(),
            read: ReadSide::Open,
            write: WriteSide::Open,
            cold: None,
            receive_paused: false,
            delivering: false,
            reinterpret: false,
            reoffer: false,
            over_high: false,
            tls: false,
            upgrade_point: false,
            dirty: false,
            queued_ready: false,
        }
    }

    /// The cold part, allocated if this is its first use.
    pub(crate) fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    /// The TLS session, if the stream runs TLS.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_mut(&mut self) -> Option<&mut TlsSession> {
        if !self.tls {
            return None;
        }
        self.cold.as_mut().and_then(|c| c.tls.as_deref_mut())
    }

    /// Bytes kept unconsumed.
    pub(crate) fn inbuf_len(&self) -> usize {
        self.cold.as_ref().map_or(0, |c| c.inbuf.len())
    }

    /// The framing generation (0 until a codec is first set).
    pub(crate) fn framing_gen(&self) -> u32 {
        self.cold.as_ref().map_or(0, |c| c.framing_gen)
    }

    /// Whether a flush would do nothing: the socket is open both ways, nothing is
    /// queued and no `Drained` is owed.
    #[inline]
    pub(crate) fn nothing_to_flush(&self) -> bool {
        self.phase == Phase::Open
            && self.write == WriteSide::Open
            && self.out.is_empty()
            && !self.over_high
    }

    /// Whether new input would go straight to the handler as `Received`: open, the
    /// peer still sending, a handler that takes input, no codec, no TLS, nothing kept
    /// or to offer again first.
    #[inline]
    pub(crate) fn plain_input(&self) -> bool {
        self.phase == Phase::Open
            && self.read == ReadSide::Open
            && self.handler.is_some()
            && !self.receive_paused
            && !self.reoffer
            && !self.tls
            && self
                .cold
                .as_ref()
                .map_or(true, |c| c.decoder.is_none() && c.inbuf.is_empty())
    }

    /// Whether the handler can be given input now.
    pub(crate) fn accepts_input(&self) -> bool {
        self.phase == Phase::Open && self.handler.is_some() && !self.receive_paused
    }

    /// Something that decides how (or whether) input is delivered changed. Inside its
    /// own delivery, the delivery loop offers the rest again at once; elsewhere, kept
    /// input and a pending `ReadClosed` are offered on the next turn. Returns whether
    /// the socket must be served again without a kernel event.
    #[must_use]
    pub(crate) fn input_changed(&mut self) -> bool {
        if self.delivering {
            self.reinterpret = true;
            return false;
        }
        if self.inbuf_len() > 0 || self.read == ReadSide::Eof {
            self.reoffer = true;
        }
        true
    }

    fn peer(&self) -> Option<SocketAddr> {
        self.io.as_ref().and_then(|io| io.peer_addr().ok())
    }

    pub(crate) fn error(&self, operation: &'static str, e: io::Error) -> Error {
        let err = Error::from_io(operation, e);
        match self.peer() {
            Some(addr) => err.with_address(addr),
            None => err,
        }
    }
}

pub(crate) fn writable_state<S: 'static>(
    st: &StreamState<S>,
    operation: &'static str,
) -> Result<(), Error> {
    let why = match st.phase {
        Phase::Closing | Phase::Closed => "the socket is closing",
        _ if st.write != WriteSide::Open => "the sending side is shut down",
        _ => return Ok(()),
    };
    Err(Error::new(SocketErrorStatus::InvalidState, operation).with_detail(why))
}

/// Drops the connection with a reset (SO_LINGER 0) and everything in flight.
pub(crate) fn reset<S: 'static>(st: &mut StreamState<S>) {
    if let Some(io) = st.io.take() {
        let _ = SockRef::from(&io).set_linger(Some(Duration::ZERO));
    }
    if let Some(cold) = st.cold.as_mut() {
        cold.connect = None;
    }
    st.phase = Phase::Closed;
}
