//! The gateway's embedded DNS: UDP queries to a network's gateway address are answered in the
//! dataplane, in place, from the names registered on that network (Docker's embedded DNS does
//! the same job at 127.0.0.11 inside each container).
//!
//! What a query gets (a protocol core: no I/O, the frame rewritten in place):
//! * a name registered on the network (an endpoint, `vswitchctl endpoint add`; a service, its
//!   VIP or, with `--endpoint-mode dnsrr`, every backend's address in a shuffled order): its A
//!   records; asked for another type (AAAA, MX...), an empty answer (NOERROR, no data);
//! * a name in the network's own domain that is not registered (a single label such as `web`,
//!   or anything ending in `.<network name>`): NXDOMAIN;
//! * any other name: REFUSED. The switch is not a recursive resolver and does not forward
//!   (a resolver that gets REFUSED moves on to its next `nameserver`), so a container that
//!   should also resolve the Internet lists the host's resolver after the gateway;
//! * a well-formed message that is not a plain query: NOTIMP (another opcode) or FORMERR (not
//!   exactly one question, or answers in a query); anything that is not a DNS message at all
//!   is dropped and counted (`dns_malformed`), as is a response sent to us (`dns_not_query`).
//!
//! Names are per network (`Names` is indexed by network id): a name resolves only inside the
//! networks it was registered on, as Docker's scoping does. Matching is case-insensitive
//! (RFC 4343). Answers fit in 512 bytes (RFC 1035's UDP limit without EDNS; an EDNS OPT record
//! in the query is not echoed): a name with more addresses than fit gets the first 29 of its
//! shuffled list, as Docker's DNS round robin does, and TC is not set.

use crate::config::{GatewayConf, NetId};
use crate::nat::router::Hdr;
use dataplane::checksum::{checksum, fold, pseudo_header_v4, sum16};
use dataplane::named_counters;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The DNS port.
pub const PORT: u16 = 53;
/// Largest DNS message over UDP without EDNS (RFC 1035 section 4.2.1).
const MAX_MSG: usize = 512;
/// Most addresses in one answer (16 bytes each: 29 fit after a short question).
const MAX_ANSWERS: usize = 32;
/// Longest name on the wire (RFC 1035 section 2.3.4).
const MAX_NAME: usize = 255;

named_counters! {
    /// Why a DNS query to the gateway is dropped.
    pub enum DnsDrop {
        /// Not a DNS message: shorter than its header, a bad UDP length, a question that runs
        /// past the end, a compression pointer or an over-long name in the question.
        Malformed => "dns_malformed",
        /// A DNS response (QR set) sent to the gateway.
        NotQuery => "dns_not_query",
    }
}

named_counters! {
    /// What the embedded DNS answered.
    pub enum DnsEvent {
        /// Queries answered with addresses (or NOERROR without data for another type).
        Answered => "dns_answered",
        /// Queries for an unknown name in a network's domain (NXDOMAIN).
        NxDomain => "dns_nxdomain",
        /// Queries for names outside every network's domain (REFUSED), or of another class.
        Refused => "dns_refused",
        /// Messages answered FORMERR or NOTIMP.
        Error => "dns_error",
    }
}

/// The addresses a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its addresses, in the order registered.
    pub addrs: Box<[Ipv4Addr]>,
    /// Whether each answer gives them in a fresh random order (DNS round robin).
    pub shuffle: bool,
    /// The TTL answers carry, seconds.
    pub ttl: u32,
}

/// The names of one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetNames {
    /// The network's domain (its name, lowercase): `x.<domain>` is `x`.
    domain: Box<[u8]>,
    /// Lowercase name -> record.
    names: HashMap<Box<[u8]>, Record>,
}

impl NetNames {
    /// The names of network `domain` (its name).
    pub fn new(domain: &str) -> NetNames {
        NetNames {
            domain: domain.to_ascii_lowercase().into_bytes().into(),
            names: HashMap::new(),
        }
    }

