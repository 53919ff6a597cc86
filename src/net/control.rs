//! Socket options (set before connecting or binding) and socket information.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, Socket, TcpKeepalive};

use crate::net::hostname::HostName;
use crate::net::stream::{nonzero, Timeouts};
#[cfg(feature = "tls")]
use crate::tls::{ProtectionLevel, TlsClientOptions, TlsServerConfig, HANDSHAKE_TIMEOUT};

/// Quality of service for a stream socket, as on Windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QualityOfService {
    /// The system's default.
    #[default]
    Normal,
    /// Latency first: packets are marked Expedited Forwarding (DSCP 46) and Nagle's
    /// algorithm is off whatever [`StreamSocketControl::no_delay`] says.
    LowLatency,
}

/// TCP keep-alive probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub retries: u32,
}

impl Default for KeepAlive {
    fn default() -> KeepAlive {
        KeepAlive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            retries: 6,
        }
    }
}

/// Options of a stream socket, set before it connects (`StreamSocketControl` on Windows).
///
/// Built the way every options struct of the crate is (see
/// [one builder convention](crate#one-builder-convention)): `new()` gives the defaults,
/// each option is a method that takes and returns the struct, and `get_<option>` reads it.
///
/// The defaults suit interactive traffic: Nagle's algorithm is off, connection attempts
/// to several addresses race (Happy Eyeballs), and a connection attempt gives up after
/// 30 seconds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sockloop::{KeepAlive, QualityOfService, StreamSocketControl};
///
/// let control = StreamSocketControl::new()
///     .keep_alive(Some(KeepAlive::default()))
///     .quality_of_service(QualityOfService::LowLatency)
///     .connect_timeout(Duration::from_secs(5));
/// assert!(control.get_no_delay());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSocketControl {
    no_delay: bool,
    keep_alive: Option<KeepAlive>,
    outbound_buffer_size: Option<usize>,
    inbound_buffer_size: Option<usize>,
    hop_limit: Option<u32>,
    qos: QualityOfService,
    serialize: bool,
    connect_timeout: Duration,
    timeouts: Timeouts,
    #[cfg(feature = "tls")]
    protection_level: ProtectionLevel,
    #[cfg(feature = "tls")]
    tls: TlsClientOptions,
    #[cfg(feature = "tls")]
    tls_handshake_timeout: Duration,
}

