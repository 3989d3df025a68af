//! Feeds arbitrary frames to NAT (`vswitch::nat`): parsing, outbound and inbound translation,
//! ICMP errors, partial checksums. Nothing may panic, and a frame whose IPv4 header checksum
//! verified before translation must verify after it (incremental updates keep a correct
//! checksum correct).
//!
//! The body lives in `fuzz/bodies/nat.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/nat.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
