//! Feeds arbitrary bytes to ESP opening (what `underlay-in` does with a protocol-50 packet for
//! us) against a ring with one SA whose SPI and source the input may hit, and seals arbitrary
//! datagrams then opens them. Nothing may panic; a failure is one of the named drops; whatever
//! opens must come back as it was sealed.
//!
//! The body lives in `fuzz/bodies/esp.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/esp.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
