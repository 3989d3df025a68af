//! AF_XDP ports against the kernel: two "container" namespaces, each wired by a veth pair to a
//! third "switch" namespace made by the test (nothing touches the host's namespace). The tests
//! open an `AfXdpDevice` on each switch-side veth and forward between them in the test thread
//! while `ping` or a TCP transfer runs from one container to the other; they also check that no
//! XDP program outlives its device or its process, that a too-large MTU is refused, and that a
//! vanished interface loses no buffers.
//!
//! Needs root (namespaces, BPF, AF_XDP). Without it each test prints why and passes, except
//! under `CI=true`, where it fails.

use dataplane::burst::Burst;
use dataplane::counters::PortCounters;
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::afxdp::{AfXdpDevice, AfXdpQueue, XdpAttach, MAX_MTU};
use dataplane::port::Port;
use dataplane::sys::netns;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the test can run (root, and `tools` installed); panics under CI when it cannot.
fn can_run(test: &str, tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let why = if unsafe { libc::geteuid() } != 0 {
        "needs root (network namespaces, BPF and AF_XDP sockets)".to_string()
    } else if let Some(t) = tools.iter().find(|t| {
        !Command::new(t)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) {
        format!("needs `{t}`")
    } else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true");
    }
    eprintln!("skipping {test}: {why}");
    false
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces made for one test, deleted on drop (even when the test fails). Deleting a
/// namespace deletes the veth ends in it, and with them their peers.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// Namespaces `<tag><role><pid>` for each role.
    fn new(tag: &str, roles: &[&str]) -> Namespaces {
        let mut ns = Namespaces { names: Vec::new() };
        for r in roles {
            let name = format!("{tag}{r}{}", std::process::id());
            // A leftover from a crashed run of the same pid would make `add` fail.
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", &name]);
            ns.names.push(name);
        }
        ns
    }

    fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A child process killed on drop, so that a failing test leaves nothing running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `limit` for `cond`; whether it became true.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `ip link` shows an XDP program on `dev` in namespace `ns`.
fn has_xdp(ns: &str, dev: &str) -> bool {
    ip(&["-n", ns, "link", "show", dev]).contains("xdp")
}

/// Two containers A and B, each with `eth0` (10.77.0.1 and .2) wired to switch namespace S as
/// `sa` (with `queues_a` queues, native XDP) and `sb` (generic XDP).
fn containers_and_switch(tag: &str, queues_a: u16) -> Namespaces {
    let ns = Namespaces::new(tag, &["a", "b", "s"]);
    let (a, b, s) = (ns.name(0), ns.name(1), ns.name(2));
    let q = queues_a.to_string();
    ip(&[
        "-n",
        s,
        "link",
        "add",
        "sa",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        a,
    ]);
    ip(&[
        "-n", s, "link", "add", "sb", "type", "veth", "peer", "name", "eth0", "netns", b,
    ]);
    for (n, addr) in [(a, "10.77.0.1/24"), (b, "10.77.0.2/24")] {
        ip(&["-n", n, "addr", "add", addr, "dev", "eth0"]);
        ip(&["-n", n, "link", "set", "eth0", "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    // veth refuses native XDP when its peer's MTU exceeds what a page holds: `sb` gets generic.
    ip(&["-n", b, "link", "set", "eth0", "mtu", "9000"]);
    ip(&["-n", s, "link", "set", "sa", "up"]);
    ip(&["-n", s, "link", "set", "sb", "up"]);
    ns
}

/// Moves every frame waiting on `from` to `to`; returns how many.
fn forward(
    cache: &mut PoolCache,
    burst: &mut Burst,
    from: &mut AfXdpQueue,
    fc: &PortCounters,
    to: &mut AfXdpQueue,
    tc: &PortCounters,
) -> usize {
    let n = from.rx_burst(cache, burst, fc);
    if !burst.is_empty() {
        to.tx_burst(cache, burst, tc);
    }
    n
}

/// Steers everything container A sends to transmit queue 1 of its `eth0` (XPS: every CPU on
/// tx-1, none on tx-0), so that it arrives on receive queue 1 of `sa`; whether that worked.
fn steer_to_queue_1(ns: &str) -> bool {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.clamp(1, 1024) as usize;
    // A hex mask of `cpus` ones, in comma-separated groups of 32 bits as sysfs writes them.
    let mut digits = vec!['f'; cpus / 4];
    let top = (1u32 << (cpus % 4)) - 1;
    if let Some(c) = char::from_digit(top, 16).filter(|&c| c != '0') {
        digits.insert(0, c);
    }
    let groups: Vec<String> = digits
        .rchunks(8)
        .rev()
        .map(|c| c.iter().collect())
        .collect();
    let script = format!(
        "echo 0 > /sys/class/net/eth0/queues/tx-0/xps_cpus && \
         echo {} > /sys/class/net/eth0/queues/tx-1/xps_cpus",
        groups.join(",")
    );
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", &script])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("XPS not available: not checking that receive queue 1 is used");
    }
    ok
}

#[test]
fn forwards_ping_through_native_and_generic_ports_and_detaches_on_drop() {
    if !can_run(
        "forwards_ping_through_native_and_generic_ports_and_detaches_on_drop",
        &["ip", "ping"],
    ) {
        return;
    }
    let ns = containers_and_switch("vxf", 2);
    let (a, s) = (ns.name(0).to_string(), ns.name(2).to_string());
    let steered = steer_to_queue_1(&a);
    let switch = netns::path_of(&s);
    let pool = Pool::new(8192).unwrap();
    let mut dev_a = AfXdpDevice::open("sa", Some(&switch), 2, &pool).unwrap();
    let mut dev_b = AfXdpDevice::open("sb", Some(&switch), 1, &pool).unwrap();
    eprintln!("sa: {}; sb: {}", dev_a.mode(), dev_b.mode());
    assert_eq!(dev_a.mode().attach, XdpAttach::Native);
    assert_eq!(dev_b.mode().attach, XdpAttach::Generic);
    assert!(has_xdp(&s, "sa") && has_xdp(&s, "sb"));
    assert!(dev_a.queue(2).is_err(), "sa has two queues");

    // Port A has two queues (two sockets registering the same pool as UMEM); a frame may arrive
    // on either, and leaves through queue 0.
    let mut qa = [dev_a.queue(0).unwrap(), dev_a.queue(1).unwrap()];
    assert!(dev_a.queue(0).is_err(), "a queue is handed out once");
    let mut qb = dev_b.queue(0).unwrap();
    assert!(qa.iter().all(|q| q.raw_fd().is_some()));

    let mut cache = PoolCache::new(pool.clone());
    let mut burst = Burst::new();
    let ca = [PortCounters::default(), PortCounters::default()];
    let cb = PortCounters::default();
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &a, "ping", "-c", "3", "-i", "0.2", "-W", "2",
        ])
        .arg("10.77.0.2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ping");
    let mut ping = Reaped(ping);
    // A worker sleeps on `raw_fd`: it must become readable when the first frame (ARP) waits.
    let mut fds = qa.each_ref().map(|q| libc::pollfd {
        fd: q.raw_fd().unwrap(),
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `fds` is an array of two initialised pollfds that outlives the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, 5000) };
    assert!(
        ready > 0,
        "no AF_XDP socket of sa became readable within 5 s"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let mut moved = 0;
        for (q, c) in qa.iter_mut().zip(&ca) {
            moved += forward(&mut cache, &mut burst, q, c, &mut qb, &cb);
        }
        moved += forward(&mut cache, &mut burst, &mut qb, &cb, &mut qa[0], &ca[0]);
        if let Some(st) = ping.0.try_wait().expect("wait for ping") {
            break Some(st);
        }
        if Instant::now() >= deadline {
            break None;
        }
        if moved == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    let mut out = String::new();
    if let Some(mut o) = ping.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut out);
    }
    eprintln!(
        "ping: {out}\nA: rx {}+{} tx {} drop {} err {}; B: rx {} tx {} drop {} err {}",
        ca[0].rx_packets.get(),
        ca[1].rx_packets.get(),
        ca[0].tx_packets.get(),
        ca[0].tx_dropped.get(),
        ca[0].rx_errors.get() + ca[1].rx_errors.get(),
        cb.rx_packets.get(),
        cb.tx_packets.get(),
        cb.tx_dropped.get(),
        cb.rx_errors.get()
    );
    let status = status.expect("ping did not finish within 20 s");
    assert!(status.success(), "ping through the AF_XDP ports failed");
    // Three echo requests and ARP one way, three replies and ARP the other.
    let rx_a = ca[0].rx_packets.get() + ca[1].rx_packets.get();
    if steered {
        // The second socket's UMEM is the same memory as the first's: frames arrived there too.
        assert!(ca[1].rx_packets.get() >= 4, "nothing arrived on queue 1");
    }
    assert!(rx_a >= 4 && cb.rx_packets.get() >= 4);
    assert_eq!(
        ca[0].rx_errors.get() + ca[1].rx_errors.get() + cb.rx_errors.get(),
        0
    );

    // Release as a worker does, then drop the devices: no program stays attached and every
    // buffer is back in the pool.
    for q in &mut qa {
        q.release(&mut cache);
        assert!(q.raw_fd().is_none());
    }
    qb.release(&mut cache);
    drop((qa, qb));
    drop((dev_a, dev_b));
    drop(cache);
    assert_eq!(pool.available(), pool.capacity() as usize, "buffers lost");
    assert!(
        wait_for(Duration::from_secs(5), || !has_xdp(&s, "sa")
            && !has_xdp(&s, "sb")),
        "an XDP program stayed attached: {}",
        ip(&["-n", &s, "link", "show"])
    );
}

