//! Line decoding with a configuration and a chunking drawn from the input: chunked and
//! whole decoding agree, lines stay within the maximum, and encode → decode is exact.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sockloop::fuzzing::lines_target(data);
});
