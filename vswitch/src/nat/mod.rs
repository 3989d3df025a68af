//! The gateway: routing out of a network and source NAT (masquerade) to the uplink address,
//! with connection tracking.
//!
//! * [`table`]: the session table (a protocol core: no I/O, `now` as an argument).
//! * [`translate`]: parsing and rewriting IPv4 TCP/UDP/ICMP echo, ICMP errors about a NATed
//!   flow (RFC 5508), incremental checksums (RFC 1624), partial (offloaded) checksums.
//! * [`Nat`]: the two together, one per worker: finds or creates a session for a packet and
//!   translates it in place.
//! * [`router`]: the gateway's own protocol work on frames (ARP and echo for the gateway
//!   address, TTL, ICMP time exceeded and fragmentation needed, martians).
//! * [`stage`]: the `l3-router` stage of the graph, the I/O around the cores.
//!
//! Where return traffic is handled: each worker owns its own table, and the outside ports are
//! split between workers (worker `w` of `n` takes ports `lo + w + k * n`), so the worker that
//! owns a session is known from the destination port of a returning packet alone. Placement
//! makes most hand-offs unnecessary: on a TAP uplink the kernel's automatic flow steering sends
//! a flow's packets to the queue that last transmitted that flow, which is the owner's (each
//! worker has its own queue). What lands elsewhere anyway (an AF_XDP uplink's RSS, a flow idle
//! for a while) is handed to the owner through a ring, in bursts ([`handoff`]).

pub mod handoff;
pub mod inside;
pub mod link;
pub mod router;
pub mod stage;
pub mod table;
pub mod translate;

use table::{Dir, Inserted, Inside, Outside, State, Table};
use translate::{Flow, Kind, NatDrop};

/// IP protocol numbers.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// Idle timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP, SYN seen one way only (RFC 5382 REQ-5's transitory timeout, 4 minutes).
    pub tcp_syn: u32,
    /// TCP, established (RFC 5382 REQ-5: at least 2 hours 4 minutes).
    pub tcp_established: u32,
    /// TCP, FIN seen one way (transitory, 4 minutes).
    pub tcp_fin: u32,
    /// TCP, FIN seen both ways (2 MSL, 4 minutes, RFC 7857 section 2.2).
    pub tcp_time_wait: u32,
    /// TCP, after a RST (kept a while so that a stray or forged RST does not free the
    /// mapping at once, RFC 7857 section 2.2).
    pub tcp_rst: u32,
    /// UDP (RFC 4787 REQ-5: at least 2 minutes, 5 recommended).
    pub udp: u32,
    /// ICMP echo (RFC 5508 REQ-1: at least 60 seconds).
    pub icmp: u32,
}

impl Timeouts {
    /// The defaults, from the RFCs above.
    pub const DEFAULT: Timeouts = Timeouts {
        tcp_syn: 240,
        tcp_established: 7440,
        tcp_fin: 240,
        tcp_time_wait: 240,
        tcp_rst: 240,
        udp: 300,
        icmp: 60,
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// NAT settings (`vswitchctl nat set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Lowest outside port (and ICMP identifier) handed out.
    pub port_lo: u16,
    /// Highest outside port handed out.
    pub port_hi: u16,
    /// Most sessions per worker (the table is allocated at this size).
    pub sessions: u32,
}

/// Default most sessions per worker.
pub const DEFAULT_SESSIONS: u32 = 65_536;

/// Default outside port range (Linux's ephemeral range).
pub const DEFAULT_PORTS: (u16, u16) = (32768, 60999);

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            timeouts: Timeouts::DEFAULT,
            port_lo: DEFAULT_PORTS.0,
            port_hi: DEFAULT_PORTS.1,
            sessions: DEFAULT_SESSIONS,
        }
    }
}

/// What the NAT core counts (plain numbers: the stage mirrors them into counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Sessions created.
    pub created: u64,
    /// Embryonic sessions evicted to make room.
    pub evicted: u64,
}

/// A small fast PRNG (xorshift64*) for source ports; not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded with `seed` (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x2545_f491_4f6c_dd1d
        } else {
            seed
        })
    }

    /// The next number.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A seed from the clock and an address (differs between workers and runs).
pub fn seed(salt: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = t ^ salt.rotate_left(32) ^ (&salt as *const u64 as u64);
    Rng::new(x).next_u64()
}

/// One worker's NAT: its session table and its share of the outside ports.
pub struct Nat {
    /// The sessions.
    pub table: Table,
    /// Settings.
    pub cfg: NatConfig,
    /// This worker's index among `share`.
    pub worker: u16,
    /// How many workers split the port range.
    pub workers: u16,
    /// A UDP port never handed out (the uplink's VXLAN port: what arrives there is VXLAN).
    pub reserved_udp: Option<u16>,
    rng: Rng,
    /// Counts.
    pub stats: NatStats,
}

/// Port picks tried at random before a linear search.
const RANDOM_TRIES: u32 = 32;
/// Most ports a linear search looks at (a full range fails after this).
const SCAN_LIMIT: u32 = 4096;

impl Nat {
    /// A NAT with room for `capacity` sessions.
    pub fn new(capacity: u32, seed: u64) -> Nat {
        let mut rng = Rng::new(seed);
        let table_seed = rng.next_u64();
        Nat {
            table: Table::new(capacity, table_seed),
            cfg: NatConfig::default(),
            worker: 0,
            workers: 1,
            reserved_udp: None,
            rng,
            stats: NatStats::default(),
        }
    }

    /// The worker that owns outside `port` (see the module doc).
    #[inline]
    pub fn owner(&self, port: u16) -> u16 {
        if self.workers <= 1 || port < self.cfg.port_lo || port > self.cfg.port_hi {
            return self.worker;
        }
        (port - self.cfg.port_lo) % self.workers
    }

