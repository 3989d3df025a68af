//! The virtio-net offload logic and the partial-checksum completion of AF_XDP ports on veth, on
//! arbitrary input (what a container may hand over):
//! `[12-byte virtio-net header, max_frame (2 bytes), frame...]`. Nothing may panic; a plan that
//! is accepted must write every segment into exactly `seg_len` bytes, each segment no longer than
//! `max_frame`, and the segments' TCP payloads must add up to the plan's payload.
//!
//! The body lives in `fuzz/bodies/offload.rs`, which `tests/tests/fuzz_replay.rs` also runs on
//! stable over the seed corpus and its mutations.
#![no_main]

#[path = "../bodies/offload.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
