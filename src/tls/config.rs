//! Protection levels, and the options that become rustls configurations.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::verify::{IgnoringVerifier, IGNORABLE};
use crate::error::{Error, SocketErrorStatus};

/// How a stream is protected: the `SocketProtectionLevel` of Windows, same values.
///
/// `Ssl` means the best version both sides have (TLS 1.3 or 1.2); `Tls12` and `Tls13`
/// ask for exactly that version. `Tls10`, `Tls11` and `SslAllowNullEncryption` exist so
/// that code written for Windows finds them, and are refused with `InvalidArgument`:
/// they are insecure and rustls does not implement them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ProtectionLevel {
    /// No TLS.
    #[default]
    PlainSocket = 0,
    /// TLS, the best version both sides support (1.3 or 1.2).
    Ssl = 1,
    /// Refused: encryption is never optional.
    SslAllowNullEncryption = 2,
    /// Refused: TLS 1.0 is insecure and not implemented.
    Tls10 = 6,
    /// Refused: TLS 1.1 is insecure and not implemented.
    Tls11 = 7,
    /// TLS 1.2 only.
    Tls12 = 8,
    /// TLS 1.3 only.
    Tls13 = 10,
}

impl ProtectionLevel {
    /// The protocol versions of a TLS level, or why it is refused.
    fn versions(
        self,
        operation: &'static str,
    ) -> Result<&'static [&'static SupportedProtocolVersion], Error> {
        static BEST: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
        static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        let why = match self {
            ProtectionLevel::Ssl => return Ok(BEST),
            ProtectionLevel::Tls12 => return Ok(TLS12),
            ProtectionLevel::Tls13 => return Ok(TLS13),
            ProtectionLevel::PlainSocket => "PlainSocket is not a TLS protection level",
            ProtectionLevel::SslAllowNullEncryption => {
                "SslAllowNullEncryption is not supported: TLS without encryption is refused"
            }
            ProtectionLevel::Tls10 | ProtectionLevel::Tls11 => {
                "TLS 1.0 and 1.1 are insecure and not supported; use Tls12, Tls13 or Ssl"
            }
        };
        Err(Error::new(SocketErrorStatus::InvalidArgument, operation).with_detail(why))
    }

    /// The level that names a negotiated version.
    pub(crate) fn of_version(version: Option<rustls::ProtocolVersion>) -> ProtectionLevel {
        match version {
            Some(rustls::ProtocolVersion::TLSv1_3) => ProtectionLevel::Tls13,
            Some(rustls::ProtocolVersion::TLSv1_2) => ProtectionLevel::Tls12,
            _ => ProtectionLevel::Ssl,
        }
    }
}

/// The crypto provider: ring, or aws-lc-rs with the `aws-lc-rs` feature.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    #[cfg(feature = "aws-lc-rs")]
    let make = || Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // Deprecated only to point at aws-lc-rs for post-quantum key exchange, which is
    // the `aws-lc-rs` feature.
    #[cfg(not(feature = "aws-lc-rs"))]
    #[allow(deprecated)]
    let make = || Arc::new(rustls::crypto::ring::default_provider());
    PROVIDER.get_or_init(make).clone()
}

/// Mozilla's roots, compiled in (webpki-roots), made into a store once.
fn webpki_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

const SERVER_CERT: &str = "server certificate";

fn config_error(operation: &'static str, e: impl fmt::Display) -> Error {
    Error::new(SocketErrorStatus::InvalidArgument, operation).with_detail(e.to_string())
}

/// A certificate chain (leaf first) and its private key: a server's, or a client's
/// for mutual TLS.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// From PEM: the chain's `CERTIFICATE` blocks and a PKCS#8, PKCS#1 or SEC1 key.
    fn from_pem(chain: &[u8], key: &[u8], op: &'static str) -> Result<Identity, Error> {
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| config_error(op, e))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| config_error(op, e))?;
        Identity::new(chain, key, op)
    }

    /// From DER.
    fn from_der<I, C>(chain: I, key: Vec<u8>, op: &'static str) -> Result<Identity, Error>
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        let chain = chain
            .into_iter()
            .map(|c| CertificateDer::from(c.into()))
            .collect();
        let key = PrivateKeyDer::try_from(key).map_err(|e| config_error(op, e))?;
        Identity::new(chain, key, op)
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        op: &'static str,
    ) -> Result<Identity, Error> {
        if chain.is_empty() {
            return Err(config_error(op, "no certificate given"));
        }
        Ok(Identity { chain, key })
    }
}