    /// A free outside port for `proto` on `ip`, chosen at random in this worker's share.
    pub fn alloc_port(&mut self, proto_: u8, ip: u32) -> Option<u16> {
        let (lo, hi) = (u32::from(self.cfg.port_lo), u32::from(self.cfg.port_hi));
        let (w, n) = (u32::from(self.worker), u32::from(self.workers.max(1)));
        let first = lo + w;
        if first > hi {
            return None;
        }
        let count = (hi - first) / n + 1;
        let port_at = |k: u32| -> u16 {
            // At most `hi`, which is a u16.
            #[allow(clippy::cast_possible_truncation)]
            let p = (first + (k % count) * n) as u16;
            p
        };
        let reserved = self.reserved_udp.filter(|_| proto_ == proto::UDP);
        let free = |t: &Table, p: u16| {
            Some(p) != reserved
                && !t.outside_taken(&Outside {
                    proto: proto_,
                    ip,
                    port: p,
                })
        };
        for _ in 0..RANDOM_TRIES {
            #[allow(clippy::cast_possible_truncation)]
            let p = port_at((self.rng.next_u64() % u64::from(count)) as u32);
            if free(&self.table, p) {
                return Some(p);
            }
        }
        #[allow(clippy::cast_possible_truncation)]
        let start = (self.rng.next_u64() % u64::from(count)) as u32;
        (0..count.min(SCAN_LIMIT))
            .map(|k| port_at(start.wrapping_add(k)))
            .find(|&p| free(&self.table, p))
    }

    /// The inside key of an outbound flow on network `net`.
    #[inline]
    pub fn inside_key(f: &Flow, net: u16) -> Inside {
        Inside {
            net,
            proto: f.proto,
            ip: f.src,
            port: f.sport,
        }
    }

    /// The outside key of an inbound flow.
    #[inline]
    pub fn outside_key(f: &Flow) -> Outside {
        Outside {
            proto: f.proto,
            ip: f.dst,
            port: f.dport,
        }
    }

    /// Finds or creates the session of outbound flow `f` (parsed from `frame`, from network
    /// `net`, inside key hash `h`) and translates the frame's source to `ext_ip` and the
    /// session's port. Returns the session's slot.
    pub fn outbound(
        &mut self,
        frame: &mut [u8],
        f: &Flow,
        net: u16,
        h: u32,
        ext_ip: u32,
        now: u64,
    ) -> Result<u32, NatDrop> {
        if let Kind::IcmpError(inner) = f.kind {
            // An error about an inbound flow: the embedded packet went to the inside endpoint.
            let k = Inside {
                net,
                proto: inner.proto,
                ip: inner.dst,
                port: inner.dport,
            };
            let h = self.table.hash_in(&k);
            let i = self.table.find_out(&k, h, now).ok_or(NatDrop::NoSession)?;
            let s = *self.table.get(i);
            translate::icmp_error_out(frame, f, &inner, s.ext_ip, s.ext_port)?;
            return Ok(i);
        }
        let k = Self::inside_key(f, net);
        let t = self.cfg.timeouts;
        let i = match self.table.find_out(&k, h, now) {
            Some(i) => i,
            None => {
                let state = match f.proto {
                    proto::TCP if f.tcp_flags & table::tcp_flags::SYN == 0 => {
                        return Err(NatDrop::TcpNotSyn)
                    }
                    proto::TCP => State::SynSent,
                    _ => State::New,
                };
                let port = self
                    .alloc_port(f.proto, ext_ip)
                    .ok_or(NatDrop::PortsExhausted)?;
                let o = Outside {
                    proto: f.proto,
                    ip: ext_ip,
                    port,
                };
                match self.table.insert(k, o, state, now, &t) {
                    Inserted::Ok(i, evicted) => {
                        self.stats.created += 1;
                        self.stats.evicted += u64::from(evicted);
                        i
                    }
                    Inserted::Full => return Err(NatDrop::TableFull),
                }
            }
        };
        self.table.track(i, Dir::Out, f.tcp_flags, now, &t);
        let s = self.table.get_mut(i);
        s.remote_ip = f.dst;
        s.remote_port = f.dport;
        let (ip, port) = (s.ext_ip, s.ext_port);
        translate::rewrite(frame, f, translate::Side::Src, ip, port)?;
        Ok(i)
    }

    /// Finds the session of inbound flow `f` (outside key hash `h`) and translates the
    /// frame's destination back to the inside endpoint. Returns the session's slot.
    pub fn inbound(
        &mut self,
        frame: &mut [u8],
        f: &Flow,
        h: u32,
        now: u64,
    ) -> Result<u32, NatDrop> {
        if let Kind::IcmpError(inner) = f.kind {
            // An error about an outbound flow: the embedded packet came from the mapping.
            let k = Outside {
                proto: inner.proto,
                ip: inner.src,
                port: inner.sport,
            };
            let h = self.table.hash_out(&k);
            let i = self.table.find_in(&k, h, now).ok_or(NatDrop::NoSession)?;
            let s = *self.table.get(i);
            translate::icmp_error_in(frame, f, &inner, s.int_ip, s.int_port)?;
            return Ok(i);
        }
        let k = Self::outside_key(f);
        let i = self.table.find_in(&k, h, now).ok_or(NatDrop::NoSession)?;
        let t = self.cfg.timeouts;
        self.table.track(i, Dir::In, f.tcp_flags, now, &t);
        let s = self.table.get_mut(i);
        s.remote_ip = f.src;
        s.remote_port = f.sport;
        let (ip, port) = (s.int_ip, s.int_port);
        translate::rewrite(frame, f, translate::Side::Dst, ip, port)?;
        Ok(i)
    }
}

#[cfg(test)]
mod tests;
