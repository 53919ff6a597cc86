//! A sequence of DataReader calls chosen by the input, each mirrored by a DataWriter
//! that must reproduce the bytes read.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sockloop::fuzzing::data_reader_target(data);
});
