//! The packet engine. It knows no switch features: buffers, bursts, wire views, ports,
//! poll-mode workers, counters and configuration publication.

pub mod checksum;
pub mod wire;
