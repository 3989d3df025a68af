//! The switch: features as pipeline stages over the `dataplane` engine, and the `vswitchd`
//! daemon that wires ports, workers and stages together and serves the control socket.

pub mod bridge;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod demo;
pub mod dns;
pub mod esp;
pub mod graph;
pub mod host;
pub mod nat;
pub mod neigh;
pub mod output;
pub mod ping;
pub mod pipeline;
pub mod service;
pub mod store;
pub mod testbed;
pub mod trace;
pub mod vlan;
pub mod vxlan;
