//! Trust roots from the system store (`TrustRoots::System`, rustls-native-certs),
//! against our own TLS listener on loopback. The system store is pointed at files made
//! here with `SSL_CERT_FILE`, which rustls-native-certs reads from the environment: each
//! case runs in a child process of this test binary (the environment of a process with
//! test threads is not changed), with the variables set at spawn.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sockloop::{
    ProtectionLevel, Reactor, SocketErrorStatus, StreamEvent, StreamSocket,
    StreamSocketListenerControl, TlsClientOptions, TlsServerConfig, TrustRoots,
};
use util::tls::{status, tls_control, Pki, Seen};
use util::{run_until, serve};

const LIMIT: Duration = Duration::from_secs(20);
/// Set in a child: the case it runs.
const CHILD: &str = "SOCKLOOP_TLS_ROOTS_CASE";
/// Set in a child: the directory with the server's `leaf.pem` and `key.pem`.
const DIR: &str = "SOCKLOOP_TLS_ROOTS_DIR";

/// A directory of its own for one case, with the server's certificate and key and
/// two CAs: the one that signed it (`ca.pem`) and another (`other-ca.pem`).
fn files(case: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sockloop-tls-roots-{}-{case}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = Pki::new(&["localhost"]);
    let other = Pki::new(&["localhost"]);
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.join("other-ca.pem"), &other.ca_pem).unwrap();
    std::fs::write(dir.join("leaf.pem"), &pki.leaf_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &pki.key_pem).unwrap();
    dir
}

/// Runs `case` in a child with `SSL_CERT_FILE` set to `cert_file` (a file in the
/// case's directory, or a path that does not exist) and `SSL_CERT_DIR` unset; panics
/// with the child's output unless it passes, within a minute.
fn run_child(case: &str, cert_file: &str) {
    let dir = files(case);
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .env(DIR, &dir)
        .env("SSL_CERT_FILE", dir.join(cert_file))
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child of {case} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success() && stdout.contains(&format!("CASE {case} PASSED")),
        "child {case} failed ({status}):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn system_roots_trust_the_system_ca() {
    run_child("system-trusted", "ca.pem");
}

#[test]
fn system_roots_refuse_a_ca_not_in_the_system_store() {
    run_child("system-untrusted", "other-ca.pem");
}

#[test]
fn system_roots_without_a_store_fail_with_not_supported() {
    run_child("system-missing", "does-not-exist.pem");
}

#[test]
fn system_and_webpki_roots_trust_the_system_ca() {
    run_child("both-trusted", "ca.pem");
}

#[test]
fn system_and_webpki_roots_without_a_store_trust_webpki_alone() {
    run_child("both-missing", "does-not-exist.pem");
}

#[test]
fn webpki_roots_ignore_the_system_store() {
    run_child("webpki", "ca.pem");
}

/// Connects to a TLS echo server with `options`; what the client saw.
fn connect(dir: &Path, options: TlsClientOptions) -> Seen {
    let read = |file: &str| std::fs::read(dir.join(file)).unwrap();
    let server = TlsServerConfig::from_pem(&read("leaf.pem"), &read("key.pem")).unwrap();
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (_listener, addr) = serve(
        &mut reactor,
        &StreamSocketListenerControl::new().tls(server),
        |reactor, _, socket, event| match event {
            StreamEvent::Received(mut input) => {
                let _ = socket.write(reactor, input.bytes());
                input.consume_all();
            }
            StreamEvent::ReadClosed => {
                let _ = socket.close(reactor);
            }
            _ => {}
        },
    );
    let control = tls_control(ProtectionLevel::Tls13, options);
    StreamSocket::connect_with(
        &mut reactor,
        "localhost",
        addr.port(),
        &control,
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                seen.connected = true;
                socket.write(reactor, b"through system roots\n").unwrap();
            }
            StreamEvent::Received(mut input) => {
                seen.received.extend_from_slice(input.bytes());
                input.consume_all();
                if seen.received.ends_with(b"\n") {
                    socket.close(reactor).unwrap();
                }
            }
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    seen
}

fn assert_trusted(seen: &Seen) {
    assert_eq!(seen.closed, Some(Ok(())));
    assert!(seen.connected);
    assert_eq!(seen.received, b"through system roots\n");
}

fn assert_untrusted(seen: &Seen) {
    assert_eq!(
        seen.closed,
        Some(Err(SocketErrorStatus::CertificateUntrustedRoot))
    );
    assert!(!seen.connected);
}

/// The cases, run in a child process by the tests above (and nothing otherwise).
#[test]
fn child() {
    let Ok(case) = std::env::var(CHILD) else {
        println!("not a child process: the cases run in children of the other tests");
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR).expect("the case's directory"));
    let options = TlsClientOptions::new();
    match case.as_str() {
        "system-trusted" => {
            let options = options.trust_roots(TrustRoots::System).unwrap();
            assert!(format!("{options:?}").contains("System"), "{options:?}");
            assert_trusted(&connect(&dir, options));
        }
        "system-untrusted" => {
            let options = options.trust_roots(TrustRoots::System).unwrap();
            assert_untrusted(&connect(&dir, options));
        }
        "system-missing" => {
            let err = options.trust_roots(TrustRoots::System).unwrap_err();
            assert_eq!(err.status(), SocketErrorStatus::NotSupported, "{err}");
            // The detail names what could not be read.
            assert!(err.to_string().contains("does-not-exist.pem"), "{err}");
        }
        "both-trusted" => {
            let options = options.trust_roots(TrustRoots::SystemAndWebpki).unwrap();
            assert_trusted(&connect(&dir, options));
        }
        "both-missing" => {
            let options = options.trust_roots(TrustRoots::SystemAndWebpki).unwrap();
            assert_untrusted(&connect(&dir, options));
        }
        "webpki" => {
            // The default, and asked for again after the system's: the system's CA
            // is not trusted.
            assert_untrusted(&connect(&dir, options.clone()));
            let options = options
                .trust_roots(TrustRoots::System)
                .unwrap()
                .trust_roots(TrustRoots::Webpki)
                .unwrap();
            assert_untrusted(&connect(&dir, options));
        }
        other => panic!("no case {other:?}"),
    }
    println!("CASE {case} PASSED");
}