#[test]
fn refuses_an_mtu_above_the_limit_and_leaves_nothing_attached() {
    if !can_run(
        "refuses_an_mtu_above_the_limit_and_leaves_nothing_attached",
        &["ip"],
    ) {
        return;
    }
    let ns = Namespaces::new("vxm", &["s"]);
    let s = ns.name(0).to_string();
    ip(&[
        "-n", &s, "link", "add", "big", "type", "veth", "peer", "name", "big1",
    ]);
    ip(&["-n", &s, "link", "set", "big", "mtu", "3000"]);
    ip(&["-n", &s, "link", "set", "big", "up"]);
    let pool = Pool::new(1024).unwrap();
    let err = AfXdpDevice::open("big", Some(&netns::path_of(&s)), 1, &pool)
        .err()
        .expect("an MTU of 3000 is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("3000") && msg.contains(&MAX_MTU.to_string()),
        "{msg}"
    );
    let err = AfXdpDevice::open("nosuch", Some(&netns::path_of(&s)), 1, &pool)
        .err()
        .expect("a missing interface is refused");
    assert!(err.to_string().contains("nosuch"), "{err}");
    assert!(!has_xdp(&s, "big"));
    assert_eq!(pool.available(), pool.capacity() as usize);

    ip(&["-n", &s, "link", "set", "big", "mtu", &MAX_MTU.to_string()]);
    let dev = AfXdpDevice::open("big", Some(&netns::path_of(&s)), 1, &pool).unwrap();
    assert!(has_xdp(&s, "big"));
    drop(dev);
    assert!(!has_xdp(&s, "big"));
    assert_eq!(pool.available(), pool.capacity() as usize);
}

