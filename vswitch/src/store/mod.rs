//! The multi-host control plane on etcd (`vswitchd --store etcd://HOST:PORT --host-id NAME`):
//! every host publishes itself (underlay address, on a lease it keeps alive), its memberships
//! and its endpoints; every host watches the prefix and programs peers and remote MACs from what
//! the others publish; global networks are claimed in the store so names, VNIs and subnets stay
//! unique across hosts.
//!
//! - [`core`]: the protocol core (keys, view, what the store asks of a host, batches); no I/O.
//! - [`etcd`] and [`http`]: etcd 3.4's JSON gateway over a minimal HTTP/1.1 client.
//! - [`agent`]: the thread in the daemon that joins them.

pub mod agent;
pub mod base64;
pub mod core;
pub mod etcd;
pub mod http;
