//! Certificates made at test time (rcgen) and what TLS tests share.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use sockloop::{
    ProtectionLevel, SocketErrorStatus, StreamSocketControl, TlsClientOptions, TlsServerConfig,
};

/// A test CA and a leaf it signed.
pub struct Pki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_der: Vec<u8>,
    pub key_pem: String,
}

/// A number for each CA, so that no two share a name (a CA of the same name would
/// make a signature failure, not an unknown issuer).
fn next_ca() -> usize {
    static CAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    CAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Pki {
    /// A CA, and a leaf for `names` (DNS names or IP addresses) signed by it.
    pub fn new(names: &[&str]) -> Pki {
        Pki::build(names, false)
    }

    /// A CA, and a leaf for `names` that expired in 2001.
    pub fn expired(names: &[&str]) -> Pki {
        Pki::build(names, true)
    }

    fn build(names: &[&str], expired: bool) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("sockloop test CA {}", next_ca()),
        );
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sockloop test server");
        if expired {
            leaf_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            leaf_params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        Pki {
            ca_pem: ca.pem(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().to_vec(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    pub fn server(&self) -> TlsServerConfig {
        TlsServerConfig::from_pem(self.leaf_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    /// The same configuration, from DER.
    pub fn server_der(&self) -> TlsServerConfig {
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .unwrap()
            .secret_der()
            .to_vec();
        TlsServerConfig::from_der([self.leaf_der.clone()], key).unwrap()
    }

    pub fn client(&self) -> TlsClientOptions {
        TlsClientOptions::new()
            .root_certificates_pem(self.ca_pem.as_bytes())
            .unwrap()
    }

    pub fn rustls_server(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![CertificateDer::from(self.leaf_der.clone())];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }
}

pub fn tls_control(level: ProtectionLevel, options: TlsClientOptions) -> StreamSocketControl {
    StreamSocketControl::new()
        .protection_level(level)
        .tls(options)
}

/// What a client saw.
#[derive(Default)]
pub struct Seen {
    pub connected: bool,
    pub upgraded: bool,
    pub received: Vec<u8>,
    pub messages: Vec<Vec<u8>>,
    pub read_closed: bool,
    pub closed: Option<Result<(), SocketErrorStatus>>,
    pub info: Option<sockloop::TlsInformation>,
    pub level: Option<ProtectionLevel>,
}

pub fn status(result: &Result<(), sockloop::Error>) -> Result<(), SocketErrorStatus> {
    result.as_ref().map(|_| ()).map_err(|e| e.status())
}

/// The crypto provider the library uses (ring, or aws-lc-rs with its feature), for
/// configurations made here with rustls directly.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}
