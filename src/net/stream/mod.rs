//! `StreamSocket`: a TCP connection driven by the reactor.

mod close;
mod connect;
mod framed;
mod kind;
mod receive;
mod send;
mod state;
#[cfg(feature = "tls")]
pub(crate) mod tls;
mod watch;

pub(crate) use close::{Lingering, LingeringKind};
pub(crate) use kind::StreamKind;
pub(crate) use send::{over_limit, send_queued, send_staged};
pub(crate) use state::{reset, writable_state, Phase, ReadSide, StreamState, WriteSide};
pub(crate) use watch::{nonzero, Timeouts};

use std::fmt;
use std::time::Duration;

use mio::net::TcpStream;

use crate::error::stale_handle;
use crate::error::{Error, SocketErrorStatus};
use crate::io::inbound::Input;
use crate::io::sys;
use crate::net::control::{RoundTripTimeStatistics, StreamSocketInformation};
use crate::net::hostname::HostName;
use crate::net::listener::canonical;
use crate::reactor::{Key, Reactor, Source};

/// The stale-handle error of a stream operation.
pub(crate) fn stale(operation: &'static str) -> Error {
    stale_handle("StreamSocket", operation)
}

/// A TCP connection: a `Copy` handle to a socket owned by a [`Reactor`].
///
/// Every call takes the reactor; a handle whose socket is closed gives an
/// `InvalidHandle` error, never another socket's data.
///
/// # Examples
///
/// Connect, send a line, print what comes back:
///
/// ```no_run
/// use sockloop::{Reactor, StreamEvent, StreamSocket};
///
/// let mut reactor = Reactor::<()>::new()?;
/// StreamSocket::connect(&mut reactor, "127.0.0.1", 7,
///     |reactor, _state, socket, event| match event {
///         StreamEvent::Connected => socket.write(reactor, b"hello\n").unwrap(),
///         StreamEvent::Received(mut input) => {
///             println!("{}", String::from_utf8_lossy(input.bytes()));
///             input.consume_all();
///             socket.close(reactor).unwrap();
///         }
///         StreamEvent::Closed(result) => println!("closed: {result:?}"),
///         _ => {}
///     })?;
/// reactor.run(&mut ())?;
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamSocket(pub(crate) Key);

impl fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamSocket({}v{})", self.0.index, self.0.gen)
    }
}

/// What happened on a stream socket.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamEvent<'a> {
    /// The connection is established (for sockets made with `connect`); with a TLS
    /// protection level, once the handshake has completed too.
    Connected,
    /// Bytes arrived. Consume what you use; the rest is offered again with the next
    /// bytes.
    Received(Input<'a>),
    /// One whole message, for a socket given a codec with
    /// [`set_framing`](StreamSocket::set_framing): the payload without its header or
    /// terminator. Nothing is copied or allocated for it.
    Message(&'a [u8]),
    /// The peer closed its sending side (end of file). This side may still write;
    /// `close` or `shutdown_write` ends the connection.
    ReadClosed,
    /// The in-place upgrade to TLS
    /// ([`upgrade_to_tls`](StreamSocket::upgrade_to_tls) or
    /// [`upgrade_to_tls_server`](StreamSocket::upgrade_to_tls_server)) completed: what
    /// is received from now on was protected.
    TlsUpgraded,
    /// The write queue, which had grown over the high watermark, fell to the low one:
    /// writing can resume.
    Drained,
    /// The socket is closed and its handle stale. Always the last event, delivered
    /// exactly once: `Ok` after a local `close`/`abort` or a clean end, `Err` with the
    /// status when the connection failed.
    Closed(Result<(), Error>),
}

pub(crate) type StreamHandler<S> =
    Box<dyn FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>)>;