/// Which roots a client trusts: [`TlsClientOptions::trust_roots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TrustRoots {
    /// Mozilla's roots, compiled in (webpki-roots): the same on every machine, and
    /// there on a machine without a system store. The default.
    #[default]
    Webpki,
    /// The operating system's store (rustls-native-certs): what the machine's
    /// administrator trusts, including a company's own CA.
    System,
    /// Both: Mozilla's roots and the system's.
    SystemAndWebpki,
}

/// The system's roots (rustls-native-certs), added to `into` or to a new store.
fn system_roots(into: Option<&mut RootCertStore>) -> Result<RootCertStore, Error> {
    const OP: &str = "system root certificates";
    let loaded = rustls_native_certs::load_native_certs();
    let failures = loaded
        .errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut own = RootCertStore::empty();
    let store = match into {
        Some(store) => store,
        None => &mut own,
    };
    let found = loaded.certs.len();
    let (added, skipped) = store.add_parsable_certificates(loaded.certs);
    if skipped > 0 {
        log::warn!("{OP}: {skipped} of {found} certificates could not be used");
    }
    if added == 0 {
        let why = if failures.is_empty() {
            "the system store holds no usable certificate".to_string()
        } else {
            format!("the system store could not be loaded: {failures}")
        };
        return Err(Error::new(SocketErrorStatus::NotSupported, OP).with_detail(why));
    }
    if !failures.is_empty() {
        log::warn!("{OP}: {added} loaded, but: {failures}");
    }
    Ok(own)
}

/// A store of the certificates in `pem`.
fn root_store(pem: &[u8], op: &'static str) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        store
            .add(cert.map_err(|e| config_error(op, e))?)
            .map_err(|e| config_error(op, e))?;
    }
    if store.is_empty() {
        return Err(config_error(op, "no certificate given"));
    }
    Ok(store)
}

/// The client side's TLS options, set on
/// [`StreamSocketControl::tls`](crate::StreamSocketControl::tls): trust roots, ALPN,
/// or a whole rustls configuration.
///
/// By default the server's certificate is verified against Mozilla's roots (compiled
/// in, so it works on a machine without a system store) and the name connected to,
/// which is also sent as SNI. The configuration is built once per protection level
/// and shared by every connection made with these options (and their clones).
///
/// # Examples
///
/// ```
/// use sockloop::{ProtectionLevel, StreamSocketControl, TlsClientOptions};
///
/// // Trusting your own CA:
/// fn control_with(ca_pem: &[u8]) -> Result<StreamSocketControl, sockloop::Error> {
///     Ok(StreamSocketControl::new()
///         .protection_level(ProtectionLevel::Tls13)
///         .tls(TlsClientOptions::new().root_certificates_pem(ca_pem)?))
/// }
///
/// // Mozilla's roots (the default), offering HTTP/2 then HTTP/1.1 by ALPN:
/// let control = StreamSocketControl::new()
///     .protection_level(ProtectionLevel::Ssl)
///     .tls(TlsClientOptions::new().alpn_protocols(["h2", "http/1.1"]));
/// assert_eq!(control.get_protection_level(), ProtectionLevel::Ssl);
///
/// // Roots that are not certificates are refused.
/// assert!(control_with(b"not a certificate").is_err());
/// ```
#[derive(Clone, Default)]
pub struct TlsClientOptions {
    inner: Arc<ClientInner>,
}

#[derive(Default)]
struct ClientInner {
    /// `None`: webpki roots.
    roots: Option<Arc<RootCertStore>>,
    /// Where `roots` came from, for `Debug`.
    roots_from: Option<TrustRoots>,
    alpn: Vec<Vec<u8>>,
    config: Option<Arc<ClientConfig>>,
    /// The client certificate, for servers that ask for one.
    identity: Option<Arc<Identity>>,
    /// Server certificate errors let through.
    ignore: Vec<SocketErrorStatus>,
    /// Built configurations for `Ssl`, `Tls12`, `Tls13`.
    built: [OnceLock<Arc<ClientConfig>>; 3],
}