    /// Adds `addrs` under `name` (case-insensitive); a name given again gets the addresses
    /// it does not already have appended, and the shuffle flag and TTL of the new record.
    pub fn add(&mut self, name: &str, addrs: &[Ipv4Addr], shuffle: bool, ttl: u32) {
        let key: Box<[u8]> = name.to_ascii_lowercase().into_bytes().into();
        let rec = self.names.entry(key).or_insert_with(|| Record {
            addrs: Box::new([]),
            shuffle,
            ttl,
        });
        let mut all = rec.addrs.to_vec();
        for a in addrs {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        rec.addrs = all.into();
        rec.shuffle = shuffle;
        rec.ttl = ttl;
    }

    /// The record of `name` (lowercase, dotted, no trailing dot).
    pub fn get(&self, name: &[u8]) -> Option<&Record> {
        self.names.get(name)
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// What `qname` (lowercase, dotted) means here.
    fn resolve(&self, qname: &[u8]) -> Lookup<'_> {
        if let Some(r) = self.names.get(qname) {
            return Lookup::Found(r);
        }
        let d = &*self.domain;
        if !d.is_empty() && qname.len() > d.len() + 1 && qname.ends_with(d) {
            let cut = qname.len() - d.len() - 1;
            if qname[cut] == b'.' {
                return match self.names.get(&qname[..cut]) {
                    Some(r) => Lookup::Found(r),
                    None => Lookup::NxDomain,
                };
            }
        }
        if qname == d || !qname.contains(&b'.') {
            return Lookup::NxDomain;
        }
        Lookup::NotOurs
    }
}

/// Every network's names, by network id; published to the workers with the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    nets: Vec<Option<NetNames>>,
}

impl Names {
    /// The names of network `net`, made empty for domain `domain` if it has none yet.
    pub fn net_mut(&mut self, net: NetId, domain: &str) -> &mut NetNames {
        let i = usize::from(net);
        if self.nets.len() <= i {
            self.nets.resize(i + 1, None);
        }
        self.nets[i].get_or_insert_with(|| NetNames::new(domain))
    }

    /// The names of network `net`.
    #[inline]
    pub fn net(&self, net: NetId) -> Option<&NetNames> {
        self.nets.get(usize::from(net)).and_then(Option::as_ref)
    }
}

enum Lookup<'a> {
    Found(&'a Record),
    NxDomain,
    NotOurs,
}

/// What [`answer`] made of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// The reply frame's length.
    pub len: usize,
    /// Which event it counts as.
    pub event: DnsEvent,
    /// The response code sent.
    pub rcode: u8,
    /// Addresses in the answer.
    pub answers: u8,
}

/// Whether the IPv4 packet `h` in `frame` is a UDP datagram to port 53 (a query for [`answer`]).
#[inline]
pub fn is_query(frame: &[u8], h: &Hdr) -> bool {
    h.proto == crate::nat::proto::UDP
        && frame
            .get(14 + h.ihl + 2..14 + h.ihl + 4)
            .is_some_and(|p| p == PORT.to_be_bytes())
}

/// A small xorshift generator for the round-robin shuffle (seeded per query: no state kept).
fn xorshift(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// Reads the question's name at `at` of `msg` into `out` as lowercase dotted text. Returns the
/// name's length in `out` and the offset after it.
fn read_name(msg: &[u8], mut at: usize, out: &mut [u8; MAX_NAME]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    let mut wire = 0usize;
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        wire += 1 + len;
        if wire > MAX_NAME || len & 0xc0 != 0 {
            // Over long, or a compression pointer (never in a query's question).
            return None;
        }
        if len == 0 {
            return Some((n, at));
        }
        let label = msg.get(at..at + len)?;
        if n > 0 {
            *out.get_mut(n)? = b'.';
            n += 1;
        }
        let dst = out.get_mut(n..n + len)?;
        for (d, s) in dst.iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += len;
        at += len;
    }
}