impl Default for StreamSocketControl {
    fn default() -> StreamSocketControl {
        StreamSocketControl {
            no_delay: true,
            keep_alive: None,
            outbound_buffer_size: None,
            inbound_buffer_size: None,
            hop_limit: None,
            qos: QualityOfService::Normal,
            serialize: false,
            connect_timeout: Duration::from_secs(30),
            timeouts: Timeouts::default(),
            #[cfg(feature = "tls")]
            protection_level: ProtectionLevel::PlainSocket,
            #[cfg(feature = "tls")]
            tls: TlsClientOptions::default(),
            #[cfg(feature = "tls")]
            tls_handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

impl StreamSocketControl {
    /// The defaults.
    pub fn new() -> StreamSocketControl {
        StreamSocketControl::default()
    }

    /// Disables Nagle's algorithm (`TCP_NODELAY`); on by default.
    #[must_use]
    pub fn no_delay(mut self, on: bool) -> Self {
        self.no_delay = on;
        self
    }

    /// Enables keep-alive probes with the given timing, or disables them (the default).
    #[must_use]
    pub fn keep_alive(mut self, keep_alive: Option<KeepAlive>) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The kernel send buffer size (`SO_SNDBUF`); the system default if `None`.
    #[must_use]
    pub fn outbound_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.outbound_buffer_size = bytes;
        self
    }

    /// The kernel receive buffer size (`SO_RCVBUF`); the system default if `None`.
    #[must_use]
    pub fn inbound_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.inbound_buffer_size = bytes;
        self
    }

    /// The hop limit of outgoing unicast packets (IPv4 TTL, IPv6 unicast hops).
    #[must_use]
    pub fn outbound_unicast_hop_limit(mut self, hops: Option<u32>) -> Self {
        self.hop_limit = hops;
        self
    }

    /// The quality of service.
    #[must_use]
    pub fn quality_of_service(mut self, qos: QualityOfService) -> Self {
        self.qos = qos;
        self
    }

    /// Tries the resolved addresses one after the other, each to its end, instead of
    /// racing them 250 ms apart (RFC 8305).
    #[must_use]
    pub fn serialize_connection_attempts(mut self, on: bool) -> Self {
        self.serialize = on;
        self
    }

    /// How long a connection may take, name resolution and all attempts included.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Closes the connection with `ConnectionTimedOut` (and a reset) once no byte was
    /// received and none was sent for this long. Off by default; `None` or a zero
    /// duration turns it off. Set it on
    /// [`StreamSocketListenerControl::accepted`] for the connections a listener
    /// accepts, or change it on an open socket with
    /// [`StreamSocket::set_idle_timeout`](crate::StreamSocket::set_idle_timeout).
    ///
    /// Timeouts cost nothing per message: a read or a send stamps the time, and one
    /// internal timer per socket is armed again at most once per timeout period.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sockloop::{StreamSocketControl, StreamSocketListenerControl};
    ///
    /// // Reclaim silent clients after 30 s, slow ones (1 byte every few seconds) after 5 s
    /// // without a byte, and those that stop reading our replies after 10 s.
    /// let per_connection = StreamSocketControl::new()
    ///     .idle_timeout(Some(Duration::from_secs(30)))
    ///     .read_timeout(Some(Duration::from_secs(5)))
    ///     .write_timeout(Some(Duration::from_secs(10)));
    /// let control = StreamSocketListenerControl::new().accepted(per_connection);
    /// assert_eq!(control.get_accepted().get_read_timeout(), Some(Duration::from_secs(5)));
    /// ```
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts.idle = nonzero(timeout);
        self
    }

