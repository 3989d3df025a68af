//! The testbed harness: builds namespaces and veth pairs made for one run, measures a generator
//! alone (the ceiling) and then each contender on the same veth pairs with the same generator and
//! sink, and reports medians with min and max. The binary is `benches/src/bin/testbed.rs`.

pub mod contenders;
pub mod nat;
pub mod net;
pub mod overlay;
pub mod publish;
pub mod report;
pub mod soak;
pub mod traffic;
