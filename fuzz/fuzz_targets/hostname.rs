//! Host-name parsing: never panics; an accepted name keeps its raw text, and its
//! canonical form parses again to the same host name of the same kind.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(host) = sockloop::HostName::new(text) {
        assert_eq!(host.raw_name(), text);
        let again = sockloop::HostName::new(host.canonical_name()).expect("canonical form parses");
        assert_eq!(again, host);
        assert_eq!(again.kind(), host.kind());
        assert_eq!(again.canonical_name(), host.canonical_name());
        assert_eq!(host.ip().is_some(), host.kind() != sockloop::HostNameType::DomainName);
    }
});