/// Set in the child process of `killed_process_leaves_no_program`: the namespace to open in.
const CHILD_ENV: &str = "AFXDP_TEST_HOLD_NS";

/// Not a test by itself: the child of `killed_process_leaves_no_program` (it does nothing
/// unless that test started it).
#[test]
fn child_holds_a_device_until_killed() {
    let Ok(ns) = std::env::var(CHILD_ENV) else {
        return;
    };
    let pool = Pool::new(1024).unwrap();
    let _dev = AfXdpDevice::open("held", Some(&netns::path_of(&ns)), 1, &pool).unwrap();
    println!("holding");
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn killed_process_leaves_no_program() {
    if !can_run("killed_process_leaves_no_program", &["ip"]) {
        return;
    }
    let ns = Namespaces::new("vxk", &["s"]);
    let s = ns.name(0).to_string();
    ip(&[
        "-n", &s, "link", "add", "held", "type", "veth", "peer", "name", "held1",
    ]);
    ip(&["-n", &s, "link", "set", "held", "up"]);
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_a_device_until_killed",
            "--nocapture",
        ])
        .env(CHILD_ENV, &s)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut child = Reaped(child);
    assert!(
        wait_for(Duration::from_secs(10), || has_xdp(&s, "held")),
        "the child never attached its program"
    );
    child.0.kill().expect("SIGKILL the child");
    let _ = child.0.wait();
    assert!(
        wait_for(Duration::from_secs(5), || !has_xdp(&s, "held")),
        "the killed process left its XDP program: {}",
        ip(&["-n", &s, "link", "show", "held"])
    );
}

/// Turns transmit checksum offload off on `dev` in namespace `ns` (`ethtool -K DEV tx off`).
fn tx_checksum_off(ns: &str, dev: &str) -> io::Result<()> {
    let dev = dev.to_string();
    netns::run_in(Some(&netns::path_of(ns)), move || {
        dataplane::sys::ethtool::set_tx_checksum(&dev, false)
    })
}

