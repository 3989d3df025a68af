//! Checks the RFC 1624 incremental updates in `dataplane::checksum` against full recomputation
//! on arbitrary data: `[checksum word index, field word index, new value (2 or 4 bytes)...,
//! data...]`.
//!
//! The body lives in `fuzz/bodies/checksum_update.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/checksum_update.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
