//! The packet engine. It knows no switch features: buffers, bursts, wire views, ports,
//! poll-mode workers, counters and configuration publication.
//!
//! A frame's life: a [`port::Port`] receives a [`burst::Burst`] of [`pool::Buf`]s from the
//! [`pool::Pool`] through the worker's [`pool::PoolCache`]; the [`worker::Worker`] hands the
//! burst to its [`worker::Pipeline`] (the features, in the `vswitch` crate), which enqueues each
//! buffer on an output port or frees it and counts why; the worker flushes the outputs.

pub mod burst;
pub mod capture;
pub mod checksum;
pub mod counters;
pub mod graph;
pub mod gro;
pub mod handoff;
pub mod hugemem;
pub mod offload;
pub mod pool;
pub mod port;
pub mod ring;
pub mod swoffload;
pub mod sys;
pub mod wire;
pub mod worker;

/// Parses a core list such as `1,3-5` into core numbers.
pub fn parse_core_list(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("'{s}' is not a core list; write numbers and ranges such as 1,3-5");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Re-exported so that the daemon names cores with the same type the workers pin to.
pub use core_affinity;
