//! Feeds arbitrary DNS messages to the gateway's embedded DNS (`vswitch::dns`): nothing may
//! panic, and every answer is a well-formed reply.
//!
//! The body lives in `fuzz/bodies/dns.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/dns.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