/// Byte `i` of the test stream.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// 8 MB over TCP from A to B, checked byte by byte. With `AFXDP_TEST_KEEP_OFFLOADS` set the
/// containers keep their default offloads and the transfer fails (see the port's module doc).
#[test]
fn forwards_tcp_once_the_containers_stop_offloading_checksums() {
    if !can_run(
        "forwards_tcp_once_the_containers_stop_offloading_checksums",
        &["ip"],
    ) {
        return;
    }
    const BYTES: usize = 8 << 20;
    let ns = containers_and_switch("vxt", 1);
    let (a, b, s) = (ns.name(0), ns.name(1), ns.name(2));
    if std::env::var_os("AFXDP_TEST_KEEP_OFFLOADS").is_none() {
        tx_checksum_off(a, "eth0").unwrap();
        tx_checksum_off(b, "eth0").unwrap();
    }
    let switch = netns::path_of(s);
    let pool = Pool::new(8192).unwrap();
    let mut dev_a = AfXdpDevice::open("sa", Some(&switch), 1, &pool).unwrap();
    let mut dev_b = AfXdpDevice::open("sb", Some(&switch), 1, &pool).unwrap();
    let (mut qa, mut qb) = (dev_a.queue(0).unwrap(), dev_b.queue(0).unwrap());

    let deadline = Instant::now() + Duration::from_secs(30);
    let listener = netns::run_in(Some(&netns::path_of(b)), || {
        TcpListener::bind("10.77.0.2:5001")
    })
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || -> io::Result<usize> {
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let (mut got, mut buf) = (0usize, vec![0u8; 64 << 10]);
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            if let Some(i) = (0..n).find(|&i| buf[i] != pattern(got + i)) {
                return Err(io::Error::other(format!("byte {} corrupted", got + i)));
            }
            got += n;
        }
    });
    let path_a = netns::path_of(a);
    let client = std::thread::spawn(move || -> io::Result<()> {
        let to: SocketAddr = "10.77.0.2:5001".parse().unwrap();
        let mut conn = netns::run_in(Some(&path_a), || {
            TcpStream::connect_timeout(&to, Duration::from_secs(5))
        })?;
        conn.set_write_timeout(Some(Duration::from_secs(5)))?;
        let data: Vec<u8> = (0..BYTES).map(pattern).collect();
        conn.write_all(&data)?;
        conn.shutdown(Shutdown::Write)
    });

    let mut cache = PoolCache::new(pool.clone());
    let mut burst = Burst::new();
    let (ca, cb) = (PortCounters::default(), PortCounters::default());
    while !(server.is_finished() && client.is_finished()) && Instant::now() < deadline {
        let moved = forward(&mut cache, &mut burst, &mut qa, &ca, &mut qb, &cb)
            + forward(&mut cache, &mut burst, &mut qb, &cb, &mut qa, &ca);
        if moved == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    eprintln!(
        "A: rx {} tx {} drop {}; B: rx {} tx {} drop {}; xsk A {:?}",
        ca.rx_packets.get(),
        ca.tx_packets.get(),
        ca.tx_dropped.get(),
        cb.rx_packets.get(),
        cb.tx_packets.get(),
        cb.tx_dropped.get(),
        qa.xsk_stats()
    );
    assert!(
        server.is_finished() && client.is_finished(),
        "transfer timed out"
    );
    client.join().unwrap().expect("client");
    assert_eq!(server.join().unwrap().expect("server"), BYTES);
    qa.release(&mut cache);
    qb.release(&mut cache);
}

#[test]
fn keeps_its_buffers_when_the_interface_disappears() {
    if !can_run("keeps_its_buffers_when_the_interface_disappears", &["ip"]) {
        return;
    }
    let ns = Namespaces::new("vxd", &["s"]);
    let s = ns.name(0).to_string();
    ip(&[
        "-n", &s, "link", "add", "gone", "type", "veth", "peer", "name", "gone1",
    ]);
    ip(&["-n", &s, "link", "set", "gone", "up"]);
    let pool = Pool::new(1024).unwrap();
    let mut dev = AfXdpDevice::open("gone", Some(&netns::path_of(&s)), 1, &pool).unwrap();
    let mut q = dev.queue(0).unwrap();
    assert!(
        pool.available() < pool.capacity() as usize,
        "the fill ring holds buffers"
    );
    ip(&["-n", &s, "link", "del", "gone"]);

    let mut cache = PoolCache::new(pool.clone());
    let mut burst = Burst::new();
    let c = PortCounters::default();
    for _ in 0..4 {
        let mut b = cache.alloc().unwrap();
        assert!(pool.fill(&mut b, &[0xff; 60]));
        burst.push(b).unwrap();
    }
    q.tx_burst(&mut cache, &mut burst, &c);
    assert!(burst.is_empty());
    assert!(q.down(), "a kick on a socket whose interface is gone fails");
    assert_eq!(q.rx_burst(&mut cache, &mut burst, &c), 0);
    q.release(&mut cache);
    drop(q);
    drop(dev);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity() as usize, "buffers lost");
}
