//! B4: TLS. Handshakes per second (TLS 1.3, ECDSA P-256 certificates made with rcgen;
//! full, and resumed from the server's session cache) and bulk transfer (16 KiB writes
//! on one connection) for sockloop's TLS listener against tokio-rustls on tokio's
//! current_thread runtime and a hand-written mio + rustls loop; the ceiling is rustls
//! decrypting the same records in memory, with no socket. Beside them: the server's
//! allocations per record and per handshake, system calls per handshake and per record,
//! and heap bytes per idle TLS connection.
//!
//! Process layout as B1: the server is the competitor in its own process, the client a
//! blocking rustls client (`StreamOwned` over `std::net::TcpStream`) in another, pinned
//! to two CPUs. The parent makes one CA and one leaf (for `localhost`) and writes them
//! to a temporary directory that both children read, so every competitor serves the
//! same certificate.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockloop::rustls::client::Resumption;
use sockloop::rustls::pki_types::pem::PemObject;
use sockloop::rustls::pki_types::{CertificateDer, ServerName};
use sockloop::rustls::{
    self, ClientConfig, ClientConnection, Connection, HandshakeKind, RootCertStore,
    ServerConnection, StreamOwned,
};

use crate::alloc;
use crate::chart::{Chart, Group};
use crate::competitors::tls::{self, Identity, Mode, TlsCompetitor, ACK_EVERY};
use crate::report::{bar, cell, ratio, table, Repeats, Report, Summary};
use crate::{
    fail, per_message, print_line, print_result, run_pair, run_solo, serve_child,
    wait_for_stdin_eof, Config, Family, Measures, Placement, Trace,
};

pub const FAMILY: Family = Family {
    name: "b4",
    run,
    server,
    client,
    solo,
};

/// The size of the bulk client's writes (and of a full TLS record's plaintext).
const WRITE: usize = 16 * 1024;
const RECORDS_PER_MIB: u64 = (1 << 20) / WRITE as u64;

struct Counts {
    hs_warm_up: u64,
    hs_measured: u64,
    /// N for the counted handshake runs (N and 2N).
    hs_counted: u64,
    bulk_warm_up_mib: u64,
    bulk_mib: u64,
    /// N (MiB) for the counted bulk runs.
    bulk_counted_mib: u64,
    idle: usize,
    ceiling_mib: u64,
}

fn counts(config: &Config) -> Counts {
    if config.quick {
        Counts {
            hs_warm_up: 10,
            hs_measured: 60,
            hs_counted: 20,
            bulk_warm_up_mib: 2,
            bulk_mib: 16,
            bulk_counted_mib: 4,
            idle: 50,
            ceiling_mib: 16,
        }
    } else {
        Counts {
            hs_warm_up: 200,
            hs_measured: 3_000,
            hs_counted: 500,
            bulk_warm_up_mib: 64,
            bulk_mib: 1024,
            bulk_counted_mib: 64,
            idle: 1_000,
            ceiling_mib: 1024,
        }
    }
}

/// The certificates of one suite run: a CA, and a leaf for `localhost` and 127.0.0.1
/// signed by it, both ECDSA P-256, as PEM files in `dir`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn create() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let made = (|| -> Result<(String, String, String), rcgen::Error> {
            // KeyPair::generate() is ECDSA P-256 with SHA-256.
            let ca_key = KeyPair::generate()?;
            let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "sockloop bench CA");
            let ca = ca_params.self_signed(&ca_key)?;
            let issuer = Issuer::new(ca_params, ca_key);
            let leaf_key = KeyPair::generate()?;
            let mut leaf_params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
            leaf_params
                .distinguished_name
                .push(DnType::CommonName, "sockloop bench server");
            let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
            Ok((ca.pem(), leaf.pem(), leaf_key.serialize_pem()))
        })();
        let (ca, leaf, key) = made.unwrap_or_else(|e| fail(&format!("b4: rcgen: {e}")));
        let dir = std::env::temp_dir().join(format!("sockloop-suite-{}-b4", std::process::id()));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("ca.pem"), ca))
            .and_then(|()| std::fs::write(dir.join("chain.pem"), leaf))
            .and_then(|()| std::fs::write(dir.join("key.pem"), key));
        if let Err(e) = written {
            fail(&format!("b4: write certificates to {}: {e}", dir.display()));
        }
        Pki { dir }
    }

    fn arg(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_pem(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file))
        .unwrap_or_else(|e| fail(&format!("b4: read {}: {e}", dir.join(file).display())))
}