    /// Closes the connection with `ConnectionTimedOut` (and a reset) once no byte was
    /// received for this long while receiving: the clock stops while receiving is
    /// paused ([`set_receive_paused`](crate::StreamSocket::set_receive_paused)) and
    /// after the peer's FIN. Off by default. See [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts.read = nonzero(timeout);
        self
    }

    /// Closes the connection with `ConnectionTimedOut` (and a reset) once bytes have
    /// been queued for this long without the peer taking any of them (a peer that
    /// stopped reading). The clock runs only while something is queued, also during
    /// a graceful `close`. Off by default. See [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts.write = nonzero(timeout);
        self
    }

    /// The idle timeout.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.timeouts.idle
    }

    /// The read timeout.
    pub fn get_read_timeout(&self) -> Option<Duration> {
        self.timeouts.read
    }

    /// The write (stall) timeout.
    pub fn get_write_timeout(&self) -> Option<Duration> {
        self.timeouts.write
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Whether Nagle's algorithm is disabled.
    pub fn get_no_delay(&self) -> bool {
        self.no_delay || self.qos == QualityOfService::LowLatency
    }

    /// Whether connection attempts are serialized.
    pub fn get_serialize_connection_attempts(&self) -> bool {
        self.serialize
    }

    /// The connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    #[cfg(feature = "tls")]
    /// How `connect` protects the connection: `PlainSocket` (the default), or TLS
    /// (`Ssl`, `Tls12`, `Tls13`), in which case `Connected` comes once the handshake
    /// has completed, and the server's certificate is verified for the name connected
    /// to (sent as SNI), against the roots of [`tls`](Self::tls). `Tls10`, `Tls11` and
    /// `SslAllowNullEncryption` make `connect` fail with `InvalidArgument`.
    #[must_use]
    pub fn protection_level(mut self, level: ProtectionLevel) -> Self {
        self.protection_level = level;
        self
    }

    #[cfg(feature = "tls")]
    /// The TLS options used with a TLS protection level: trust roots, ALPN, or a
    /// whole rustls configuration.
    #[must_use]
    pub fn tls(mut self, options: TlsClientOptions) -> Self {
        self.tls = options;
        self
    }

    #[cfg(feature = "tls")]
    /// How long the TLS handshake may take once TCP is connected (10 s by default);
    /// past it the socket closes with `ConnectionTimedOut`. For a listener's accepted
    /// sockets (set through
    /// [`StreamSocketListenerControl::accepted`]), counted from the accept.
    #[must_use]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls_handshake_timeout = timeout;
        self
    }

    #[cfg(feature = "tls")]
    /// The TLS handshake timeout.
    pub fn get_tls_handshake_timeout(&self) -> Duration {
        self.tls_handshake_timeout
    }

    #[cfg(feature = "tls")]
    /// The protection level `connect` asks for.
    pub fn get_protection_level(&self) -> ProtectionLevel {
        self.protection_level
    }

    #[cfg(feature = "tls")]
    /// The TLS options.
    pub fn get_tls(&self) -> &TlsClientOptions {
        &self.tls
    }

    /// The keep-alive timing, `None` when keep-alive is off.
    pub fn get_keep_alive(&self) -> Option<KeepAlive> {
        self.keep_alive
    }

    /// The kernel send buffer size asked for, `None` for the system default.
    pub fn get_outbound_buffer_size(&self) -> Option<usize> {
        self.outbound_buffer_size
    }

    /// The kernel receive buffer size asked for, `None` for the system default.
    pub fn get_inbound_buffer_size(&self) -> Option<usize> {
        self.inbound_buffer_size
    }

    /// The hop limit of outgoing unicast packets, `None` for the system default.
    pub fn get_outbound_unicast_hop_limit(&self) -> Option<u32> {
        self.hop_limit
    }

    /// The quality of service.
    pub fn get_quality_of_service(&self) -> QualityOfService {
        self.qos
    }

    /// Options that must be set before `connect` (buffer sizes, TTL, TOS).
    pub(crate) fn apply_before_connect(
        &self,
        socket: &Socket,
        addr: &SocketAddr,
    ) -> io::Result<()> {
        self.apply_buffer_sizes(socket)?;
        self.apply_ip(socket, addr)
    }

    /// The kernel buffer sizes. They size the TCP window (and its scale, fixed by the
    /// handshake), so they take effect only if set before `connect` or, for accepted
    /// sockets, on the listening socket before `listen` (tcp(7)); set on an
    /// established connection, a smaller receive buffer than the window already
    /// advertised makes the kernel drop segments and throughput collapse.
    pub(crate) fn apply_buffer_sizes(&self, socket: &Socket) -> io::Result<()> {
        if let Some(n) = self.outbound_buffer_size {
            socket.set_send_buffer_size(n)?;
        }
        if let Some(n) = self.inbound_buffer_size {
            socket.set_recv_buffer_size(n)?;
        }
        Ok(())
    }

    /// TTL and TOS.
    fn apply_ip(&self, socket: &Socket, addr: &SocketAddr) -> io::Result<()> {
        if let Some(hops) = self.hop_limit {
            if addr.is_ipv4() {
                socket.set_ttl_v4(hops)?;
            } else {
                socket.set_unicast_hops_v6(hops)?;
            }
        }
        if self.qos == QualityOfService::LowLatency {
            // DSCP 46 (Expedited Forwarding) in the upper six bits of the TOS byte.
            const EF: u32 = 46 << 2;
            if addr.is_ipv4() {
                socket.set_tos_v4(EF)?;
            } else {
                socket.set_tclass_v6(EF)?;
            }
        }
        Ok(())
    }

    /// Options that apply to a connected socket (also used for accepted ones).
    pub(crate) fn apply_connected(&self, socket: SockRef<'_>) -> io::Result<()> {
        socket.set_tcp_nodelay(self.get_no_delay())?;
        if let Some(ka) = self.keep_alive {
            let params = TcpKeepalive::new()
                .with_time(ka.idle)
                .with_interval(ka.interval)
                .with_retries(ka.retries);
            socket.set_tcp_keepalive(&params)?;
        }
        Ok(())
    }

    /// Everything but the buffer sizes, for accepted sockets (which inherit the
    /// buffer sizes of their listening socket, see
    /// [`apply_buffer_sizes`](Self::apply_buffer_sizes)).
    pub(crate) fn apply_accepted(&self, socket: SockRef<'_>, addr: &SocketAddr) -> io::Result<()> {
        let owned: &Socket = &socket;
        self.apply_ip(owned, addr)?;
        self.apply_connected(socket)
    }
}

