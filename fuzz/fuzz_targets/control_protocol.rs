//! The control protocol's decoding: arbitrary request lines through the request parser and every
//! command's argument types, and the user-value parsers. Nothing may panic.
//!
//! The body lives in `fuzz/bodies/control_protocol.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/control_protocol.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
