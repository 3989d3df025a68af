//! ICMP echo (ping) of our own, for the demo: so that it needs no `ping` binary.
//!
//! A raw ICMP socket is opened inside the namespace to ping from (the thread that opens it enters
//! the namespace, as [`crate::testbed::tcp_transfer`] does for its sockets; the socket stays
//! there). We build the echo requests (RFC 792, with the Internet checksum), send `count` of them
//! `interval` apart, and match replies by identifier, sequence number and payload. Everything is
//! bounded: the run ends `timeout` after the last request, or when every reply is in.
//!
//! A raw socket, not a `SOCK_DGRAM` ping socket: the latter is allowed only to the groups in
//! `net.ipv4.ping_group_range`, which a new namespace starts with empty ("1 0"), even for root.

use dataplane::sys::netns;
use dataplane::wire::{ChecksumCapabilities, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet};
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Bytes of payload per request, as `ping` sends by default (64 bytes of ICMP).
pub const PAYLOAD_LEN: usize = 56;
/// ICMP echo header: type, code, checksum, identifier, sequence number.
const ICMP_ECHO_HEADER: usize = 8;
/// Most packets read per wakeup, so a flood of other ICMP cannot keep us from sending.
const READS_PER_WAKEUP: usize = 64;

static IDENT: AtomicU16 = AtomicU16::new(0);

/// How to ping.
#[derive(Debug, Clone, Copy)]
pub struct PingOptions {
    /// Requests to send (at least 1, at most 1000).
    pub count: u16,
    /// Time between requests (at most a minute).
    pub interval: Duration,
    /// How long to wait for replies after the last request (at most a minute).
    pub timeout: Duration,
}

/// One echo reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply {
    /// Its sequence number (the first request is 1, as `ping` numbers them).
    pub seq: u16,
    /// TTL of the reply.
    pub ttl: u8,
    /// ICMP bytes received (header and payload).
    pub bytes: usize,
    /// Round-trip time.
    pub rtt: Duration,
}

/// What a ping run saw.
#[derive(Debug, Clone)]
pub struct PingReport {
    /// Where the requests went.
    pub dst: Ipv4Addr,
    /// Requests sent.
    pub transmitted: u16,
    /// Replies, in arrival order (duplicates left out).
    pub replies: Vec<Reply>,
    /// Requests that could not be sent, with the reason (`ping`'s error lines).
    pub errors: Vec<(u16, String)>,
    /// Time from the first request to the last.
    pub elapsed: Duration,
}

impl PingReport {
    /// Replies received.
    pub fn received(&self) -> usize {
        self.replies.len()
    }

    /// Whether every request was answered.
    pub fn all_answered(&self) -> bool {
        self.transmitted > 0 && self.received() == usize::from(self.transmitted)
    }

    /// The round-trip time of request `seq`, if it was answered.
    pub fn rtt_of(&self, seq: u16) -> Option<Duration> {
        self.replies.iter().find(|r| r.seq == seq).map(|r| r.rtt)
    }
}

/// Milliseconds the way `ping` prints them: three significant decimals for short times.
fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    match v {
        v if v < 1.0 => format!("{v:.3}"),
        v if v < 10.0 => format!("{v:.2}"),
        v if v < 100.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}

impl fmt::Display for PingReport {
    /// The text `ping` prints: a header, a line per reply, and the summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dst = self.dst;
        writeln!(
            f,
            "PING {dst} ({dst}) {PAYLOAD_LEN}({}) bytes of data.",
            PAYLOAD_LEN + ICMP_ECHO_HEADER + 20
        )?;
        for r in &self.replies {
            writeln!(
                f,
                "{} bytes from {dst}: icmp_seq={} ttl={} time={} ms",
                r.bytes,
                r.seq,
                r.ttl,
                ms(r.rtt)
            )?;
        }
        for (seq, e) in &self.errors {
            writeln!(f, "icmp_seq={seq}: {e}")?;
        }
        writeln!(f)?;
        writeln!(f, "--- {dst} ping statistics ---")?;
        let tx = usize::from(self.transmitted);
        let loss = (100 * (tx - self.received().min(tx)))
            .checked_div(tx)
            .unwrap_or(0);
        writeln!(
            f,
            "{tx} packets transmitted, {} received, {loss}% packet loss, time {}ms",
            self.received(),
            self.elapsed.as_millis()
        )?;
        if !self.replies.is_empty() {
            let rtts: Vec<f64> = self
                .replies
                .iter()
                .map(|r| r.rtt.as_secs_f64() * 1e3)
                .collect();
            let n = rtts.len() as f64;
            let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rtts.iter().copied().fold(0.0, f64::max);
            let avg = rtts.iter().sum::<f64>() / n;
            let mdev = (rtts.iter().map(|r| (r - avg) * (r - avg)).sum::<f64>() / n).sqrt();
            writeln!(
                f,
                "rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms"
            )?;
        }
        Ok(())
    }
}

