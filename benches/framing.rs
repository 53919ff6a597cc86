//! Side by side: sockloop's `LengthPrefixed` against tokio-util's `LengthDelimitedCodec`,
//! decoding and encoding the same stream of 64-byte frames (4-byte big-endian length).
//!
//! Run with `cargo bench -p sockloop-bench --bench framing`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sockloop::{Decoded, Decoder, Encoder, LengthPrefixed};
use tokio_util::codec::{Decoder as _, Encoder as _, LengthDelimitedCodec};

const FRAMES: usize = 10_000;
const PAYLOAD: usize = 64;

fn stream() -> Vec<u8> {
    let mut codec = LengthPrefixed::new();
    let mut wire = Vec::with_capacity(FRAMES * (PAYLOAD + 4));
    for i in 0..FRAMES {
        codec.encode(&[i as u8; PAYLOAD], &mut wire).unwrap();
    }
    wire
}

fn decode(c: &mut Criterion) {
    let wire = stream();
    let mut group = c.benchmark_group("decode 64-byte length-prefixed frames");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("sockloop LengthPrefixed", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |input| {
                let mut codec = LengthPrefixed::new();
                let mut buf = &input[..];
                let mut n = 0;
                while let Ok(Decoded::Frame { frame, consumed }) = codec.decode(buf) {
                    black_box(&buf[frame]);
                    buf = &buf[consumed..];
                    n += 1;
                }
                assert_eq!(n, FRAMES);
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("tokio-util LengthDelimitedCodec", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |input| {
                let mut codec = LengthDelimitedCodec::new();
                let mut n = 0;
                while let Some(frame) = codec.decode(input).unwrap() {
                    black_box(frame);
                    n += 1;
                }
                assert_eq!(n, FRAMES);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let payload = [7u8; PAYLOAD];
    let mut group = c.benchmark_group("encode 64-byte length-prefixed frames");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("sockloop LengthPrefixed", |b| {
        let mut dst = Vec::with_capacity(FRAMES * (PAYLOAD + 4));
        b.iter(|| {
            dst.clear();
            let mut codec = LengthPrefixed::new();
            for _ in 0..FRAMES {
                codec.encode(black_box(&payload), &mut dst).unwrap();
            }
            black_box(&dst);
        })
    });
    group.bench_function("tokio-util LengthDelimitedCodec", |b| {
        let mut dst = BytesMut::with_capacity(FRAMES * (PAYLOAD + 4));
        let frame = Bytes::copy_from_slice(&payload);
        b.iter(|| {
            dst.clear();
            let mut codec = LengthDelimitedCodec::new();
            for _ in 0..FRAMES {
                codec.encode(black_box(frame.clone()), &mut dst).unwrap();
            }
            black_box(&dst);
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