fn identity(dir: &Path) -> Identity {
    Identity {
        chain_pem: read_pem(dir, "chain.pem"),
        key_pem: read_pem(dir, "key.pem"),
    }
}

/// The client's configuration: TLS 1.3 only, trusting the run's CA; resumption from
/// rustls' in-memory store, or none (every handshake full).
fn client_config(dir: &Path, resume: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read_pem(dir, "ca.pem")) {
        let cert = cert.unwrap_or_else(|e| fail(&format!("b4: CA: {e}")));
        roots
            .add(cert)
            .unwrap_or_else(|e| fail(&format!("b4: CA: {e}")));
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap_or_else(|e| fail(&format!("b4: client config: {e}")))
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a DNS name")
}

/// `--server b4 <dir> <competitor> <echo|sink>`.
fn server(args: &[String]) {
    let (Some(dir), Some(name), Some(mode)) = (
        args.first(),
        args.get(1),
        args.get(2).and_then(|m| Mode::parse(m)),
    ) else {
        fail(&format!("b4 server: bad arguments {args:?}"));
    };
    let competitor =
        tls::find(name).unwrap_or_else(|| fail(&format!("no TLS competitor {name:?}")));
    let identity = identity(Path::new(dir));
    serve_child(move |ready| (competitor.serve)(ready, &identity, mode));
}

type Client = StreamOwned<ClientConnection, TcpStream>;

fn open(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<Client> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let conn = ClientConnection::new(config.clone(), server_name()).map_err(io::Error::other)?;
    Ok(StreamOwned::new(conn, tcp))
}

/// One connection: handshake, one byte echoed (so the server has finished its side),
/// close_notify, close. Returns how the handshake went.
fn handshake_once(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<HandshakeKind> {
    let mut tls = open(addr, config)?;
    tls.write_all(b"x")?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte)?;
    let kind = tls.conn.handshake_kind();
    tls.conn.send_close_notify();
    tls.flush()?;
    kind.ok_or_else(|| io::Error::other("no handshake kind after the handshake"))
}

/// `--client b4 <addr> <dir> <kind> ...`:
/// `hs <full|resumed> <warm-up> <measured>`, `bulk <warm-up MiB> <MiB>`, `idle <count>`.
fn client(addr: SocketAddr, args: &[String]) {
    let dir = Path::new(args.first().map_or("", String::as_str));
    let rest: Vec<&str> = args[1.min(args.len())..]
        .iter()
        .map(String::as_str)
        .collect();
    let number = |s: &str| {
        s.parse::<u64>()
            .unwrap_or_else(|_| fail(&format!("b4 client: bad arguments {args:?}")))
    };
    let result = match rest.as_slice() {
        ["hs", kind @ ("full" | "resumed"), warm_up, measured] => handshakes(
            addr,
            dir,
            *kind == "resumed",
            number(warm_up),
            number(measured),
        ),
        ["bulk", warm_up, measured] => bulk(addr, dir, number(warm_up), number(measured)),
        ["idle", count] => idle(addr, dir, number(count) as usize),
        _ => fail(&format!("b4 client: bad arguments {args:?}")),
    };
    if let Err(e) = result {
        fail(&format!("b4 client: {e}"));
    }
}