impl StreamSocket {
    /// Adopts a connected `std` socket (made non-blocking here).
    ///
    /// # Errors
    ///
    /// When the socket cannot be made non-blocking or registered.
    pub fn from_std<S: 'static>(
        reactor: &mut Reactor<S>,
        stream: std::net::TcpStream,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<StreamSocket, Error> {
        stream
            .set_nonblocking(true)
            .map_err(|e| Error::from_io("adopt stream", e))?;
        let key = reactor.add_stream(TcpStream::from_std(stream), Some(Box::new(handler)))?;
        Ok(StreamSocket(key))
    }

    /// Gives the handler to a socket that has none (an accepted one) or replaces it.
    /// Bytes that arrived before are delivered to it on the next turn.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_handler<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "set handler")?;
        st.handler = Some(Box::new(handler));
        if st.input_changed() && st.reoffer {
            reactor.mark_ready(self.0);
        }
        Ok(())
    }

    /// Stops (`true`) or resumes (`false`) reading from the socket. While paused, the
    /// kernel's receive buffer fills and TCP flow control slows the peer down: the way
    /// to push back when the data received cannot be handled (or forwarded) as fast as
    /// it arrives — for instance, pause when `write` reports `NoBufferSpaceAvailable`
    /// and resume on `Drained`. While paused, no `Received` or `Message` event is
    /// delivered (a handler that pauses while given several messages gets the next one
    /// only after resuming) and `ReadClosed` waits. Resuming offers what was kept
    /// (bytes left unconsumed, messages not delivered yet) on the next turn, or at once
    /// if the handler pauses and resumes within one call, before any new byte or
    /// `ReadClosed`.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_receive_paused<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        paused: bool,
    ) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "pause receive")?;
        let resumed = st.receive_paused && !paused;
        st.receive_paused = paused;
        if resumed {
            // The read timeout counts from here.
            st.note_read();
        }
        // Even with nothing kept: edges that came while paused were not read.
        if resumed && st.input_changed() {
            reactor.mark_ready(self.0);
        }
        Ok(())
    }

    /// Sets or clears (`None`) the idle timeout: the connection is reset and closed
    /// with `ConnectionTimedOut` once no byte was received and none was sent for this
    /// long, counted from this call. Replaces what
    /// [`StreamSocketControl::idle_timeout`](crate::StreamSocketControl::idle_timeout)
    /// set; the other timeouts are kept. Costs nothing per message.
    ///
    /// # Examples
    ///
    /// A server that gives each client 5 s to say something, then 60 s between
    /// messages once it has:
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sockloop::{ListenerEvent, Reactor, StreamEvent, StreamSocketControl,
    ///     StreamSocketListener, StreamSocketListenerControl};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let first = StreamSocketControl::new().idle_timeout(Some(Duration::from_secs(5)));
    /// let control = StreamSocketListenerControl::new().accepted(first);
    /// StreamSocketListener::bind_any_with(&mut reactor, 7000, &control, |r, _, _, event| {
    ///     if let ListenerEvent::ConnectionReceived(c) = event {
    ///         c.socket.set_handler(r, |r, _, socket, event| {
    ///             if let StreamEvent::Received(mut input) = event {
    ///                 input.consume_all();
    ///                 socket.set_idle_timeout(r, Some(Duration::from_secs(60))).unwrap();
    ///             }
    ///         }).unwrap();
    ///     }
    /// })?;
    /// reactor.run(&mut ())?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_idle_timeout<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        self.change_timeouts(reactor, "set idle timeout", |t| t.idle = timeout)
    }

    /// Sets or clears (`None`) the read timeout: the connection is reset and closed
    /// with `ConnectionTimedOut` once no byte was received for this long while
    /// receiving (not while paused, not after the peer's FIN), counted from this call.
    /// See [`set_idle_timeout`](Self::set_idle_timeout).
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_read_timeout<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        self.change_timeouts(reactor, "set read timeout", |t| t.read = timeout)
    }

    /// Sets or clears (`None`) the write (stall) timeout: the connection is reset and
    /// closed with `ConnectionTimedOut` once bytes have been queued for this long
    /// without the peer taking any. See [`set_idle_timeout`](Self::set_idle_timeout).
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_write_timeout<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        self.change_timeouts(reactor, "set write timeout", |t| t.write = timeout)
    }

    fn change_timeouts<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        operation: &'static str,
        change: impl FnOnce(&mut Timeouts),
    ) -> Result<(), Error> {
        reactor.stream_ref(self.0, operation)?;
        let mut timeouts = reactor.timeouts(self.0).unwrap_or_default();
        change(&mut timeouts);
        timeouts = Timeouts {
            idle: nonzero(timeouts.idle),
            read: nonzero(timeouts.read),
            write: nonzero(timeouts.write),
        };
        reactor.set_timeouts(self.0, timeouts);
        Ok(())
    }

    /// Closes gracefully: what is queued is sent (then, with TLS, close_notify), then a
    /// FIN, then the handler gets `Closed(Ok(()))`. If the queue is not sent within
    /// the reactor's linger time, the connection is reset and `Closed` reports
    /// `ConnectionTimedOut`. Bytes that arrive meanwhile are discarded. A socket still
    /// connecting is just dropped.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if already closed.
    pub fn close<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "close")?;
        match st.phase {
            Phase::Closing => return Ok(()),
            Phase::Resolving | Phase::Connecting => {
                st.phase = Phase::Closed;
                reactor.finish_later(self.0, Ok(()));
                return Ok(());
            }
            _ => {}
        }
        #[cfg(feature = "tls")]
        if st.tls {
            reactor.tls_close_notify(self.0);
        }
        let Ok(st) = reactor.stream_mut(self.0, "close") else {
            return Err(stale("close"));
        };
        // The linger timer is armed by the flush, only if the queue does not drain at
        // once: closing an idle socket touches neither the heap nor the timers.
        st.phase = Phase::Closing;
        reactor.mark_dirty(self.0);
        Ok(())
    }

    /// Resets the connection (RST) at once, dropping what is queued in both
    /// directions. The handler gets `Closed(Ok(()))`.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if already closed.
    pub fn abort<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        reactor.unstage(self.0);
        let Some(Source::Stream(st)) = reactor.sources.get_mut(self.0) else {
            return Err(stale("abort"));
        };
        if st.phase == Phase::Closed {
            return Err(stale("abort"));
        }
        // A connecting socket's plan owns timers: cancel them with it, or they would
        // stay armed (the connect timeout for up to 30 s) after the socket is gone.
        let plan = st.cold.as_mut().and_then(|c| c.connect.take());
        reset(st);
        st.out.release(&mut reactor.pool);
        if let Some(plan) = plan {
            reactor.cancel_internal_timer(plan.stagger);
            reactor.cancel_internal_timer(plan.timeout);
        }
        reactor.finish_later(self.0, Ok(()));
        Ok(())
    }

    /// Addresses, host name, round-trip-time statistics and queue length.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn information<S: 'static>(
        self,
        reactor: &Reactor<S>,
    ) -> Result<StreamSocketInformation, Error> {
        let st = reactor.stream_ref(self.0, "information")?;
        let io = st.io.as_ref();
        // IPv4 peers of dual-stack sockets as IPv4, as `ConnectionReceived` has them.
        let remote_address = io.and_then(|s| s.peer_addr().ok()).map(canonical);
        Ok(StreamSocketInformation {
            local_address: io.and_then(|s| s.local_addr().ok()).map(canonical),
            remote_address,
            // The name given to `connect`, else the peer's address (accepted and
            // adopted sockets).
            remote_host_name: st
                .cold
                .as_ref()
                .and_then(|c| c.host.clone())
                .or_else(|| remote_address.map(|a| HostName::from(a.ip()))),
            round_trip_time: io.and_then(|s| sys::tcp_info(s).ok()).map(|i| {
                RoundTripTimeStatistics {
                    smoothed: Duration::from_micros(i.rtt_us.into()),
                    variance: Duration::from_micros(i.rttvar_us.into()),
                    retransmissions: i.total_retrans,
                }
            }),
            queued_bytes: st.out.len() + reactor.stage.len_of(self.0),
            #[cfg(feature = "tls")]
            protection_level: tls::protection_level(st),
        })
    }

    /// Bytes accepted by `write` and not yet taken by the kernel.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn queued_len<S: 'static>(self, reactor: &Reactor<S>) -> Result<usize, Error> {
        let queued = reactor.stream_ref(self.0, "queued len")?.out.len();
        Ok(queued + reactor.stage.len_of(self.0))
    }

    /// Takes the socket out of the reactor and returns it (still non-blocking). The
    /// handler is dropped without a `Closed` event: the connection is not closed.
    ///
    /// # Errors
    ///
    /// `InvalidState` if the socket is not connected or runs TLS, if called from the
    /// handler while it is given received bytes, or if bytes are still queued in
    /// either direction (they would be lost); `InvalidHandle` if closed.
    pub fn into_std<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
    ) -> Result<std::net::TcpStream, Error> {
        let st = reactor.stream_mut(self.0, "into std")?;
        if st.phase != Phase::Open || st.io.is_none() {
            return Err(Error::new(SocketErrorStatus::InvalidState, "into std")
                .with_detail("not connected"));
        }
        if st.tls {
            return Err(Error::new(SocketErrorStatus::InvalidState, "into std")
                .with_detail("the socket runs TLS: its session state cannot go with it"));
        }
        if st.delivering {
            return Err(Error::new(SocketErrorStatus::InvalidState, "into std").with_detail(
                "called while received bytes are being delivered; call it after the handler returns",
            ));
        }
        if !st.out.is_empty() || st.inbuf_len() > 0 {
            return Err(
                Error::new(SocketErrorStatus::InvalidState, "into std").with_detail(format!(
                    "{} bytes queued to send and {} received but unconsumed",
                    st.out.len(),
                    st.inbuf_len()
                )),
            );
        }
        let Some(Source::Stream(mut st)) = reactor.remove_source(self.0) else {
            return Err(stale("into std"));
        };
        let mut io = st.io.take().ok_or_else(|| stale("into std"))?;
        let _ = reactor.poll.registry().deregister(&mut io);
        reactor.accepted_connection_gone(st.cold.as_ref().and_then(|c| c.listener));
        Ok(std::net::TcpStream::from(io))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::net::listener::{ListenerEvent, StreamSocketListener};

    /// An accepted connection that echoes and goes idle keeps no out-of-line state and
    /// no chunk: its whole cost is its slot.
    #[test]
    fn idle_echoing_connection_holds_no_cold_state() {
        let mut reactor = Reactor::<Vec<StreamSocket>>::new().unwrap();
        let listener = StreamSocketListener::bind(
            &mut reactor,
            "127.0.0.1",
            0,
            |reactor, accepted: &mut Vec<StreamSocket>, _, event| {
                if let ListenerEvent::ConnectionReceived(conn) = event {
                    accepted.push(conn.socket);
                    let _ = conn
                        .socket
                        .set_handler(reactor, |reactor, _, socket, event| {
                            if let StreamEvent::Received(mut input) = event {
                                socket.write(reactor, input.bytes()).unwrap();
                                input.consume_all();
                            }
                        });
                }
            },
        )
        .unwrap();
        let addr = listener.local_address(&reactor).unwrap();
        let mut accepted = Vec::new();
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client.write_all(&[i; 100]).unwrap();
            let mut echo = [0u8; 100];
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            client.set_nonblocking(true).unwrap();
            while got < echo.len() {
                assert!(Instant::now() < deadline, "no echo");
                reactor
                    .turn(&mut accepted, Some(Duration::from_millis(10)))
                    .unwrap();
                match client.read(&mut echo[got..]) {
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(echo, [i; 100]);
            clients.push(client);
        }
        assert_eq!(accepted.len(), 3);
        for socket in &accepted {
            let Some(Source::Stream(st)) = reactor.sources.get(socket.0) else {
                panic!("socket gone");
            };
            assert!(st.cold.is_none(), "cold state allocated for an echo");
            assert!(st.out.is_empty());
        }
        // No queue chunk: each echo was staged and sent as its handler returned.
        assert_eq!(reactor.pool.idle(), 0);
        // The name of an accepted peer is its address, made on demand.
        let info = accepted[0].information(&reactor).unwrap();
        assert_eq!(
            info.remote_host_name,
            Some(HostName::from(clients[0].local_addr().unwrap().ip()))
        );
    }

    /// Accepts `n` connections on a fresh listener; returns the reactor's sockets (in
    /// the order the clients connected) and the clients.
    fn accepted_pairs(
        reactor: &mut Reactor<Vec<StreamSocket>>,
        n: usize,
    ) -> (Vec<StreamSocket>, Vec<std::net::TcpStream>) {
        let listener = StreamSocketListener::bind(
            reactor,
            "127.0.0.1",
            0,
            |_, accepted: &mut Vec<StreamSocket>, _, event| {
                if let ListenerEvent::ConnectionReceived(conn) = event {
                    accepted.push(conn.socket);
                }
            },
        )
        .unwrap();
        let addr = listener.local_address(reactor).unwrap();
        let mut accepted = Vec::new();
        let mut clients = Vec::new();
        for i in 0..n {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            let deadline = Instant::now() + Duration::from_secs(10);
            while accepted.len() <= i {
                assert!(Instant::now() < deadline, "not accepted");
                reactor
                    .turn(&mut accepted, Some(Duration::from_millis(10)))
                    .unwrap();
            }
        }
        for client in &clients {
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
        }
        (accepted, clients)
    }

    /// Turns until `client` has read `want` bytes.
    fn read_through<S: 'static>(
        reactor: &mut Reactor<S>,
        state: &mut S,
        client: &mut std::net::TcpStream,
        want: usize,
    ) -> Vec<u8> {
        client.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < want {
            assert!(
                Instant::now() < deadline,
                "got {} of {want} bytes",
                got.len()
            );
            reactor
                .turn(state, Some(Duration::from_millis(10)))
                .unwrap();
            let mut buf = [0u8; 4096];
            match client.read(&mut buf) {
                Ok(0) => panic!("end of file after {} bytes", got.len()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        client.set_nonblocking(false).unwrap();
        got
    }

    /// The usual event is served with the socket at hand and sends its queue when the
    /// handler returns; whatever else the handler wrote to (another socket, queued
    /// before or after its own) still leaves with the flush after dispatch, and no
    /// socket is left marked for a flush.
    #[test]
    fn a_handler_writing_to_two_sockets_sends_both_when_it_returns() {
        for own_first in [true, false] {
            let mut reactor = Reactor::<Vec<StreamSocket>>::new().unwrap();
            let (accepted, mut clients) = accepted_pairs(&mut reactor, 2);
            let (a, b) = (accepted[0], accepted[1]);
            a.set_handler(&mut reactor, move |reactor, _, socket, event| {
                if let StreamEvent::Received(mut input) = event {
                    let data = input.bytes();
                    if own_first {
                        socket.write(reactor, data).unwrap();
                        b.write(reactor, data).unwrap();
                    } else {
                        b.write(reactor, data).unwrap();
                        socket.write(reactor, data).unwrap();
                    }
                    input.consume_all();
                }
            })
            .unwrap();
            let mut state = accepted.clone();
            for round in 0..3u8 {
                let message = [round; 64];
                clients[0].write_all(&message).unwrap();
                let echo = read_through(&mut reactor, &mut state, &mut clients[0], 64);
                assert_eq!(echo, message, "echo, own first: {own_first}");
                let relayed = read_through(&mut reactor, &mut state, &mut clients[1], 64);
                assert_eq!(relayed, message, "relay, own first: {own_first}");
                for socket in [a, b] {
                    let Some(Source::Stream(st)) = reactor.sources.get(socket.0) else {
                        panic!("socket gone");
                    };
                    assert!(!st.dirty, "left marked for a flush");
                    assert!(st.out.is_empty());
                }
            }
        }
    }

    /// A handler that takes its queue over the high watermark on the usual path gets
    /// `Drained` once the queue is sent: sending on return does not skip it.
    #[test]
    fn a_write_over_the_high_watermark_on_the_usual_path_gets_drained() {
        let mut reactor = Reactor::<Vec<StreamSocket>>::builder()
            .watermarks(8, 32, 1 << 20)
            .build::<Vec<StreamSocket>>()
            .unwrap();
        let (accepted, mut clients) = accepted_pairs(&mut reactor, 1);
        let drained = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let seen = drained.clone();
        accepted[0]
            .set_handler(&mut reactor, move |reactor, _, socket, event| match event {
                StreamEvent::Received(mut input) => {
                    socket.write(reactor, input.bytes()).unwrap();
                    input.consume_all();
                }
                StreamEvent::Drained => seen.set(seen.get() + 1),
                _ => {}
            })
            .unwrap();
        let mut state = accepted.clone();
        for round in 1..=3u32 {
            let message = [round as u8; 64];
            clients[0].write_all(&message).unwrap();
            let echo = read_through(&mut reactor, &mut state, &mut clients[0], 64);
            assert_eq!(echo, message);
            let deadline = Instant::now() + Duration::from_secs(10);
            while drained.get() < round {
                assert!(Instant::now() < deadline, "no Drained in round {round}");
                reactor
                    .turn(&mut state, Some(Duration::from_millis(10)))
                    .unwrap();
            }
            assert_eq!(drained.get(), round, "one Drained per queue over the mark");
        }
    }

    /// Reads served on the usual path stamp a socket's read timeout: a peer that keeps
    /// sending, more often than the timeout, keeps the connection open well past it.
    #[test]
    fn reads_on_the_usual_path_keep_a_read_timeout_from_firing() {
        let mut reactor = Reactor::<Vec<StreamSocket>>::new().unwrap();
        let (accepted, mut clients) = accepted_pairs(&mut reactor, 1);
        let closed = std::rc::Rc::new(std::cell::Cell::new(false));
        let seen = closed.clone();
        let socket = accepted[0];
        socket
            .set_handler(&mut reactor, move |reactor, _, socket, event| match event {
                StreamEvent::Received(mut input) => {
                    socket.write(reactor, input.bytes()).unwrap();
                    input.consume_all();
                }
                StreamEvent::Closed(_) => seen.set(true),
                _ => {}
            })
            .unwrap();
        let timeout = Duration::from_millis(1500);
        socket
            .set_read_timeout(&mut reactor, Some(timeout))
            .unwrap();
        let mut state = accepted.clone();
        let start = Instant::now();
        let mut round = 0u8;
        // Twice the timeout, a byte every 100 ms.
        while start.elapsed() < 2 * timeout {
            clients[0].write_all(&[round]).unwrap();
            let echo = read_through(&mut reactor, &mut state, &mut clients[0], 1);
            assert_eq!(echo, [round]);
            assert!(!closed.get(), "timed out while the peer kept sending");
            let pause = Instant::now() + Duration::from_millis(100);
            while Instant::now() < pause {
                reactor
                    .turn(&mut state, Some(Duration::from_millis(20)))
                    .unwrap();
            }
            assert!(!closed.get(), "timed out while the peer kept sending");
            round = round.wrapping_add(1);
        }
        assert!(reactor.sources.get(socket.0).is_some());
    }
}
