//! 802.1Q trunks: a trunk port carries tagged frames, and each subinterface `PARENT.VID` is a
//! logical port of its own in some network. On the way in, the tag is checked and popped and the
//! frame enters the bridge on the subinterface; on the way out of a subinterface, the tag is
//! pushed and the frame leaves through the parent.
//!
//! Pop and push move only the 12 MAC bytes (the tag is taken from or put into the buffer's
//! headroom); the priority (PCP) of a popped tag is kept in the buffer's metadata and written
//! into the tag pushed on the way out. Rules for bad input, each a named drop: VID 0 (priority
//! tagged) is treated as untagged; VID 4095, an unknown VID, a tag on an access port, 802.1ad or
//! legacy Q-in-Q outer tags and stacked tags are dropped, as are tagged frames over MTU + 18
//! bytes. A frame never reaches the wrong VLAN.

use crate::config::PortConf;
use crate::graph::{Env, Io, Node, Stage};
use crate::trace::Detail;
use dataplane::burst::{Burst, Next};
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::named_counters;
use dataplane::pool::{Buf, Pool};
use dataplane::port::PortId;
use dataplane::wire::be16_at;

named_counters! {
    /// Why the VLAN input stage drops a frame.
    pub enum VlanDrop {
        /// 802.1Q tag cut short (frame under 18 bytes).
        Truncated => "vlan_truncated",
        /// Tagged frame on an access port (VID 0, priority-tagged, is accepted as untagged).
        TagOnAccess => "vlan_tag_on_access",
        /// Tagged with a VID that has no subinterface on this trunk.
        UnknownVid => "vlan_unknown_vid",
        /// Tagged with the reserved VID 4095.
        ReservedVid => "vlan_reserved_vid",
        /// Two or more stacked tags (Q-in-Q inside 802.1Q).
        Stacked => "vlan_stacked",
        /// An 802.1ad (0x88A8) or legacy Q-in-Q (0x9100) outer tag.
        Qinq => "vlan_qinq",
        /// Untagged frame on a trunk without a native VLAN.
        UntaggedOnTrunk => "vlan_untagged_on_trunk",
        /// Tagged frame longer than the trunk's MTU + 18 (header and tag).
        Oversize => "vlan_oversize",
        /// Untagged frame longer than its port's MTU + 14 (a container that raised its own
        /// MTU above the port's; a veth drops these too). A TCP super-frame is judged by the
        /// segments it will be cut into.
        RxOversize => "rx_oversize",
    }
}

/// The VLAN input stage: every frame from a port other than the uplink passes here first and
/// leaves for the bridge on the (logical) port it belongs to.
pub struct VlanIn {
    /// The buffer pool (held, so that running clones no `Arc`: no shared atomic per burst).
    pool: std::sync::Arc<dataplane::pool::Pool>,
    drops: Counters<VlanDrop>,
}

impl Stage for VlanIn {
    const NAME: &'static str = "vlan-input";

    fn new(env: &mut Env<'_>) -> VlanIn {
        VlanIn {
            pool: env.pool.clone(),
            drops: env.layout.register(Self::NAME, CounterKind::Drop),
        }
    }