fn handshakes(
    addr: SocketAddr,
    dir: &Path,
    resume: bool,
    warm_up: u64,
    measured: u64,
) -> io::Result<()> {
    let config = client_config(dir, resume);
    let want = if resume {
        HandshakeKind::Resumed
    } else {
        HandshakeKind::Full
    };
    // The first one is always full: it brings the tickets resumption needs.
    handshake_once(addr, &config)?;
    for _ in 0..warm_up {
        handshake_once(addr, &config)?;
    }
    print_line("MARK start");
    let start = Instant::now();
    for i in 0..measured {
        let kind = handshake_once(addr, &config)?;
        if kind != want {
            fail(&format!("b4: handshake #{i} was {kind:?}, not {want:?}"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    print_line("MARK end");
    print_result(&[("hs_per_s", measured as f64 / secs)]);
    wait_for_stdin_eof();
    Ok(())
}

fn bulk(addr: SocketAddr, dir: &Path, warm_up_mib: u64, mib: u64) -> io::Result<()> {
    let mut tls = open(addr, &client_config(dir, false))?;
    let chunk = vec![0x5a; WRITE];
    let mut acks = vec![0u8; (warm_up_mib + mib) as usize];
    let send = |tls: &mut Client, mib: u64, acks: &mut [u8]| -> io::Result<()> {
        for _ in 0..mib * RECORDS_PER_MIB {
            tls.write_all(&chunk)?;
        }
        tls.read_exact(acks)?;
        if acks.iter().any(|&b| b != b'k') {
            return Err(io::Error::other("the server's acknowledgements are wrong"));
        }
        Ok(())
    };
    let (warm, measured) = acks.split_at_mut(warm_up_mib as usize);
    send(&mut tls, warm_up_mib, warm)?;
    print_line("MARK start");
    let start = Instant::now();
    send(&mut tls, mib, measured)?;
    let secs = start.elapsed().as_secs_f64();
    print_line("MARK end");
    let bytes = mib * ACK_EVERY;
    print_result(&[
        ("mb_per_s", bytes as f64 / secs / 1e6),
        ("records", (mib * RECORDS_PER_MIB) as f64),
    ]);
    wait_for_stdin_eof();
    drop(tls);
    Ok(())
}

fn idle(addr: SocketAddr, dir: &Path, count: usize) -> io::Result<()> {
    let config = client_config(dir, false);
    let mut conns = Vec::with_capacity(count);
    let mut byte = [0u8; 1];
    for _ in 0..count {
        let mut tls = open(addr, &config)?;
        tls.write_all(b"x")?;
        tls.read_exact(&mut byte)?;
        conns.push(tls);
    }
    std::thread::sleep(Duration::from_millis(200));
    print_result(&[("connections", count as f64)]);
    wait_for_stdin_eof();
    drop(conns);
    Ok(())
}

/// Moves what `from` has to send into `to`, which processes it.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("write to a Vec");
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("read from a slice");
        to.process_new_packets()?;
    }
    Ok(())
}

/// `--solo b4 <dir> <MiB>`: the ceiling. A rustls client and server in memory, the
/// same configurations as over sockets; the client encrypts 16 MiB of 16 KiB records at
/// a time into a buffer, then the server decrypts them (`read_tls`,
/// `process_new_packets`, `reader().read` into a 16 KiB buffer), timed alone.
fn solo(args: &[String]) {
    let (Some(dir), Some(mib)) = (
        args.first(),
        args.get(1).and_then(|m| m.parse::<u64>().ok()),
    ) else {
        fail(&format!("b4 solo: bad arguments {args:?}"));
    };
    let dir = Path::new(dir);
    let mut client = Connection::Client(
        ClientConnection::new(client_config(dir, false), server_name()).expect("client"),
    );
    let mut server =
        Connection::Server(ServerConnection::new(identity(dir).rustls()).expect("server"));
    let mut rounds = 0;
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        transfer(&mut client, &mut server).unwrap_or_else(|e| fail(&format!("b4 solo: {e}")));
        transfer(&mut server, &mut client).unwrap_or_else(|e| fail(&format!("b4 solo: {e}")));
        rounds += 1;
        if rounds > 10 {
            fail("b4 solo: the in-memory handshake does not finish");
        }
    }
    client.set_buffer_limit(None);
    let plaintext = vec![0x5a; WRITE];
    let mut out = vec![0u8; WRITE];
    let batch_mib = 16.min(mib);
    let mut wire = Vec::with_capacity((batch_mib * (ACK_EVERY + RECORDS_PER_MIB * 64)) as usize);
    let (mut secs, mut allocs, mut got) = (0.0, 0u64, 0u64);
    for _ in 0..mib.div_ceil(batch_mib) {
        wire.clear();
        for _ in 0..batch_mib * RECORDS_PER_MIB {
            client.writer().write_all(&plaintext).expect("encrypt");
            while client.wants_write() {
                client.write_tls(&mut wire).expect("write to a Vec");
            }
        }
        let before = alloc::allocations();
        let start = Instant::now();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            server.read_tls(&mut rest).expect("read from a slice");
            server
                .process_new_packets()
                .unwrap_or_else(|e| fail(&format!("b4 solo: {e}")));
            loop {
                match server.reader().read(&mut out) {
                    Ok(0) => fail("b4 solo: the client closed"),
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => fail(&format!("b4 solo: {e}")),
                }
            }
        }
        secs += start.elapsed().as_secs_f64();
        allocs += alloc::allocations() - before;
    }
    let want = mib.div_ceil(batch_mib) * batch_mib * ACK_EVERY;
    if got != want || out.iter().any(|&b| b != 0x5a) {
        fail(&format!("b4 solo: decrypted {got} bytes, not {want}"));
    }
    let records = got / WRITE as u64;
    print_result(&[
        ("mb_per_s", got as f64 / secs / 1e6),
        ("allocs_per_record", allocs as f64 / records as f64),
    ]);
}

