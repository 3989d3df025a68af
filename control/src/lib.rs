//! The control protocol shared by `vswitchd` and `vswitchctl`, a blocking client, and
//! parsing helpers for the values users type (MAC addresses, names).
//!
//! This crate has no dependency on the dataplane: scripts and other tools can link it alone.

pub mod client;
pub mod engine;
pub mod pcap;
pub mod proto;
pub mod text;