/// Answers the DNS query in the first `len` bytes of `frame` (an Ethernet frame whose IPv4
/// header is `h`, UDP to port 53 of gateway `gw`) from `names`, rewriting it in place into the
/// reply from the gateway back to the sender. `frame` runs to the end of the frame's buffer
/// (the reply may be longer than the query); the caller sets the frame to the returned length.
pub fn answer(
    frame: &mut [u8],
    len: usize,
    h: &Hdr,
    gw: &GatewayConf,
    names: Option<&NetNames>,
) -> Result<Answered, DnsDrop> {
    use DnsDrop::Malformed;
    let l4 = 14 + h.ihl;
    let end = (14 + h.len).min(len).min(frame.len());
    let udp = frame.get(l4..l4 + 8).ok_or(Malformed)?;
    let sport = [udp[0], udp[1]];
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if ulen < 8 + 12 || l4 + ulen > end {
        return Err(Malformed);
    }
    let msg = frame.get(l4 + 8..l4 + ulen).ok_or(Malformed)?;
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 != 0 {
        return Err(DnsDrop::NotQuery);
    }
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let (qd, an, ns) = (count(4), count(6), count(8));
    let opcode = (flags >> 11) & 0xf;
    let rd = flags & 0x0100;

    // The reply's DNS message: the header, the question kept as it was, then the answers.
    let mut qname = [0u8; MAX_NAME];
    let mut rcode = 0u8;
    let mut event = DnsEvent::Answered;
    let mut question = 0usize; // bytes of question kept after the header
    let mut addrs = [Ipv4Addr::UNSPECIFIED; MAX_ANSWERS];
    let mut n_addrs = 0usize;
    let mut ttl = 0u32;
    if opcode != 0 {
        (rcode, event) = (4, DnsEvent::Error);
    } else if qd != 1 || an != 0 || ns != 0 {
        (rcode, event) = (1, DnsEvent::Error);
    } else {
        let (len, after) = read_name(msg, 12, &mut qname).ok_or(Malformed)?;
        let tc = msg.get(after..after + 4).ok_or(Malformed)?;
        let qtype = u16::from_be_bytes([tc[0], tc[1]]);
        let qclass = u16::from_be_bytes([tc[2], tc[3]]);
        question = after + 4 - 12;
        let found = names.map_or(Lookup::NotOurs, |n| n.resolve(&qname[..len]));
        match found {
            _ if qclass != 1 && qclass != 255 => (rcode, event) = (5, DnsEvent::Refused),
            Lookup::Found(r) => {
                ttl = r.ttl;
                if qtype == 1 || qtype == 255 {
                    let room_msg = MAX_MSG.saturating_sub(12 + question) / 16;
                    let take = r.addrs.len().min(MAX_ANSWERS).min(room_msg);
                    if r.shuffle && r.addrs.len() > 1 {
                        shuffled(&r.addrs, &mut addrs, msg, sport);
                    } else {
                        let n = r.addrs.len().min(MAX_ANSWERS);
                        addrs[..n].copy_from_slice(&r.addrs[..n]);
                    }
                    n_addrs = take;
                }
            }
            Lookup::NxDomain => (rcode, event) = (3, DnsEvent::NxDomain),
            Lookup::NotOurs => (rcode, event) = (5, DnsEvent::Refused),
        }
    }

    // Lay the reply out at 14 + 20 + 8 (the query's IP options, if any, are not kept).
    let dns_at = 14 + 20 + 8;
    let msg_len = 12 + question + 16 * n_addrs;
    let total = dns_at + msg_len;
    if total > frame.len() {
        return Err(Malformed);
    }
    let id = [msg[0], msg[1]];
    // Header and question move from l4 + 8 to dns_at (both inside the query; may overlap).
    let src = l4 + 8;
    frame.copy_within(src..src + 12 + question, dns_at);
    let frame = &mut frame[..total];
    let d = &mut frame[dns_at..];
    d[0..2].copy_from_slice(&id);
    // QR, the opcode as asked, AA, RD as asked; RA clear (no recursion here).
    let out_flags = 0x8000 | (opcode << 11) | 0x0400 | rd | u16::from(rcode);
    d[2..4].copy_from_slice(&out_flags.to_be_bytes());
    d[4..6].copy_from_slice(&u16::from(question > 0).to_be_bytes());
    d[6..8].copy_from_slice(&(n_addrs as u16).to_be_bytes());
    d[8..12].fill(0);
    let mut at = 12 + question;
    for a in &addrs[..n_addrs] {
        let rr = &mut d[at..at + 16];
        rr[0..2].copy_from_slice(&[0xc0, 0x0c]); // the question's name
        rr[2..4].copy_from_slice(&1u16.to_be_bytes()); // A
        rr[4..6].copy_from_slice(&1u16.to_be_bytes()); // IN
        rr[6..10].copy_from_slice(&ttl.to_be_bytes());
        rr[10..12].copy_from_slice(&4u16.to_be_bytes());
        rr[12..16].copy_from_slice(&a.octets());
        at += 16;
    }

    // UDP from port 53 back to the query's source port.
    let ulen = (8 + msg_len) as u16;
    let u = &mut frame[34..42];
    u[0..2].copy_from_slice(&PORT.to_be_bytes());
    u[2..4].copy_from_slice(&sport);
    u[4..6].copy_from_slice(&ulen.to_be_bytes());
    u[6..8].fill(0);
    let ph = pseudo_header_v4(gw.ip, h.src, crate::nat::proto::UDP, ulen);
    let c = !fold(sum16(&frame[34..total], ph));
    frame[40..42].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());

    // IPv4: a fresh 20-byte header from the gateway.
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((20 + 8 + msg_len) as u16).to_be_bytes());
    ip[4..6].fill(0);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = crate::nat::proto::UDP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&gw.ip.octets());
    ip[16..20].copy_from_slice(&h.src.octets());
    let c = checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());

    // Ethernet: back to the sender, from the gateway's MAC.
    let mut to = [0u8; 6];
    to.copy_from_slice(&frame[6..12]);
    frame[0..6].copy_from_slice(&to);
    frame[6..12].copy_from_slice(&gw.mac);
    Ok(Answered {
        len: total,
        event,
        rcode,
        answers: n_addrs as u8,
    })
}