fn server_args(pki: &Pki, competitor: &str, mode: Mode) -> Vec<String> {
    vec![pki.arg(), competitor.into(), mode.name().into()]
}

fn hs_args(pki: &Pki, resumed: bool, warm_up: u64, measured: u64) -> Vec<String> {
    vec![
        pki.arg(),
        "hs".into(),
        if resumed { "resumed" } else { "full" }.into(),
        warm_up.to_string(),
        measured.to_string(),
    ]
}

fn bulk_args(pki: &Pki, warm_up_mib: u64, mib: u64) -> Vec<String> {
    vec![
        pki.arg(),
        "bulk".into(),
        warm_up_mib.to_string(),
        mib.to_string(),
    ]
}

/// The TLS competitors whose plain counterpart was chosen (`--competitors`).
fn chosen(config: &Config) -> Vec<&'static TlsCompetitor> {
    tls::ALL
        .iter()
        .filter(|t| config.competitors.iter().any(|c| c.name == t.base))
        .collect()
}

/// "met" or "not met" for a target, with the figures.
fn target(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn run(config: &Config, report: &mut Report) {
    let counts = counts(config);
    let competitors = chosen(config);
    let pki = Pki::create();
    // Callgrind runs every handshake some fifty times slower: quick mode leaves it out.
    let count_config = Config {
        quick: config.quick,
        reps: config.reps,
        competitors: config.competitors.clone(),
        strace: config.strace,
        callgrind: config.callgrind && !config.quick,
    };

    // Handshakes, full and resumed.
    let mut hs = [Repeats::default(), Repeats::default()];
    let mut bulk = Repeats::default();
    let mut idle = Repeats::default();
    let mut ceiling = Repeats::default();
    for rep in 0..config.reps {
        for c in &competitors {
            for (i, resumed) in [false, true].into_iter().enumerate() {
                eprintln!(
                    "suite: b4 {} handshakes rep {} {}",
                    if resumed { "resumed" } else { "full" },
                    rep + 1,
                    c.name
                );
                let (server, mut m): (Measures, Measures) = run_pair(
                    "b4",
                    &server_args(&pki, c.name, Mode::Echo),
                    &hs_args(&pki, resumed, counts.hs_warm_up, counts.hs_measured),
                    Placement::Split,
                    Trace::None,
                );
                let n = counts.hs_measured as f64;
                if let Some(a) = server.get("allocs_window") {
                    m.insert("allocs_per_hs".into(), a / n);
                }
                if let Some(cpu) = m.get("server_cpu_s").copied() {
                    m.insert("cpu_us_per_hs".into(), cpu * 1e6 / n);
                }
                hs[i].add(c.name, m);
            }
            eprintln!("suite: b4 bulk rep {} {}", rep + 1, c.name);
            let (server, mut m) = run_pair(
                "b4",
                &server_args(&pki, c.name, Mode::Sink),
                &bulk_args(&pki, counts.bulk_warm_up_mib, counts.bulk_mib),
                Placement::Split,
                Trace::None,
            );
            let records = (counts.bulk_mib * RECORDS_PER_MIB) as f64;
            if let Some(a) = server.get("allocs_window") {
                m.insert("allocs_per_record".into(), a / records);
            }
            if let Some(cpu) = m.get("server_cpu_s").copied() {
                m.insert("cpu_us_per_record".into(), cpu * 1e6 / records);
            }
            bulk.add(c.name, m);
            eprintln!("suite: b4 idle rep {} {}", rep + 1, c.name);
            let (server, _) = run_pair(
                "b4",
                &server_args(&pki, c.name, Mode::Echo),
                &[pki.arg(), "idle".into(), counts.idle.to_string()],
                Placement::Split,
                Trace::None,
            );
            let mut m = Measures::new();
            if let Some(live) = server.get("live_bytes") {
                m.insert("idle_bytes".into(), live / counts.idle as f64);
            }
            idle.add(c.name, m);
        }
        eprintln!("suite: b4 ceiling rep {}", rep + 1);
        ceiling.add(
            "ceiling",
            run_solo("b4", &[pki.arg(), counts.ceiling_mib.to_string()]),
        );
    }

    // Counts: system calls (and instructions) per handshake and per record.
    let mut hs_counts = [Vec::new(), Vec::new()];
    let mut bulk_counts = Vec::new();
    for c in &competitors {
        for (i, resumed) in [false, true].into_iter().enumerate() {
            eprintln!(
                "suite: b4 {} handshake counts {}",
                if resumed { "resumed" } else { "full" },
                c.name
            );
            hs_counts[i].push(per_message(
                &count_config,
                "b4",
                &server_args(&pki, c.name, Mode::Echo),
                &|n| hs_args(&pki, resumed, 0, n),
                counts.hs_counted,
                &format!("{}-hs-{resumed}", c.name),
            ));
        }
        eprintln!("suite: b4 bulk counts {}", c.name);
        bulk_counts.push(per_message(
            &count_config,
            "b4",
            &server_args(&pki, c.name, Mode::Sink),
            &|n| bulk_args(&pki, 1, n),
            counts.bulk_counted_mib,
            &format!("{}-bulk", c.name),
        ));
    }

    let mut text = format!(
        "## B4 — TLS\n\n\
         TLS 1.3 with an ECDSA P-256 certificate (a CA and a leaf made with rcgen at the \
         start of the run, the same files for every server). The server is the competitor, \
         in its own process; the client is a blocking rustls client (`StreamOwned` over \
         `std::net::TcpStream`, ring provider, TLS 1.3 only) in another. Competitors:\n\n{}\n\
         - **Handshakes**: one connection at a time — connect, handshake, one byte echoed \
         (so the server has finished its side), close_notify, close; {hm} handshakes after \
         {hw} of warm-up. *Full*: the client keeps no sessions. *Resumed*: the client \
         resumes from the tickets of the previous connection (rustls' default in-memory \
         store; the servers keep rustls' default session cache); every measured handshake \
         is checked to be of the kind measured. Server CPU is the server process's user + \
         system time over the measured handshakes; system calls and instructions per \
         handshake from runs of {hc} and {hc2} handshakes{instr}.\n\
         - **Bulk**: one connection; the client writes {bm} MiB in 16 KiB writes (one full \
         record each) after {bw} MiB of warm-up; the server decrypts and counts, and \
         answers one byte per MiB, which the client waits for. MB/s is 10⁶ bytes of \
         plaintext per second. Allocations per record are the server process's during the \
         measured MiB ÷ the records; system calls per record from runs of {bc} and {bc2} \
         MiB{bulk_instr}. The ceiling is rustls alone in one process: the same client and server \
         configurations in memory, the server decrypting {cm} MiB of 16 KiB records \
         (`read_tls`, `process_new_packets`, `reader().read` into a 16 KiB buffer), \
         encryption not timed.\n\
         - **Idle**: the server's live heap with {idle} connections open, each having \
         done a full handshake and echoed one byte, minus its live heap when bound, ÷ \
         {idle}.\n\n\
         The ratio is sockloop's median ÷ the competitor's (above 1: sockloop faster).\n",
        competitors
            .iter()
            .map(|c| format!("- **{}**: {}\n", c.name, c.describe))
            .collect::<String>(),
        hm = counts.hs_measured,
        hw = counts.hs_warm_up,
        hc = counts.hs_counted,
        hc2 = 2 * counts.hs_counted,
        instr = if count_config.callgrind {
            format!(
                " (instructions: {} and {})",
                (counts.hs_counted / 10).max(100),
                2 * (counts.hs_counted / 10).max(100)
            )
        } else {
            String::new()
        },
        bm = counts.bulk_mib,
        bw = counts.bulk_warm_up_mib,
        bc = counts.bulk_counted_mib,
        bc2 = 2 * counts.bulk_counted_mib,
        bulk_instr = if count_config.callgrind {
            let n = (counts.bulk_counted_mib / 10).max(100);
            format!(
                " (instructions: {n} and {} MiB; callgrind counts a large copy, which glibc \
                 makes with `rep movsb`, once per byte, and a small one by its vector moves: \
                 64 MiB copied in 16 KiB pieces counts 67 M, in 4 KiB pieces 7 M, on this \
                 machine; so a server that copies its plaintext out 16 KiB at a time counts \
                 about 14,000 more per record than one that copies the same bytes 4 KiB at a \
                 time)",
                2 * n
            )
        } else {
            String::new()
        },
        cm = counts.ceiling_mib,
        idle = counts.idle,
    );

    let mut groups = Vec::new();
    for (i, kind) in ["full", "resumed"].into_iter().enumerate() {
        let get = |name: &str, metric: &str| hs[i].get(name, metric);
        let mut rows = Vec::new();
        for (c, per) in competitors.iter().zip(&hs_counts[i]) {
            let (sys, which) = per
                .syscalls
                .as_ref()
                .map_or(("–".into(), "–".into()), |(t, w)| {
                    (format!("{t:.1}"), w.clone())
                });
            rows.push(vec![
                format!("**{}**", c.name),
                cell(get(c.name, "hs_per_s"), 0),
                ratio(get("sockloop", "hs_per_s"), get(c.name, "hs_per_s")),
                cell(get(c.name, "cpu_us_per_hs"), 0),
                sys,
                which,
                per.instructions.map_or("–".into(), |i| format!("{i:.0}")),
                cell(get(c.name, "allocs_per_hs"), 1),
            ]);
        }
        groups.push(Group {
            name: format!("{kind} handshakes"),
            bars: competitors
                .iter()
                .map(|c| bar(c.name, get(c.name, "hs_per_s")))
                .collect(),
        });
        text.push_str(&format!("\n### {kind} handshakes\n\n"));
        text.push_str(&table(
            &[
                "competitor",
                "handshakes/s",
                "sockloop ÷ this",
                "server CPU µs / handshake",
                "server syscalls / handshake",
                "which",
                "server instructions / handshake",
                "server allocs / handshake",
            ],
            &rows,
        ));
    }
    let chart = report.chart(
        "b4",
        &Chart {
            title: "B4 — TLS 1.3 handshakes, one connection at a time".into(),
            unit: "handshakes/s".into(),
            higher_is_better: true,
            groups,
        },
    );
    text.push_str(&chart);

    let ceil = ceiling.get("ceiling", "mb_per_s");
    let mut rows = Vec::new();
    for (c, per) in competitors.iter().zip(&bulk_counts) {
        let get = |metric: &str| bulk.get(c.name, metric);
        let (sys, which) = per
            .syscalls
            .as_ref()
            .map_or(("–".into(), "–".into()), |(t, w)| {
                (format!("{:.2}", t / RECORDS_PER_MIB as f64), w.clone())
            });
        rows.push(vec![
            format!("**{}**", c.name),
            cell(get("mb_per_s"), 0),
            ratio(bulk.get("sockloop", "mb_per_s"), get("mb_per_s")),
            ratio(get("mb_per_s"), ceil),
            cell(get("cpu_us_per_record"), 2),
            sys,
            which,
            per.instructions.map_or("–".into(), |i| {
                format!("{:.0}", i / RECORDS_PER_MIB as f64)
            }),
            cell(get("allocs_per_record"), 2),
        ]);
    }
    rows.push(vec![
        "*rustls in memory, decrypt only (ceiling)*".into(),
        cell(ceil, 0),
        ratio(bulk.get("sockloop", "mb_per_s"), ceil),
        "×1.00".into(),
        "–".into(),
        "–".into(),
        "–".into(),
        "–".into(),
        cell(ceiling.get("ceiling", "allocs_per_record"), 2),
    ]);
    text.push_str("\n### Bulk, one connection, 16 KiB writes\n\n");
    text.push_str(&table(
        &[
            "competitor",
            "MB/s",
            "sockloop ÷ this",
            "this ÷ ceiling",
            "server CPU µs / record",
            "server syscalls / record",
            "which (per MiB)",
            "server instructions / record",
            "server allocs / record",
        ],
        &rows,
    ));

    let rows: Vec<Vec<String>> = competitors
        .iter()
        .map(|c| {
            vec![
                format!("**{}**", c.name),
                cell(idle.get(c.name, "idle_bytes"), 0),
                ratio(
                    idle.get("sockloop", "idle_bytes"),
                    idle.get(c.name, "idle_bytes"),
                ),
            ]
        })
        .collect();
    text.push_str(&format!(
        "\n### Idle TLS connections ({} open)\n\n",
        counts.idle
    ));
    text.push_str(&table(
        &[
            "competitor",
            "heap bytes / idle TLS connection",
            "sockloop ÷ this",
        ],
        &rows,
    ));

    // The targets, against tokio-rustls and the ceiling.
    let med = |s: Option<Summary>| s.map(|s| s.median);
    let ours_hs = med(hs[0].get("sockloop", "hs_per_s"));
    let tokio_hs = med(hs[0].get("tokio-rustls", "hs_per_s"));
    let position = |name: &str| competitors.iter().position(|c| c.name == name);
    let sys_of = |name: &str| {
        position(name).and_then(|i| hs_counts[0][i].syscalls.as_ref().map(|(t, _)| *t))
    };
    let ours_bulk = med(bulk.get("sockloop", "mb_per_s"));
    let tokio_bulk = med(bulk.get("tokio-rustls", "mb_per_s"));
    let allocs = bulk.get("sockloop", "allocs_per_record").map(|s| s.max);
    let idle_bytes = med(idle.get("sockloop", "idle_bytes"));
    let both = |a: Option<f64>, b: Option<f64>, f: &dyn Fn(f64, f64) -> bool| {
        a.zip(b).map(|(a, b)| f(a, b))
    };
    text.push_str(&format!(
        "\n### Targets (issue 10)\n\n\
         - Full handshakes ≥ 1.0× tokio-rustls: {} ({}); with no more system calls per \
         handshake: {} ({} against {}).\n\
         - Bulk ≥ 1.1× tokio-rustls: {} ({}); ≥ 0.6× the decrypt-only ceiling: {} ({}).\n\
         - 0 allocations per record in steady state: {} ({} at most).\n\
         - Idle TLS connection ≤ 2 KiB of heap: {} ({} bytes).\n",
        target(both(ours_hs, tokio_hs, &|a, b| a >= b)),
        ratio(
            hs[0].get("sockloop", "hs_per_s"),
            hs[0].get("tokio-rustls", "hs_per_s")
        ),
        target(both(sys_of("sockloop"), sys_of("tokio-rustls"), &|a, b| a
            <= b + 0.05)),
        sys_of("sockloop").map_or("–".into(), |t| format!("{t:.1}")),
        sys_of("tokio-rustls").map_or("–".into(), |t| format!("{t:.1}")),
        target(both(ours_bulk, tokio_bulk, &|a, b| a >= 1.1 * b)),
        ratio(
            bulk.get("sockloop", "mb_per_s"),
            bulk.get("tokio-rustls", "mb_per_s")
        ),
        target(both(ours_bulk, med(ceil), &|a, b| a >= 0.6 * b)),
        ratio(bulk.get("sockloop", "mb_per_s"), ceil),
        target(allocs.map(|a| a == 0.0)),
        allocs.map_or("–".into(), |a| format!("{a:.2}")),
        target(idle_bytes.map(|b| b <= 2048.0)),
        idle_bytes.map_or("–".into(), |b| format!("{b:.0}")),
    ));
    report.section(text);
}
