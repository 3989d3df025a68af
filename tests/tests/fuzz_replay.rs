//! The fuzz targets' bodies (`fuzz/bodies/`, the same code cargo-fuzz runs on nightly) run here
//! on stable, in CI: over the committed seed corpus of real frames (`fuzz/seeds/<target>/`, made
//! by scapy: `fuzz/seeds/make.py`), any local corpus cargo-fuzz left (`fuzz/corpus/<target>/`),
//! and a bounded number of deterministic mutations of each (bit flips, cuts, overwritten bytes,
//! repeated and inserted runs). A body panics when a check fails, which fails the test with
//! the input's name and mutation.

#[path = "../../fuzz/bodies/checksum_update.rs"]
mod checksum_update;
#[path = "../../fuzz/bodies/control_protocol.rs"]
mod control_protocol;
#[path = "../../fuzz/bodies/dns.rs"]
mod dns;
#[path = "../../fuzz/bodies/esp.rs"]
mod esp;
#[path = "../../fuzz/bodies/nat.rs"]
mod nat;
#[path = "../../fuzz/bodies/offload.rs"]
mod offload;
#[path = "../../fuzz/bodies/pipeline.rs"]
mod pipeline;
#[path = "../../fuzz/bodies/wire_views.rs"]
mod wire_views;

use std::path::PathBuf;

/// Mutations of each seed.
const MUTATIONS: u32 = 48;

/// Every input of `target`'s corpora, by name, in a stable order.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in [
        root.join("seeds").join(target),
        root.join("corpus").join(target),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if let Ok(data) = std::fs::read(&f) {
                out.push((f.display().to_string(), data));
            }
        }
    }
    out
}

/// The `k`th deterministic mutation of `seed`.
fn mutate(seed: &[u8], k: u32) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (u64::from(k) << 17) ^ seed.len() as u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut d = seed.to_vec();
    let rounds = 1 + next() % 4;
    for _ in 0..rounds {
        let len = d.len().max(1) as u64;
        let at = (next() % len) as usize;
        match next() % 6 {
            0 => {
                if let Some(b) = d.get_mut(at) {
                    *b ^= 1 << (next() % 8);
                }
            }
            1 => d.truncate(at),
            2 => {
                if let Some(b) = d.get_mut(at) {
                    *b = [0, 0xff, 0x7f, 0x80, 1][(next() % 5) as usize];
                }
            }
            3 => {
                let run: Vec<u8> = d
                    .iter()
                    .skip(at)
                    .take(1 + (next() % 64) as usize)
                    .copied()
                    .collect();
                d.splice(at..at, run);
            }
            4 => {
                let n = 1 + (next() % 300) as usize;
                let fill = (next() & 0xff) as u8;
                d.splice(at..at, std::iter::repeat_n(fill, n));
            }
            _ => {
                if let Some(b) = d.get_mut(at) {
                    *b = b.wrapping_add(1);
                }
            }
        }
    }
    d
}

fn replay(target: &str, run: fn(&[u8])) {
    let corpus = seeds(target);
    assert!(
        !corpus.is_empty(),
        "no seeds for {target}: run fuzz/seeds/make.py"
    );
    let mut inputs = 0;
    for (name, seed) in &corpus {
        for k in 0..=MUTATIONS {
            let input = if k == 0 {
                seed.clone()
            } else {
                mutate(seed, k)
            };
            let r = std::panic::catch_unwind(|| run(&input));
            assert!(r.is_ok(), "{target}: {name}, mutation {k} failed");
            inputs += 1;
        }
    }
    eprintln!("{target}: {} seeds, {inputs} inputs", corpus.len());
}

#[test]
fn wire_views_over_the_seed_corpus() {
    replay("wire_views", wire_views::run);
}

#[test]
fn checksum_update_over_the_seed_corpus() {
    replay("checksum_update", checksum_update::run);
}

#[test]
fn offload_over_the_seed_corpus() {
    replay("offload", offload::run);
}

#[test]
fn nat_over_the_seed_corpus() {
    replay("nat", nat::run);
}

#[test]
fn esp_over_the_seed_corpus() {
    replay("esp", esp::run);
}

#[test]
fn pipeline_over_the_seed_corpus() {
    replay("pipeline", pipeline::run);
}

#[test]
fn control_protocol_over_the_seed_corpus() {
    replay("control_protocol", control_protocol::run);
}

#[test]
fn dns_over_the_seed_corpus() {
    replay("dns", dns::run);
}
