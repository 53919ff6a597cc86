//! Length-prefixed decoding with a configuration and a chunking drawn from the input:
//! chunked and whole decoding agree, and every frame encodes back to its bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sockloop::fuzzing::length_prefixed_target(data);
});