    #[inline]
    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        _frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    ) {
        let pool = &*self.pool;
        let cfg = io.cfg;
        let bridge = Next::to(Node::Bridge as u16, 0);
        // A network with a gateway: the router sees its frames first (`nat::stage::entry`).
        let gateways = !cfg.gateways.is_empty();
        // The ingress port's configuration, looked up once per run of frames from one port
        // (a received burst is one port's).
        // With it, whether the port is an access port and the longest untagged frame it takes.
        let mut cur = (PortId::MAX, None, false, usize::MAX);
        for (mut b, _) in input.drain_next() {
            let port = pool.port(&b);
            if port != cur.0 {
                let pc = cfg.port(port);
                let access = pc.is_some_and(|p| !p.is_trunk());
                let max = pc
                    .filter(|p| p.mtu > 0)
                    .map_or(usize::MAX, |p| p.mtu as usize + ETH_HDR);
                cur = (port, pc, access, max);
            }
            let Some(pc) = cur.1 else {
                // Unconfigured: the bridge drops it by name.
                let _ = out.push_next(b, bridge);
                continue;
            };
            // Fast path, the common case: an untagged frame on an access port enters the bridge
            // on that port as it is (what `ingress` decides, without its call).
            let d = pool.data(&b);
            if cur.2 && be16_at(d, 12).is_some_and(|e| !is_tpid(e)) {
                if d.len() > cur.3 && !fits_mtu(pool, &b, pc.mtu, ETH_HDR) {
                    io.drop_buf::<T>(Self::NAME, b, self.drops.index(VlanDrop::RxOversize));
                    continue;
                }
                io.rec::<T>(Self::NAME, &b, Detail::VlanIn { vid: 0, port });
                let next = if gateways {
                    crate::nat::stage::entry(cfg, port, pool.data(&b)).unwrap_or(bridge)
                } else {
                    bridge
                };
                // Cannot fail: the output holds no more than the input did.
                let _ = out.push_next(b, next);
                continue;
            }
            // What the trace shows: the tag as it came (read before the pop).
            let vid = if T && be16_at(pool.data(&b), 12) == Some(TPID_8021Q) {
                be16_at(pool.data(&b), 14).map_or(0, |t| t & 0x0fff)
            } else {
                0
            };
            match ingress(pool, port, pc, &mut b) {
                Ok(to) => {
                    if to != port {
                        let c = io.cx.stats.port(to);
                        c.rx_packets.inc();
                        c.rx_bytes.add(pool.len(&b) as u64);
                        pool.set_port(&mut b, to);
                    }
                    io.rec::<T>(Self::NAME, &b, Detail::VlanIn { vid, port: to });
                    // A network with a gateway: the router sees its frames first.
                    let next = if gateways {
                        crate::nat::stage::entry(cfg, to, pool.data(&b)).unwrap_or(bridge)
                    } else {
                        bridge
                    };
                    // Cannot fail: the output holds no more than the input did.
                    let _ = out.push_next(b, next);
                }
                Err(why) => io.drop_buf::<T>(Self::NAME, b, self.drops.index(why)),
            }
        }
    }
}

pub use dataplane::wire::vlan::{is_tpid, TPID_8021AD, TPID_8021Q, TPID_QINQ_LEGACY as TPID_QINQ};

/// Bytes of Ethernet header plus one tag.
const TAGGED_HDR: usize = 18;

/// Classifies a frame received on physical port `port` (configured as `pc`): returns the port
/// it enters the bridge on, after popping its tag, or why it is dropped. Frames too short to
/// have an EtherType pass through untouched (the bridge drops them by name).
#[inline(always)]
pub fn ingress(pool: &Pool, port: PortId, pc: &PortConf, b: &mut Buf) -> Result<PortId, VlanDrop> {
    let d = pool.data(b);
    let Some(ethertype) = be16_at(d, 12) else {
        return Ok(port);
    };
    let untagged = |pc: &PortConf| {
        if pc.is_trunk() && pc.net.is_none() {
            Err(VlanDrop::UntaggedOnTrunk)
        } else {
            Ok(port)
        }
    };
    match ethertype {
        TPID_8021Q => {
            let (Some(tci), Some(inner)) = (be16_at(d, 14), be16_at(d, 16)) else {
                return Err(VlanDrop::Truncated);
            };
            if is_tpid(inner) {
                return Err(VlanDrop::Stacked);
            }
            let vid = tci & 0x0fff;
            if vid == 0x0fff {
                return Err(VlanDrop::ReservedVid);
            }
            // A TCP super-frame (from a TAP with offloads) is judged by the segments it will be
            // cut into, each of which must fit the MTU as a frame would.
            if !fits_mtu(pool, b, pc.mtu, TAGGED_HDR) {
                return Err(VlanDrop::Oversize);
            }
            let target = if vid == 0 {
                untagged(pc)?
            } else if !pc.is_trunk() {
                return Err(VlanDrop::TagOnAccess);
            } else {
                pc.vlan_port(vid).ok_or(VlanDrop::UnknownVid)?
            };
            pop(pool, b);
            pool.set_pcp(b, (tci >> 13) as u8);
            Ok(target)
        }
        TPID_8021AD | TPID_QINQ => Err(VlanDrop::Qinq),
        _ => {
            let to = untagged(pc)?;
            if !fits_mtu(pool, b, pc.mtu, ETH_HDR) {
                return Err(VlanDrop::RxOversize);
            }
            Ok(to)
        }
    }
}

