//! Criterion benchmarks and the testbed harness live in `benches/`.

pub mod testbed;