/// Options of a listener, set before it binds. Built like every options struct (see
/// [one builder convention](crate#one-builder-convention)).
///
/// # Examples
///
/// ```
/// use sockloop::{StreamSocketControl, StreamSocketListenerControl};
///
/// let control = StreamSocketListenerControl::new()
///     .backlog(4096)
///     .reuse_port(true) // one listener per reactor, one reactor per core
///     .accepted(StreamSocketControl::new().no_delay(true));
/// assert_eq!(control.get_backlog(), 4096);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSocketListenerControl {
    pub(crate) backlog: i32,
    pub(crate) reuse_port: bool,
    pub(crate) only_ipv6: bool,
    pub(crate) accepted: StreamSocketControl,
    pub(crate) max_connections: Option<usize>,
    pub(crate) over_limit: OverLimit,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsServerConfig>,
}

/// What a listener does while it has its
/// [`max_connections`](StreamSocketListenerControl::max_connections) live accepted
/// connections. Neither policy spins: a paused listener is out of the poller until a
/// connection closes; a rejecting one accepts until the kernel's queue is empty.
///
/// # Examples
///
/// ```
/// use sockloop::{OverLimit, StreamSocketListenerControl};
///
/// let control = StreamSocketListenerControl::new()
///     .max_connections(Some(10_000))
///     .over_limit(OverLimit::Reject);
/// assert_eq!(control.get_max_connections(), Some(10_000));
/// assert_eq!(control.get_over_limit(), OverLimit::Reject);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverLimit {
    /// Stop accepting until one of the listener's connections closes: new
    /// connections wait in the kernel's accept queue (the
    /// [`backlog`](StreamSocketListenerControl::backlog)); once it is full, the kernel
    /// drops further SYNs and clients retry, then time out.
    #[default]
    Pause,
    /// Accept each new connection and reset it at once (`SO_LINGER` 0: the client
    /// gets RST, `ConnectionResetByPeer`); the handler is not called, and
    /// [`StreamSocketListener::rejected_connections`](crate::StreamSocketListener::rejected_connections)
    /// counts them.
    Reject,
}