impl TlsClientOptions {
    /// The defaults: webpki roots, no ALPN.
    pub fn new() -> TlsClientOptions {
        TlsClientOptions::default()
    }

    fn with(&self, change: impl FnOnce(&mut ClientInner)) -> TlsClientOptions {
        let mut inner = ClientInner {
            roots: self.inner.roots.clone(),
            roots_from: self.inner.roots_from,
            alpn: self.inner.alpn.clone(),
            config: self.inner.config.clone(),
            identity: self.inner.identity.clone(),
            ignore: self.inner.ignore.clone(),
            built: Default::default(),
        };
        change(&mut inner);
        TlsClientOptions {
            inner: Arc::new(inner),
        }
    }

    /// Trusts the certificates in `pem` (one or more `CERTIFICATE` blocks) instead of
    /// the webpki roots.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the PEM holds no certificate or one that cannot be parsed.
    pub fn root_certificates_pem(self, pem: &[u8]) -> Result<TlsClientOptions, Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| config_error("root certificates", e))?;
        self.root_certificates(certs)
    }

    /// Trusts the DER certificates given instead of the webpki roots.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if there is none or one cannot be parsed.
    pub fn root_certificates_der<I, C>(self, certificates: I) -> Result<TlsClientOptions, Error>
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        self.root_certificates(
            certificates
                .into_iter()
                .map(|c| CertificateDer::from(c.into())),
        )
    }

    fn root_certificates(
        self,
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<TlsClientOptions, Error> {
        let mut store = RootCertStore::empty();
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| config_error("root certificates", e))?;
        }
        if store.is_empty() {
            return Err(config_error("root certificates", "no certificate given"));
        }
        Ok(self.with(|inner| {
            inner.roots = Some(Arc::new(store));
            inner.roots_from = None;
        }))
    }

    /// Trusts Mozilla's roots (the default), the operating system's store, or both.
    ///
    /// The system store is read now, once (on Linux and the BSDs: the files named by
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` if either is set, otherwise the
    /// distribution's bundle as OpenSSL would find it; the keychain on macOS; the
    /// certificate store on Windows). Certificates in it that cannot be parsed are
    /// skipped with a warning. This replaces roots given with
    /// [`root_certificates_pem`](Self::root_certificates_pem).
    ///
    /// # Errors
    ///
    /// With [`TrustRoots::System`], `NotSupported` when the system store cannot be
    /// loaded or holds no usable certificate (the detail says what was tried and what
    /// failed). [`TrustRoots::SystemAndWebpki`] does not fail: without a system store
    /// it trusts Mozilla's roots alone and logs a warning.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{SocketErrorStatus, TlsClientOptions, TrustRoots};
    ///
    /// // Both: works on a machine with or without a system store.
    /// let both = TlsClientOptions::new().trust_roots(TrustRoots::SystemAndWebpki)?;
    /// assert!(format!("{both:?}").contains("SystemAndWebpki"));
    ///
    /// // The system's alone: fall back to Mozilla's where there is none.
    /// let options = match TlsClientOptions::new().trust_roots(TrustRoots::System) {
    ///     Ok(options) => options,
    ///     Err(e) if e.status() == SocketErrorStatus::NotSupported => TlsClientOptions::new(),
    ///     Err(e) => return Err(e),
    /// };
    /// # let _ = options;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn trust_roots(self, roots: TrustRoots) -> Result<TlsClientOptions, Error> {
        let store = match roots {
            TrustRoots::Webpki => None,
            TrustRoots::System => Some(system_roots(None)?),
            TrustRoots::SystemAndWebpki => {
                let mut store = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                if let Err(e) = system_roots(Some(&mut store)) {
                    log::warn!("{e}; trusting Mozilla's roots alone");
                }
                Some(store)
            }
        };
        Ok(self.with(|inner| {
            inner.roots = store.map(Arc::new);
            inner.roots_from = Some(roots);
        }))
    }

    /// The protocols offered by ALPN, most preferred first (e.g. `b"h2"`).
    #[must_use]
    pub fn alpn_protocols<P: Into<Vec<u8>>>(
        self,
        protocols: impl IntoIterator<Item = P>,
    ) -> TlsClientOptions {
        let alpn = protocols.into_iter().map(Into::into).collect();
        self.with(|inner| inner.alpn = alpn)
    }

    /// Presents this certificate chain (leaf first) and key, from PEM, to a server
    /// that asks for a client certificate (mutual TLS).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the chain or key cannot be parsed.
    pub fn client_certificate_pem(
        self,
        chain: &[u8],
        key: &[u8],
    ) -> Result<TlsClientOptions, Error> {
        let identity = Identity::from_pem(chain, key, "client certificate")?;
        Ok(self.with(|inner| inner.identity = Some(Arc::new(identity))))
    }

    /// [`client_certificate_pem`](Self::client_certificate_pem) from DER.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the chain is empty or the key cannot be parsed.
    pub fn client_certificate_der<I, C>(
        self,
        chain: I,
        key: Vec<u8>,
    ) -> Result<TlsClientOptions, Error>
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        let identity = Identity::from_der(chain, key, "client certificate")?;
        Ok(self.with(|inner| inner.identity = Some(Arc::new(identity))))
    }

    /// Accepts a server certificate despite these errors — Windows'
    /// `IgnorableServerCertificateErrors`: any of `CertificateExpired` (also not yet
    /// valid), `CertificateUntrustedRoot` and `CertificateCommonNameIsIncorrect`. Each
    /// one let through is logged at warn. The other checks still run (an expired
    /// certificate must still chain to a trusted root, unless that is ignored too, and
    /// match the name), and the handshake's signatures are always verified. Empty by
    /// default; an empty list restores full verification.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for any other status: a certificate that is badly signed,
    /// malformed, revoked or for another use is never accepted.
    pub fn ignorable_server_certificate_errors(
        self,
        statuses: impl IntoIterator<Item = SocketErrorStatus>,
    ) -> Result<TlsClientOptions, Error> {
        let mut ignore = Vec::new();
        for status in statuses {
            if !IGNORABLE.contains(&status) {
                return Err(Error::new(
                    SocketErrorStatus::InvalidArgument,
                    "ignorable certificate errors",
                )
                .with_detail(format!(
                    "{status:?} cannot be ignored; only {IGNORABLE:?} can"
                )));
            }
            if !ignore.contains(&status) {
                ignore.push(status);
            }
        }
        Ok(self.with(|inner| inner.ignore = ignore))
    }

    /// Uses `config` as it is, for full control (verification, client certificates,
    /// versions, resumption): the roots, ALPN and the protection level's version
    /// choice of these options are then not applied. SNI still comes from the host name.
    #[must_use]
    pub fn config(self, config: Arc<ClientConfig>) -> TlsClientOptions {
        self.with(|inner| inner.config = Some(config))
    }

    /// The configuration for a connection at `level`.
    pub(crate) fn client_config(
        &self,
        level: ProtectionLevel,
        operation: &'static str,
    ) -> Result<Arc<ClientConfig>, Error> {
        let versions = level.versions(operation)?;
        if let Some(config) = &self.inner.config {
            return Ok(config.clone());
        }
        let slot = match level {
            ProtectionLevel::Tls12 => 1,
            ProtectionLevel::Tls13 => 2,
            _ => 0,
        };
        if let Some(config) = self.inner.built[slot].get() {
            return Ok(config.clone());
        }
        let roots = self.inner.roots.clone().unwrap_or_else(webpki_roots);
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| config_error(operation, e))?;
        let builder = if self.inner.ignore.is_empty() {
            builder.with_root_certificates(roots)
        } else {
            let algorithms = provider().signature_verification_algorithms;
            let verifier = IgnoringVerifier::new(roots, self.inner.ignore.clone(), algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        };
        let mut config = match &self.inner.identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| config_error(operation, e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols.clone_from(&self.inner.alpn);
        let config = Arc::new(config);
        let _ = self.inner.built[slot].set(config.clone());
        Ok(config)
    }
}

impl PartialEq for TlsClientOptions {
    /// The same options: clones of one another.
    fn eq(&self, other: &TlsClientOptions) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for TlsClientOptions {}

impl fmt::Debug for TlsClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientOptions")
            .field(
                "roots",
                &match (&self.inner.roots, self.inner.roots_from) {
                    (_, Some(from)) => format!("{from:?}"),
                    (Some(r), None) => format!("{} given", r.len()),
                    (None, None) => "webpki".to_string(),
                },
            )
            .field("alpn", &self.inner.alpn)
            .field("config", &self.inner.config.is_some())
            .field("ignore", &self.inner.ignore)
            .finish()
    }
}

/// A server's TLS configuration: its certificate chain and private key, for a
/// listener that terminates TLS
/// ([`StreamSocketListenerControl::tls`](crate::StreamSocketListenerControl::tls)) or
/// an accepted socket upgraded in place
/// ([`upgrade_to_tls_server`](crate::StreamSocket::upgrade_to_tls_server)).
///
/// TLS 1.3 and 1.2 are offered; a client certificate is asked for only with
/// [`client_authentication_pem`](Self::client_authentication_pem).
#[derive(Clone)]
pub struct TlsServerConfig {
    config: Arc<ServerConfig>,
    /// The server's certificate, to build the configuration again (`None` for a
    /// caller's rustls configuration).
    identity: Option<Arc<Identity>>,
    /// The client-certificate verifier, to build the configuration again.
    clients: Option<Arc<dyn ClientCertVerifier>>,
    /// The versions offered: 1.3 and 1.2, or 1.3 alone.
    versions: &'static [&'static SupportedProtocolVersion],
}

impl TlsServerConfig {
    /// From a PEM certificate chain (leaf first) and a PEM private key (PKCS#8,
    /// PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if either cannot be parsed or the key does not fit.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<TlsServerConfig, Error> {
        TlsServerConfig::build(Arc::new(Identity::from_pem(chain, key, SERVER_CERT)?), None)
    }

    /// From a DER certificate chain (leaf first) and a DER private key (PKCS#8,
    /// PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if either cannot be parsed or the key does not fit.
    pub fn from_der<I, C>(chain: I, key: Vec<u8>) -> Result<TlsServerConfig, Error>
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        TlsServerConfig::build(Arc::new(Identity::from_der(chain, key, SERVER_CERT)?), None)
    }

    fn build(
        identity: Arc<Identity>,
        clients: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<TlsServerConfig, Error> {
        TlsServerConfig::build_with(identity, clients, ProtectionLevel::Ssl, Vec::new())
    }

    fn build_with(
        identity: Arc<Identity>,
        clients: Option<Arc<dyn ClientCertVerifier>>,
        minimum: ProtectionLevel,
        alpn: Vec<Vec<u8>>,
    ) -> Result<TlsServerConfig, Error> {
        const OP: &str = "server minimum protection level";
        let versions = match minimum {
            ProtectionLevel::Ssl | ProtectionLevel::Tls12 => rustls::ALL_VERSIONS,
            ProtectionLevel::Tls13 => minimum.versions(OP)?,
            other => {
                other.versions(OP)?;
                return Err(Error::new(SocketErrorStatus::InvalidArgument, OP)
                    .with_detail(format!("{other:?} is not a minimum")));
            }
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| config_error(SERVER_CERT, e))?;
        let builder = match clients.clone() {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| config_error(SERVER_CERT, e))?;
        config.alpn_protocols = alpn;
        Ok(TlsServerConfig {
            config: Arc::new(config),
            identity: Some(identity),
            clients,
            versions,
        })
    }

    /// Refuses clients below `minimum`: with `Tls13`, a client that offers only TLS
    /// 1.2 fails its handshake (it receives a `protocol_version` alert; the accepted
    /// socket closes with `ProtocolError`). `Ssl` and `Tls12` accept 1.3 and 1.2 (the
    /// default).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for `PlainSocket` and the refused levels (`Tls10`, `Tls11`,
    /// `SslAllowNullEncryption`); `InvalidState` for a configuration made with
    /// [`from_rustls`](Self::from_rustls) (set its versions there).
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{ProtectionLevel, TlsServerConfig};
    ///
    /// // A certificate for the example (rcgen); yours comes from a file.
    /// let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    /// let (chain, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    ///
    /// let server = TlsServerConfig::from_pem(chain.as_bytes(), key.as_bytes())?;
    /// assert_eq!(server.get_minimum_protection_level(), Some(ProtectionLevel::Tls12));
    /// let tls13_only = server.minimum_protection_level(ProtectionLevel::Tls13)?;
    /// assert_eq!(tls13_only.get_minimum_protection_level(), Some(ProtectionLevel::Tls13));
    ///
    /// // Not a minimum anyone should set.
    /// assert!(tls13_only.minimum_protection_level(ProtectionLevel::Tls11).is_err());
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn minimum_protection_level(
        self,
        minimum: ProtectionLevel,
    ) -> Result<TlsServerConfig, Error> {
        let Some(identity) = self.identity.clone() else {
            return Err(Error::new(
                SocketErrorStatus::InvalidState,
                "server minimum protection level",
            )
            .with_detail("a rustls configuration is used as it is"));
        };
        let alpn = self.config.alpn_protocols.clone();
        TlsServerConfig::build_with(identity, self.clients.clone(), minimum, alpn)
    }

    /// The lowest version this configuration accepts: `Tls13` or `Tls12`; `None` for
    /// a configuration from [`from_rustls`](Self::from_rustls) (its versions are its own).
    pub fn get_minimum_protection_level(&self) -> Option<ProtectionLevel> {
        self.identity.as_ref()?;
        let tls12 = self
            .versions
            .iter()
            .any(|v| v.version == rustls::ProtocolVersion::TLSv1_2);
        Some(if tls12 {
            ProtectionLevel::Tls12
        } else {
            ProtectionLevel::Tls13
        })
    }

    /// Asks clients for a certificate that chains to the roots in `roots` (PEM):
    /// with `required`, a client without one is refused; without, it may connect
    /// anonymously (a certificate it does present is still verified). The client's
    /// chain is then in [`TlsInformation::peer_certificates`].
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the roots cannot be parsed; `InvalidState` for a
    /// configuration made with [`from_rustls`](Self::from_rustls) (set it there).
    pub fn client_authentication_pem(
        self,
        roots: &[u8],
        required: bool,
    ) -> Result<TlsServerConfig, Error> {
        let op = "client authentication";
        let Some(identity) = self.identity.clone() else {
            return Err(Error::new(SocketErrorStatus::InvalidState, op)
                .with_detail("a rustls configuration is used as it is"));
        };
        let roots = Arc::new(root_store(roots, op)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
        let verifier = if required {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier.build().map_err(|e| config_error(op, e))?;
        let alpn = self.config.alpn_protocols.clone();
        let minimum = self
            .get_minimum_protection_level()
            .unwrap_or(ProtectionLevel::Ssl);
        TlsServerConfig::build_with(identity, Some(verifier), minimum, alpn)
    }

    /// Uses a rustls configuration as it is, for full control.
    pub fn from_rustls(config: Arc<ServerConfig>) -> TlsServerConfig {
        TlsServerConfig {
            config,
            identity: None,
            clients: None,
            versions: rustls::ALL_VERSIONS,
        }
    }

    /// The protocols accepted by ALPN, most preferred first.
    #[must_use]
    pub fn alpn_protocols<P: Into<Vec<u8>>>(
        mut self,
        protocols: impl IntoIterator<Item = P>,
    ) -> TlsServerConfig {
        Arc::make_mut(&mut self.config).alpn_protocols =
            protocols.into_iter().map(Into::into).collect();
        self
    }

    pub(crate) fn rustls(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

impl PartialEq for TlsServerConfig {
    /// The same configuration: clones of one another.
    fn eq(&self, other: &TlsServerConfig) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsServerConfig {}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// What a TLS session negotiated: from
/// [`StreamSocket::tls_information`](crate::StreamSocket::tls_information).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInformation {
    /// The negotiated version: `Tls12` or `Tls13`.
    pub protection_level: ProtectionLevel,
    /// The negotiated cipher suite, by its IANA name (e.g. `TLS13_AES_256_GCM_SHA384`).
    pub cipher_suite: String,
    /// The protocol agreed by ALPN, if any.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The name sent (client) or received (server) as SNI.
    pub server_name: Option<String>,
    /// The peer's certificate chain, DER, leaf first (empty if it sent none). A
    /// resumed session has none (nothing was sent again).
    pub peer_certificates: Vec<Vec<u8>>,
    /// The session was resumed (from a ticket or the server's cache), without a full
    /// handshake. Clients keep up to 256 sessions per [`TlsClientOptions`] (shared by
    /// its clones), servers per [`TlsServerConfig`].
    pub resumed: bool,
}