/// The payload of request `seq`: a pattern `ping`-like in spirit, different per request, so a
/// reply carrying another request's bytes is not taken for this one's.
fn payload(seq: u16) -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    let [hi, lo] = seq.to_be_bytes();
    for (i, b) in p.iter_mut().enumerate() {
        // Truncation intended: a byte pattern.
        *b = (i as u8).wrapping_add(lo) ^ hi;
    }
    p
}

/// Writes echo request `seq` of identifier `ident` into `buf`; returns its length, or `None` if
/// `buf` is too short.
pub fn echo_request(buf: &mut [u8], ident: u16, seq: u16) -> Option<usize> {
    let data = payload(seq);
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data: &data,
    };
    let len = repr.buffer_len();
    let frame = buf.get_mut(..len)?;
    // `frame` is exactly the length the representation needs, so emit cannot run short.
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(frame),
        &ChecksumCapabilities::default(),
    );
    Some(len)
}

/// Reads what a raw ICMP socket received (an IPv4 packet): if it is the echo reply from `from`
/// to our request of identifier `ident`, returns (sequence number, TTL, ICMP length). Anything
/// else, malformed or not, is `None`; nothing here panics, whatever the bytes.
pub fn parse_reply(packet: &[u8], from: Ipv4Addr, ident: u16) -> Option<(u16, u8, usize)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.version() != 4 || ip.header_len() < 20 || ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    if ip.src_addr() != from {
        return None;
    }
    let icmp_bytes = ip.payload();
    let icmp = Icmpv4Packet::new_checked(icmp_bytes).ok()?;
    match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).ok()? {
        Icmpv4Repr::EchoReply {
            ident: id,
            seq_no,
            data,
        } if id == ident && data == payload(seq_no) => {
            Some((seq_no, ip.hop_limit(), icmp_bytes.len()))
        }
        _ => None,
    }
}

/// An identifier no other ping of this process uses at the same time.
fn next_ident() -> u16 {
    // Truncation intended: the low bits of the pid, varied per call.
    (std::process::id() as u16) ^ IDENT.fetch_add(0x3b1, Ordering::Relaxed)
}