impl Default for StreamSocketListenerControl {
    fn default() -> Self {
        StreamSocketListenerControl {
            backlog: 1024,
            reuse_port: false,
            only_ipv6: false,
            accepted: StreamSocketControl::default(),
            max_connections: None,
            over_limit: OverLimit::Pause,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl StreamSocketListenerControl {
    /// The defaults: a backlog of 1024, no port sharing, dual-stack IPv6 sockets.
    pub fn new() -> Self {
        Self::default()
    }

    /// The length of the queue of connections not yet accepted (capped by the
    /// system's `net.core.somaxconn`).
    #[must_use]
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.min(i32::MAX as u32) as i32;
        self
    }

    /// `SO_REUSEPORT`: several listeners (typically one per thread, each with its own
    /// reactor) share the port and the kernel spreads connections among them.
    #[must_use]
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// On an IPv6 address, accept IPv6 only (`IPV6_V6ONLY`); by default an IPv6
    /// wildcard listener also accepts IPv4.
    #[must_use]
    pub fn only_ipv6(mut self, on: bool) -> Self {
        self.only_ipv6 = on;
        self
    }

    /// The options applied to every accepted socket. Its buffer sizes are set on the
    /// listening socket before `listen` and inherited: set on an accepted connection
    /// they would come too late to size its TCP window.
    #[must_use]
    pub fn accepted(mut self, control: StreamSocketControl) -> Self {
        self.accepted = control;
        self
    }

    /// The most connections accepted by the listener that may be live at once (not
    /// yet `Closed`, nor taken out with
    /// [`into_std`](crate::StreamSocket::into_std)); `None`, the default, for no
    /// limit. Over it, the listener does what [`over_limit`](Self::over_limit) says.
    /// A limit of 0 is taken as 1.
    ///
    /// A connection closed gracefully counts as gone when its `Closed` is delivered,
    /// though its descriptor may stay open a little longer to read the peer's last
    /// bytes (the linger after `close`, bounded in time).
    #[must_use]
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max.map(|m| m.max(1));
        self
    }

    /// What to do with new connections at the
    /// [`max_connections`](Self::max_connections) limit; [`OverLimit::Pause`] by
    /// default.
    #[must_use]
    pub fn over_limit(mut self, policy: OverLimit) -> Self {
        self.over_limit = policy;
        self
    }

    /// The limit on live accepted connections, if any.
    pub fn get_max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// The policy at the limit.
    pub fn get_over_limit(&self) -> OverLimit {
        self.over_limit
    }

    #[cfg(feature = "tls")]
    /// Terminates TLS on accepted sockets with `config`: the handshake runs before
    /// their handler sees any data, and a failed handshake closes the socket with
    /// `Closed(Err)` (to the handler, if one was set).
    #[must_use]
    pub fn tls(mut self, config: TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    #[cfg(feature = "tls")]
    /// The TLS configuration of accepted sockets, if they run TLS.
    pub fn get_tls(&self) -> Option<&TlsServerConfig> {
        self.tls.as_ref()
    }

    /// The backlog.
    pub fn get_backlog(&self) -> u32 {
        self.backlog.unsigned_abs()
    }

    /// Whether the port is shared (`SO_REUSEPORT`).
    pub fn get_reuse_port(&self) -> bool {
        self.reuse_port
    }

    /// Whether an IPv6 listener accepts IPv6 only.
    pub fn get_only_ipv6(&self) -> bool {
        self.only_ipv6
    }

    /// The options applied to every accepted socket.
    pub fn get_accepted(&self) -> &StreamSocketControl {
        &self.accepted
    }
}

/// Round-trip-time statistics of a TCP connection, from the kernel (`TCP_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundTripTimeStatistics {
    /// The smoothed round-trip time.
    pub smoothed: Duration,
    /// Its mean deviation.
    pub variance: Duration,
    /// Segments retransmitted over the connection's life.
    pub retransmissions: u32,
}

/// What is known about a stream socket (`StreamSocketInformation` on Windows).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSocketInformation {
    /// The local address, once connected.
    pub local_address: Option<SocketAddr>,
    /// The remote address, once connected.
    pub remote_address: Option<SocketAddr>,
    /// The host name the socket was asked to connect to, or the remote address of an
    /// accepted socket.
    pub remote_host_name: Option<HostName>,
    /// Round-trip-time statistics, once connected.
    pub round_trip_time: Option<RoundTripTimeStatistics>,
    /// Bytes accepted by `write` and not yet taken by the kernel.
    pub queued_bytes: usize,
    /// `PlainSocket`; with TLS, the negotiated version (`Tls12`, `Tls13`), or `Ssl`
    /// while the handshake runs.
    #[cfg(feature = "tls")]
    pub protection_level: ProtectionLevel,
}
