//! The switch pipeline over arbitrary frames: three in-memory ports on one network and one port
//! on no network. Nothing may panic, every buffer comes back, and the accounting holds:
//! frames received = forwarded + flooded + drops.
//!
//! The body lives in `fuzz/bodies/pipeline.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/pipeline.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