/// A raw ICMP socket opened in namespace `ns` (or ours, when `None`).
fn raw_icmp_socket(ns: Option<&Path>) -> Result<OwnedFd, String> {
    netns::run_in(ns, || {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMP,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor socket(2) just returned, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .map_err(|e| format!("cannot open a raw ICMP socket (needs root): {e}"))
}

fn send_to(fd: &OwnedFd, buf: &[u8], dst: Ipv4Addr) -> std::io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `buf` is valid for `buf.len()` bytes and `addr` is a sockaddr_in of the size given;
    // both outlive the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits at most `wait` for `fd` to be readable; whether it is.
fn wait_readable(fd: &OwnedFd, wait: Duration) -> bool {
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0 && p.revents & libc::POLLIN != 0
}

/// One datagram, without blocking; `None` when there is none (or on error).
fn recv_now(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).ok()
}

/// Pings `dst` from namespace `ns` (ours when `None`): `opts.count` echo requests,
/// `opts.interval` apart, waiting at most `opts.timeout` after the last one.
pub fn ping(ns: Option<&Path>, dst: Ipv4Addr, opts: &PingOptions) -> Result<PingReport, String> {
    let count = opts.count.clamp(1, 1000);
    // Clamped so that no instant computed below can overflow.
    let interval = opts.interval.min(Duration::from_secs(60));
    let timeout = opts.timeout.min(Duration::from_secs(60));
    let fd = raw_icmp_socket(ns)?;
    let ident = next_ident();
    let mut sent_at: Vec<Option<Instant>> = vec![None; usize::from(count)];
    let mut report = PingReport {
        dst,
        transmitted: 0,
        replies: Vec::with_capacity(usize::from(count)),
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let (mut tx_buf, mut rx_buf) = ([0u8; 128], [0u8; 2048]);
    let start = Instant::now();
    let mut next_send = start;
    let mut last_send = start;
    // A hard stop besides the loop's own conditions, and a bound on its turns.
    let hard_stop = start + interval * u32::from(count) + timeout + Duration::from_secs(1);
    for _ in 0..1_000_000u32 {
        let now = Instant::now();
        if now >= hard_stop {
            break;
        }
        if report.transmitted < count && now >= next_send {
            let seq = report.transmitted + 1;
            let len = echo_request(&mut tx_buf, ident, seq).ok_or("echo request too long")?;
            match send_to(&fd, &tx_buf[..len], dst) {
                Ok(()) => {
                    if let Some(s) = sent_at.get_mut(usize::from(seq - 1)) {
                        *s = Some(now);
                    }
                }
                Err(e) => report.errors.push((seq, e.to_string())),
            }
            report.transmitted = seq;
            last_send = now;
            next_send += interval;
            continue;
        }
        let answered = report.replies.len() + report.errors.len();
        if report.transmitted == count
            && (answered >= usize::from(count) || now >= last_send + timeout)
        {
            break;
        }
        let until = if report.transmitted < count {
            next_send
        } else {
            last_send + timeout
        };
        if !wait_readable(&fd, until.saturating_duration_since(now)) {
            continue;
        }
        for _ in 0..READS_PER_WAKEUP {
            let Some(n) = recv_now(&fd, &mut rx_buf) else {
                break;
            };
            let at = Instant::now();
            let Some((seq, ttl, bytes)) = rx_buf.get(..n).and_then(|p| parse_reply(p, dst, ident))
            else {
                continue;
            };
            let Some(Some(t0)) = seq.checked_sub(1).and_then(|i| sent_at.get(usize::from(i)))
            else {
                continue;
            };
            if report.replies.iter().any(|r| r.seq == seq) {
                continue; // a duplicate
            }
            report.replies.push(Reply {
                seq,
                ttl,
                bytes,
                rtt: at.saturating_duration_since(*t0),
            });
        }
    }
    report.elapsed = last_send.saturating_duration_since(start);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    /// The reply `DST` would send to `request`: an IPv4 header (TTL 64) and the ICMP reply.
    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut icmp = request.to_vec();
        icmp[0] = 0; // echo reply
        icmp[2..4].fill(0);
        let c = dataplane::checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let total = (20 + icmp.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&DST.octets());
        ip.extend_from_slice(&[10, 200, 0, 1]);
        let c = dataplane::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&icmp);
        ip
    }

    #[test]
    fn builds_a_checksummed_echo_request() {
        let mut buf = [0u8; 128];
        let len = echo_request(&mut buf, 0x1234, 7).unwrap();
        assert_eq!(len, 64);
        assert_eq!(buf[..8], [8, 0, buf[2], buf[3], 0x12, 0x34, 0, 7]);
        assert_eq!(
            dataplane::checksum::fold(dataplane::checksum::sum16(&buf[..len], 0)),
            0xffff,
            "checksum verifies"
        );
        let p = Icmpv4Packet::new_checked(&buf[..len]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(echo_request(&mut buf[..63], 1, 1), None);
    }

    #[test]
    fn matches_replies_by_identifier_sequence_and_payload() {
        let mut buf = [0u8; 128];
        let len = echo_request(&mut buf, 0xbeef, 3).unwrap();
        let r = reply_to(&buf[..len]);
        assert_eq!(parse_reply(&r, DST, 0xbeef), Some((3, 64, 64)));
        assert_eq!(parse_reply(&r, DST, 0xbeee), None, "another pinger's");
        assert_eq!(
            parse_reply(&r, Ipv4Addr::new(10, 200, 0, 3), 0xbeef),
            None,
            "from elsewhere"
        );
        // Our own request, seen on the socket (pinging a local address), is no reply.
        let mut req = reply_to(&buf[..len]);
        req[20..].copy_from_slice(&buf[..len]);
        assert_eq!(parse_reply(&req, DST, 0xbeef), None);
        // A bad checksum, or another request's payload under this sequence number.
        let mut bad = r.clone();
        bad[40] ^= 1;
        assert_eq!(parse_reply(&bad, DST, 0xbeef), None);
        let mut other = r.clone();
        other[27] = 4;
        let c = {
            other[22..24].fill(0);
            dataplane::checksum::checksum(&other[20..])
        };
        other[22..24].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse_reply(&other, DST, 0xbeef), None);
    }

    #[test]
    fn never_panics_on_short_or_odd_packets() {
        let mut buf = [0u8; 128];
        let len = echo_request(&mut buf, 1, 1).unwrap();
        let r = reply_to(&buf[..len]);
        for n in 0..r.len() {
            assert_eq!(parse_reply(&r[..n], DST, 1), None, "{n} bytes");
        }
        for ihl in 0..16u8 {
            let mut x = r.clone();
            x[0] = 0x40 | ihl;
            let _ = parse_reply(&x, DST, 1);
        }
        let mut huge_len = r.clone();
        huge_len[2..4].fill(0xff);
        assert_eq!(parse_reply(&huge_len, DST, 1), None);
        let mut v6 = r.clone();
        v6[0] = 0x65;
        assert_eq!(parse_reply(&v6, DST, 1), None);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut p = r.clone();
            let at = (x % p.len() as u64) as usize;
            p[at] = (x >> 32) as u8;
            let _ = parse_reply(&p[..(x >> 40) as usize % (p.len() + 1)], DST, 1);
        }
    }

    #[test]
    fn prints_like_ping() {
        let report = PingReport {
            dst: DST,
            transmitted: 3,
            replies: vec![
                Reply {
                    seq: 1,
                    ttl: 64,
                    bytes: 64,
                    rtt: Duration::from_micros(123),
                },
                Reply {
                    seq: 2,
                    ttl: 64,
                    bytes: 64,
                    rtt: Duration::from_micros(12_345),
                },
            ],
            errors: vec![],
            elapsed: Duration::from_millis(401),
        };
        let text = report.to_string();
        assert!(text.starts_with("PING 10.200.0.2 (10.200.0.2) 56(84) bytes of data.\n"));
        assert!(text.contains("64 bytes from 10.200.0.2: icmp_seq=1 ttl=64 time=0.123 ms\n"));
        assert!(text.contains("icmp_seq=2 ttl=64 time=12.3 ms\n"));
        assert!(text.contains("3 packets transmitted, 2 received, 33% packet loss, time 401ms\n"));
        assert!(text.contains("rtt min/avg/max/mdev = 0.123/6.234/12.345/6.111 ms\n"));
        assert!(!report.all_answered());
        assert_eq!(report.rtt_of(2), Some(Duration::from_micros(12_345)));
    }

    /// Pings loopback inside a namespace of its own (root and iproute2 only).
    #[test]
    fn pings_loopback_in_a_namespace_when_root() {
        if !crate::testbed::is_root()
            || std::process::Command::new("ip").arg("-V").output().is_err()
        {
            eprintln!("skipped: needs root (a raw ICMP socket, a namespace) and iproute2");
            return;
        }
        let ns = crate::testbed::Netns::create(&crate::testbed::unique_name("vsping")).unwrap();
        let opts = PingOptions {
            count: 2,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        };
        let r = ping(Some(&ns.path()), Ipv4Addr::LOCALHOST, &opts).unwrap();
        assert!(r.all_answered(), "{r}");
        assert_eq!(r.replies[0].bytes, 64);
    }
}
