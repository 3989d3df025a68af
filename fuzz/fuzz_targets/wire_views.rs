//! Feeds arbitrary bytes to every checked constructor and `Repr::parse` in `dataplane::wire`
//! (our VLAN, VXLAN and ESP views and the smoltcp views we re-export). Nothing may panic; every
//! successful parse is emitted into a fresh buffer and parsed again, and the two `Repr`s (and,
//! where the format has no slack, the bytes) must be identical.
//!
//! The body lives in `fuzz/bodies/wire_views.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/wire_views.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