/// Removes the tag of a tagged frame: the MAC addresses move 4 bytes up, over it.
#[inline]
pub fn pop(pool: &Pool, b: &mut Buf) -> bool {
    let d = pool.data_mut(b);
    if d.len() < TAGGED_HDR {
        return false;
    }
    d.copy_within(0..12, 4);
    pool.trim_front(b, 4)
}

/// Inserts a tag with `vid` and `pcp` after the MAC addresses, using the headroom; `false` if
/// the frame has no headroom or no MAC addresses.
#[inline]
pub fn push(pool: &Pool, b: &mut Buf, vid: u16, pcp: u8) -> bool {
    if pool.len(b) < 12 {
        return false;
    }
    let Some(d) = pool.prepend(b, 4) else {
        return false;
    };
    d.copy_within(4..16, 0);
    let tci = (u16::from(pcp & 7) << 13) | (vid & 0x0fff);
    d[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
    d[14..16].copy_from_slice(&tci.to_be_bytes());
    true
}

/// Bytes of an untagged Ethernet header.
pub const ETH_HDR: usize = 14;

/// Whether `b` fits a port of MTU `mtu` (0: any) with `hdr` bytes of link header: by its
/// length, or, for a TCP super-frame, by the length of each segment it will be cut into.
#[inline]
pub fn fits_mtu(pool: &Pool, b: &Buf, mtu: u32, hdr: usize) -> bool {
    mtu == 0 || pool.len(b) <= mtu as usize + hdr || gso_fits(pool, b, mtu as usize + hdr)
}

/// Whether `b` is a TCP super-frame whose segments are each at most `max` bytes long.
#[cold]
fn gso_fits(pool: &Pool, b: &Buf, max: usize) -> bool {
    let o = pool.offload(b);
    o.is_tcp_gso() && dataplane::offload::TcpSegments::plan(pool.data(b), &o, max).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NO_PORT;
    use dataplane::pool::PoolCache;
    use std::sync::Arc;

    const UNTAGGED: [u8; 18] = [
        0x02, 0, 0, 0, 0, 0x0b, // dst
        0x02, 0, 0, 0, 0, 0x0a, // src
        0x08, 0x00, // IPv4
        0xde, 0xad, 0xbe, 0xef,
    ];
    // The same frame tagged VID 10 (0x00a), PCP 5: TCI 0xa00a.
    const TAGGED: [u8; 22] = [
        0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x81, 0x00, 0xa0, 0x0a, 0x08, 0x00, 0xde,
        0xad, 0xbe, 0xef,
    ];

    fn trunk(native: Option<u16>) -> PortConf {
        let mut map = vec![NO_PORT; 4096];
        map[10] = 7;
        PortConf {
            net: native,
            mtu: 1500,
            vlans: Some(Arc::from(map)),
            ..Default::default()
        }
    }

    fn run(pc: &PortConf, frame: &[u8]) -> (Result<PortId, VlanDrop>, Vec<u8>, u8) {
        let pool = Pool::new(64).unwrap();
        let mut cache = PoolCache::new(pool.clone());
        let mut b = cache.alloc().unwrap();
        assert!(pool.fill(&mut b, frame));
        let r = ingress(&pool, 3, pc, &mut b);
        let out = (r, pool.data(&b).to_vec(), pool.pcp(&b));
        cache.free(b);
        out
    }

    /// A tagged (VID 10) TCP/IPv4 super-frame of `payload` bytes, with the offload facts a TAP
    /// gives it for MSS `mss`, judged by `ingress` on the 1500-byte trunk.
    fn super_frame(payload: usize, mss: u16) -> Result<PortId, VlanDrop> {
        use dataplane::offload::{VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4};
        let mut f = TAGGED[..18].to_vec();
        let ip_len = u16::try_from(20 + 20 + payload).unwrap();
        f.extend_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f[18 + 2..18 + 4].copy_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&[
            0x04, 0xd2, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff,
        ]);
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.resize(f.len() + payload, 0x5a);
        let pool = Pool::with_large(64, 1).unwrap();
        let mut b = pool.alloc_large().unwrap();
        assert!(pool.fill(&mut b, &f));
        pool.set_offload(
            &mut b,
            VnetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
                hdr_len: 58,
                gso_size: mss,
                csum_start: 38,
                csum_offset: 16,
                ..Default::default()
            },
        );
        let r = ingress(&pool, 3, &trunk(None), &mut b);
        pool.free_shared(b);
        r
    }

    #[test]
    fn a_super_frame_is_judged_by_its_segments_against_the_mtu() {
        // 1460-byte segments make 1518-byte tagged frames: exactly MTU 1500 + 18.
        assert_eq!(super_frame(20_000, 1460), Ok(7));
        assert_eq!(super_frame(20_000, 1461), Err(VlanDrop::Oversize));
    }

    #[test]
    fn pops_a_known_vid_onto_its_subinterface_keeping_pcp() {
        assert_eq!(run(&trunk(None), &TAGGED), (Ok(7), UNTAGGED.to_vec(), 5));
    }

    #[test]
    fn push_restores_the_exact_tagged_bytes() {
        let pool = Pool::new(64).unwrap();
        let mut cache = PoolCache::new(pool.clone());
        let mut b = cache.alloc().unwrap();
        assert!(pool.fill(&mut b, &UNTAGGED));
        assert!(push(&pool, &mut b, 10, 5));
        assert_eq!(pool.data(&b), &TAGGED);
        assert!(pop(&pool, &mut b));
        assert_eq!(pool.data(&b), &UNTAGGED);
        cache.free(b);
    }

    #[test]
    fn untagged_frames_go_to_the_native_vlan_or_are_dropped() {
        assert_eq!(run(&trunk(Some(1)), &UNTAGGED).0, Ok(3));
        assert_eq!(
            run(&trunk(None), &UNTAGGED).0,
            Err(VlanDrop::UntaggedOnTrunk)
        );
        assert_eq!(run(&PortConf::access(Some(1), 10), &UNTAGGED).0, Ok(3));
    }

    #[test]
    fn priority_tagged_frames_count_as_untagged() {
        let mut f = TAGGED;
        f[14..16].copy_from_slice(&0xa000u16.to_be_bytes());
        assert_eq!(
            run(&PortConf::access(Some(1), 10), &f),
            (Ok(3), UNTAGGED.to_vec(), 5)
        );
        assert_eq!(run(&trunk(Some(1)), &f).0, Ok(3));
        assert_eq!(run(&trunk(None), &f).0, Err(VlanDrop::UntaggedOnTrunk));
    }

    #[test]
    fn bad_tags_are_dropped_by_name() {
        let with = |at: usize, v: u16| {
            let mut f = TAGGED.to_vec();
            f[at..at + 2].copy_from_slice(&v.to_be_bytes());
            f
        };
        assert_eq!(
            run(&PortConf::access(Some(1), 10), &TAGGED).0,
            Err(VlanDrop::TagOnAccess)
        );
        assert_eq!(
            run(&trunk(None), &with(14, 20)).0,
            Err(VlanDrop::UnknownVid)
        );
        assert_eq!(
            run(&trunk(None), &with(14, 0x0fff)).0,
            Err(VlanDrop::ReservedVid)
        );
        assert_eq!(
            run(&trunk(None), &with(16, TPID_8021Q)).0,
            Err(VlanDrop::Stacked)
        );
        assert_eq!(
            run(&trunk(None), &with(12, TPID_8021AD)).0,
            Err(VlanDrop::Qinq)
        );
        assert_eq!(
            run(&trunk(None), &with(12, TPID_QINQ)).0,
            Err(VlanDrop::Qinq)
        );
        assert_eq!(run(&trunk(None), &TAGGED[..16]).0, Err(VlanDrop::Truncated));
        let mut big = TAGGED.to_vec();
        big.resize(1500 + 18 + 1, 0);
        assert_eq!(run(&trunk(None), &big).0, Err(VlanDrop::Oversize));
        big.truncate(1500 + 18);
        assert_eq!(run(&trunk(None), &big).0, Ok(7));
    }
}