/// Copies up to [`MAX_ANSWERS`] of `from` into `to` in an order drawn from the query's id and
/// source port (Fisher-Yates over a stack copy: no state, no allocation).
fn shuffled(from: &[Ipv4Addr], to: &mut [Ipv4Addr; MAX_ANSWERS], msg: &[u8], sport: [u8; 2]) {
    let n = from.len();
    let mut x = u32::from_be_bytes([msg[0], msg[1], sport[0], sport[1]]) | 1;
    if n <= MAX_ANSWERS {
        to[..n].copy_from_slice(from);
        for i in (1..n).rev() {
            x = xorshift(x);
            to.swap(i, x as usize % (i + 1));
        }
    } else {
        // More than fit: a random window of the list, starting anywhere (wrapping).
        x = xorshift(x);
        let start = x as usize % n;
        for (i, slot) in to.iter_mut().enumerate() {
            *slot = from[(start + i) % n];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);
    const CMAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    fn gw() -> GatewayConf {
        GatewayConf {
            ip: GW,
            subnet: Ipv4Addr::new(10, 1, 0, 0),
            prefix: 24,
            mac: GatewayConf::mac_of(1),
            internal: false,
        }
    }

    /// A query frame for `name`, type `qtype`, with `extra` bytes after the question.
    fn query(id: u16, flags: u16, name: &str, qtype: u16, extra: &[u8]) -> Vec<u8> {
        let mut dns = Vec::new();
        dns.extend_from_slice(&id.to_be_bytes());
        dns.extend_from_slice(&flags.to_be_bytes());
        dns.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(!extra.is_empty())]);
        for l in name.split('.').filter(|l| !l.is_empty()) {
            dns.push(l.len() as u8);
            dns.extend_from_slice(l.as_bytes());
        }
        dns.push(0);
        dns.extend_from_slice(&qtype.to_be_bytes());
        dns.extend_from_slice(&1u16.to_be_bytes());
        dns.extend_from_slice(extra);
        let mut f = Vec::new();
        f.extend_from_slice(&gw().mac);
        f.extend_from_slice(&CMAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = 20 + 8 + dns.len();
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&CLIENT.octets());
        ip[16..20].copy_from_slice(&GW.octets());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&dns);
        f
    }

    fn names() -> NetNames {
        let mut n = NetNames::new("Blue");
        n.add("web", &[Ipv4Addr::new(10, 1, 0, 100)], false, 600);
        n.add(
            "tasks.web",
            &[
                Ipv4Addr::new(10, 1, 0, 11),
                Ipv4Addr::new(10, 1, 0, 12),
                Ipv4Addr::new(10, 1, 0, 13),
            ],
            true,
            0,
        );
        n.add("DB", &[Ipv4Addr::new(10, 1, 0, 5)], false, 60);
        n
    }

    fn ask(f: &mut Vec<u8>, n: Option<&NetNames>) -> Result<Answered, DnsDrop> {
        let h = crate::nat::router::header(f).unwrap();
        assert!(is_query(f, &h));
        let len = f.len();
        f.resize(2048, 0);
        let r = answer(f, len, &h, &gw(), n)?;
        f.truncate(r.len);
        Ok(r)
    }

    /// Checks the reply's headers and checksums; returns the DNS message.
    fn reply_msg(f: &[u8]) -> &[u8] {
        assert_eq!(&f[0..6], &CMAC);
        assert_eq!(&f[6..12], &gw().mac);
        assert_eq!(checksum(&f[14..34]), 0, "IP checksum");
        assert_eq!(&f[26..30], &GW.octets());
        assert_eq!(&f[30..34], &CLIENT.octets());
        let ulen = usize::from(u16::from_be_bytes([f[38], f[39]]));
        assert_eq!(ulen, f.len() - 34);
        let ph = pseudo_header_v4(GW, CLIENT, 17, ulen as u16);
        assert_eq!(fold(sum16(&f[34..], ph)), 0xffff, "UDP checksum");
        assert_eq!(&f[34..36], &53u16.to_be_bytes());
        assert_eq!(&f[36..38], &40000u16.to_be_bytes());
        &f[42..]
    }

    fn a_records(m: &[u8], qlen: usize) -> Vec<(Ipv4Addr, u32)> {
        let an = usize::from(u16::from_be_bytes([m[6], m[7]]));
        (0..an)
            .map(|i| {
                let rr = &m[12 + qlen + 16 * i..][..16];
                assert_eq!(&rr[0..6], &[0xc0, 0x0c, 0, 1, 0, 1]);
                let ttl = u32::from_be_bytes([rr[6], rr[7], rr[8], rr[9]]);
                (Ipv4Addr::new(rr[12], rr[13], rr[14], rr[15]), ttl)
            })
            .collect()
    }

    #[test]
    fn a_names_vip_answers_case_insensitively_and_with_the_domain() {
        let n = names();
        for name in ["web", "WEB", "web.blue", "Web.BLUE."] {
            let mut f = query(0x1234, 0x0100, name, 1, &[]);
            let r = ask(&mut f, Some(&n)).unwrap();
            assert_eq!((r.rcode, r.answers, r.event), (0, 1, DnsEvent::Answered));
            let m = reply_msg(&f);
            assert_eq!(&m[0..2], &[0x12, 0x34]);
            assert_eq!(u16::from_be_bytes([m[2], m[3]]), 0x8500, "QR AA RD");
            let qlen = name.trim_end_matches('.').len() + 2 + 4;
            assert_eq!(
                a_records(m, qlen),
                vec![(Ipv4Addr::new(10, 1, 0, 100), 600)]
            );
        }
    }

    #[test]
    fn dnsrr_answers_every_backend_in_varying_order() {
        let n = names();
        let mut orders = std::collections::HashSet::new();
        for id in 0..40u16 {
            let mut f = query(id, 0x0100, "tasks.web", 1, &[]);
            ask(&mut f, Some(&n)).unwrap();
            let got = a_records(reply_msg(&f), 9 + 2 + 4);
            let mut sorted: Vec<_> = got.iter().map(|a| a.0).collect();
            sorted.sort();
            assert_eq!(sorted, &*n.get(b"tasks.web").unwrap().addrs);
            orders.insert(got);
        }
        assert!(orders.len() > 2, "only {} orders", orders.len());
    }

    #[test]
    fn many_addresses_fit_in_512_bytes() {
        let mut n = NetNames::new("blue");
        let many: Vec<_> = (0..200u32)
            .map(|i| Ipv4Addr::from(0x0a01_0100 + i))
            .collect();
        n.add("big", &many, true, 0);
        let mut f = query(7, 0, "big", 1, &[]);
        let r = ask(&mut f, Some(&n)).unwrap();
        let m = reply_msg(&f);
        assert!(m.len() <= MAX_MSG, "{}", m.len());
        assert_eq!(usize::from(r.answers), (MAX_MSG - 12 - 9) / 16);
    }

    #[test]
    fn unknown_names_other_types_and_strangers() {
        let n = names();
        // Known name, AAAA: NOERROR, no data.
        let mut f = query(1, 0x0100, "web", 28, &[]);
        let r = ask(&mut f, Some(&n)).unwrap();
        assert_eq!((r.rcode, r.answers), (0, 0));
        // Unknown in our domain: NXDOMAIN.
        for name in ["nosuch", "nosuch.blue", "blue"] {
            let mut f = query(2, 0x0100, name, 1, &[]);
            let r = ask(&mut f, Some(&n)).unwrap();
            assert_eq!((r.rcode, r.event), (3, DnsEvent::NxDomain), "{name}");
            assert_eq!(
                u16::from_be_bytes([reply_msg(&f)[2], reply_msg(&f)[3]]) & 0xf,
                3
            );
        }
        // Another network's domain or the Internet: REFUSED (we do not recurse).
        for name in ["web.red", "example.com"] {
            let mut f = query(3, 0x0100, name, 1, &[]);
            let r = ask(&mut f, Some(&n)).unwrap();
            assert_eq!((r.rcode, r.event), (5, DnsEvent::Refused), "{name}");
        }
        // A network without names: single labels are still its domain.
        let mut f = query(4, 0x0100, "web", 1, &[]);
        assert_eq!(ask(&mut f, None).unwrap().rcode, 5);
    }

    #[test]
    fn edns_is_not_echoed_and_opcodes_and_counts_are_checked() {
        let n = names();
        let opt = [0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0];
        let mut f = query(9, 0x0100, "db", 1, &opt);
        let r = ask(&mut f, Some(&n)).unwrap();
        let m = reply_msg(&f);
        assert_eq!((r.rcode, r.answers), (0, 1));
        assert_eq!(&m[10..12], &[0, 0], "no additional records");
        assert_eq!(a_records(m, 4 + 4), vec![(Ipv4Addr::new(10, 1, 0, 5), 60)]);
        // Opcode 2 (status): NOTIMP.
        let mut f = query(9, 2 << 11, "db", 1, &[]);
        let r = ask(&mut f, Some(&n)).unwrap();
        assert_eq!((r.rcode, r.event), (4, DnsEvent::Error));
        // Two questions: FORMERR without the question.
        let mut f = query(9, 0, "db", 1, &[]);
        f[42 + 5] = 2;
        let r = ask(&mut f, Some(&n)).unwrap();
        assert_eq!(r.rcode, 1);
        assert_eq!(reply_msg(&f).len(), 12);
    }

    #[test]
    fn malformed_queries_are_dropped_by_name_never_a_panic() {
        let n = names();
        // A response sent to us.
        let mut f = query(1, 0x8000, "web", 1, &[]);
        assert_eq!(ask(&mut f, Some(&n)), Err(DnsDrop::NotQuery));
        // A compression pointer in the question.
        let mut f = query(1, 0, "web", 1, &[]);
        f[42 + 12] = 0xc0;
        assert_eq!(ask(&mut f, Some(&n)), Err(DnsDrop::Malformed));
        // Every truncation of a valid query, with lengths left claiming the whole.
        let whole = query(1, 0x0100, "tasks.web", 1, &[]);
        for cut in 0..whole.len() {
            let mut f = whole[..cut].to_vec();
            if let Some(h) = crate::nat::router::header(&f) {
                f.resize(2048, 0xee);
                let _ = answer(&mut f, cut, &h, &gw(), Some(&n));
            }
        }
        // UDP length shorter than a DNS header.
        let mut f = query(1, 0, "web", 1, &[]);
        f[38..40].copy_from_slice(&15u16.to_be_bytes());
        assert_eq!(ask(&mut f, Some(&n)), Err(DnsDrop::Malformed));
        // A name over 255 bytes.
        let long = vec!["a".repeat(63); 5].join(".");
        let mut f = query(1, 0, &long, 1, &[]);
        assert_eq!(ask(&mut f, Some(&n)), Err(DnsDrop::Malformed));
        // Random bytes after a valid header: never a panic.
        let mut x = 0x9e37_79b9u32;
        for _ in 0..2000 {
            let mut f = query(1, 0, "web", 1, &[]);
            for b in f[42..].iter_mut() {
                x = xorshift(x);
                *b = x as u8;
            }
            let h = crate::nat::router::header(&f).unwrap();
            let len = f.len();
            f.resize(2048, 0);
            let _ = answer(&mut f, len, &h, &gw(), Some(&n));
        }
    }
}
