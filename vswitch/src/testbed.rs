//! Building blocks for the demo and the system tests: network namespaces that clean up after
//! themselves, a `vswitchd` child process, and a checked TCP transfer between namespaces.
//!
//! Everything made here has a unique name (process id and a counter) and is removed on drop, so a
//! failing test leaves nothing behind; every wait is bounded.

use control::client::Client;
use dataplane::sys::netns;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other process or call uses: `prefix` + pid + counter (at most 15 bytes with a short
/// prefix, so it also fits an interface name).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    crate::daemon::os::euid() == 0
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace made with iproute2, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` and brings its loopback up.
    pub fn create(name: &str) -> Result<Netns, String> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path under /run/netns.
    pub fn path(&self) -> PathBuf {
        netns::path_of(&self.name)
    }

    /// Runs `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<Output, String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs a program inside the namespace (`ip netns exec`) and returns its output, whatever
    /// its exit status.
    pub fn exec(&self, args: &[&str]) -> Result<Output, String> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Pings `dst` from inside the namespace with echo requests of our own ([`crate::ping`], no
    /// `ping` binary needed): `count` of them 0.2 s apart, replies awaited at most `timeout`
    /// after the last.
    pub fn ping_icmp(
        &self,
        dst: Ipv4Addr,
        count: u16,
        timeout: Duration,
    ) -> Result<crate::ping::PingReport, String> {
        let opts = crate::ping::PingOptions {
            count,
            interval: Duration::from_millis(200),
            timeout,
        };
        crate::ping::ping(Some(&self.path()), dst, &opts)
            .map_err(|e| format!("ping from {}: {e}", self.name))
    }

    /// Sends `count` pings to `dst` (ours, [`Netns::ping_icmp`]: no `ping` binary needed), 0.2 s
    /// apart, waiting at most a second after the last; whether any came back, as `ping`'s exit
    /// status says.
    pub fn ping(&self, dst: Ipv4Addr, count: u32) -> Result<bool, String> {
        let count = u16::try_from(count).unwrap_or(u16::MAX);
        Ok(self
            .ping_icmp(dst, count, Duration::from_secs(1))?
            .received()
            > 0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A `vswitchd` child process with its own socket and state directory; killed on drop.
pub struct DaemonProcess {
    exe: PathBuf,
    dir: PathBuf,
    netns: Option<String>,
    extra: Vec<String>,
    child: Option<Child>,
}

impl DaemonProcess {
    /// Starts `exe` with socket and state under `dir`, and waits (at most 10 s) until it answers.
    pub fn start(exe: &Path, dir: &Path) -> Result<DaemonProcess, String> {
        Self::start_in(exe, dir, None)
    }

    /// As [`DaemonProcess::start`], with the daemon inside network namespace `netns` (a "host"
    /// of a multi-host test): its TAP devices are made there unless a port names another.
    pub fn start_in(exe: &Path, dir: &Path, netns: Option<&str>) -> Result<DaemonProcess, String> {
        Self::start_with(exe, dir, netns, &[])
    }

    /// As [`DaemonProcess::start_in`], with extra daemon flags (e.g. `--cores 0,1`).
    pub fn start_with(
        exe: &Path,
        dir: &Path,
        netns: Option<&str>,
        extra: &[&str],
    ) -> Result<DaemonProcess, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut d = DaemonProcess {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            netns: netns.map(str::to_string),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        d.restart()?;
        Ok(d)
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("vswitchd.sock")
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The daemon's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("vswitchd.log")
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// (Re)starts the daemon on the same socket and state directory. One still running is
    /// stopped first the way the systemd unit restarts it (SIGUSR1: its devices stay), so no
    /// daemon is ever left behind unowned.
    pub fn restart(&mut self) -> Result<(), String> {
        if let Some(Ok(None)) = self.child.as_mut().map(Child::try_wait) {
            self.signal(libc::SIGUSR1)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|e| format!("cannot open log: {e}"))?;
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        let child = cmd
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args([
                "--log-level",
                "info",
                "--buffers",
                "8192",
                "--fdb-size",
                "16384",
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = Client::connect(&self.socket()) {
                if c.call("status", serde_json::Value::Null).is_ok() {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("vswitchd exited ({st}); log: {}", self.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "vswitchd did not answer within 10 s; log: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A new control connection.
    pub fn client(&self) -> Result<Client, String> {
        Client::connect(&self.socket()).map_err(|e| e.message)
    }

    /// Sends `signal` to the daemon and waits (at most 10 s) for it to exit.
    pub fn signal(&mut self, signal: i32) -> Result<std::process::ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("daemon not running".into());
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet, so the pid
        // cannot have been reused by another process.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("daemon did not exit within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGKILL.
pub const SIGKILL: i32 = libc::SIGKILL;
/// SIGTERM.
pub const SIGTERM: i32 = libc::SIGTERM;

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal(SIGTERM);
        }
    }
}

/// What a checked transfer measured.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes received and checked.
    pub bytes: u64,
    /// Time from connect to the last byte.
    pub elapsed: Duration,
}

impl Transfer {
    /// Throughput in megabits per second.
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// The deterministic byte stream both ends agree on (xorshift64*), so every byte is checked.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Sends `bytes` over TCP from namespace `client_ns` to a listener on `server_ip` in `server_ns`
/// and checks every byte on arrival; fails after `timeout`.
pub fn tcp_transfer(
    server_ns: &Path,
    server_ip: Ipv4Addr,
    client_ns: &Path,
    bytes: u64,
    timeout: Duration,
) -> Result<Transfer, String> {
    const CHUNK: usize = 64 * 1024;
    let io = |e: std::io::Error| e.to_string();
    let listener = netns::run_in(Some(server_ns), || {
        TcpListener::bind(SocketAddr::from((server_ip, 0)))
    })
    .map_err(|e| format!("listen on {server_ip}: {e}"))?;
    let addr = listener.local_addr().map_err(io)?;
    let deadline = Instant::now() + timeout;
    let server = std::thread::spawn(move || -> Result<u64, String> {
        listener.set_nonblocking(true).map_err(io)?;
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no connection arrived".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        conn.set_nonblocking(false).map_err(io)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io)?;
        let mut pattern = Pattern(0x9e37_79b9_7f4a_7c15);
        let (mut buf, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        let mut got = 0u64;
        // Compare in step with the stream: keep unmatched received bytes at the buffer's front.
        let mut have = 0usize;
        loop {
            if Instant::now() > deadline {
                return Err(format!("transfer timed out after {got} bytes"));
            }
            let n = conn
                .read(&mut buf[have..])
                .map_err(|e| format!("read after {got} bytes: {e}"))?;
            if n == 0 {
                break;
            }
            have += n;
            let whole = have / 8 * 8;
            if whole > 0 {
                pattern.fill(&mut want[..whole]);
                if buf[..whole] != want[..whole] {
                    return Err(format!(
                        "corrupted data within bytes {got}..{}",
                        got + whole as u64
                    ));
                }
                got += whole as u64;
                buf.copy_within(whole..have, 0);
                have -= whole;
            }
        }
        if have > 0 {
            pattern.fill(&mut want[..have]);
            if buf[..have] != want[..have] {
                return Err(format!("corrupted data in the last {have} bytes"));
            }
            got += have as u64;
        }
        Ok(got)
    });
    let start = Instant::now();
    let sent = netns::run_in(Some(client_ns), move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut pattern = Pattern(0x9e37_79b9_7f4a_7c15);
        let mut buf = vec![0u8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "send timed out",
                ));
            }
            let n = (left.min(CHUNK as u64)) as usize;
            pattern.fill(&mut buf[..n]);
            s.write_all(&buf[..n])?;
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        // Wait for the receiver to close, so the elapsed time covers delivery.
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.read(&mut [0u8; 1]);
        Ok(())
    });
    let got = server
        .join()
        .map_err(|_| "receiver thread panicked".to_string())?;
    let elapsed = start.elapsed();
    sent.map_err(|e| format!("send to {addr}: {e}"))?;
    let got = got?;
    if got != bytes {
        return Err(format!("received {got} of {bytes} bytes"));
    }
    Ok(Transfer {
        bytes: got,
        elapsed,
    })
}

/// Whether interface `dev` of namespace `ns` passes traffic: operationally up (or "unknown", as
/// TAP devices report) and, if it is a bridge port, forwarding. The reason when not.
fn link_passes(ns: &Netns, dev: &str) -> Result<(), String> {
    let out = ns.ip(&["-j", "-d", "link", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("ip -j link show {dev}: {e}"))?;
    let link = &v[0];
    let oper = link["operstate"].as_str().unwrap_or("?");
    if oper != "UP" && oper != "UNKNOWN" {
        return Err(format!("{dev} is {oper}"));
    }
    let slave = &link["linkinfo"]["info_slave_data"];
    if link["linkinfo"]["info_slave_kind"] == "bridge" && slave["state"] != "forwarding" {
        return Err(format!(
            "{dev}'s bridge port is {}",
            slave["state"].as_str().unwrap_or("?")
        ));
    }
    Ok(())
}

/// Waits (at most `timeout`) until every interface of `devs` in `ns` passes traffic.
pub fn wait_passing(ns: &Netns, devs: &[&str], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for dev in devs {
        // Bounded by the deadline and, as a belt to those braces, by a count of naps.
        let mut not_yet = None;
        for _ in 0..10_000 {
            not_yet = link_passes(ns, dev).err();
            if not_yet.is_none() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(why) = not_yet {
            return Err(format!(
                "the underlay did not come up: {why} in {} after {} s",
                ns.name(),
                timeout.as_secs()
            ));
        }
    }
    Ok(())
}

/// Two "hosts" (namespaces), each running its own daemon whose uplink TAP is bridged by the
/// host's kernel bridge onto an underlay veth between the hosts: the smallest multi-host
/// overlay setup. Host `i` (1 or 2) has underlay address 192.168.80.`i`/24.
pub struct OverlayHosts {
    /// The hosts' daemons (dropped, so stopped, before their namespaces go).
    pub daemons: [DaemonProcess; 2],
    /// The hosts' namespaces.
    pub hosts: [Netns; 2],
}

impl OverlayHosts {
    /// Builds both hosts with daemons from `exe` (state under `dir`), and on each the overlay
    /// networks `nets` (name, VNI) with the other host as peer.
    pub fn new(exe: &Path, dir: &Path, nets: &[(&str, u32)]) -> Result<OverlayHosts, String> {
        let nets: Vec<(&str, u32, bool)> = nets.iter().map(|&(n, v)| (n, v, false)).collect();
        Self::with_networks(exe, dir, &nets)
    }

    /// As [`OverlayHosts::new`], with networks (name, VNI, encrypted).
    pub fn with_networks(
        exe: &Path,
        dir: &Path,
        nets: &[(&str, u32, bool)],
    ) -> Result<OverlayHosts, String> {
        Self::with_flags(exe, dir, nets, &[])
    }

    /// As [`OverlayHosts::with_networks`], with extra daemon flags for both daemons.
    pub fn with_flags(
        exe: &Path,
        dir: &Path,
        nets: &[(&str, u32, bool)],
        flags: &[&str],
    ) -> Result<OverlayHosts, String> {
        let specs: Vec<serde_json::Value> = nets
            .iter()
            .map(|(name, vni, encrypted)| {
                serde_json::json!({"name": name, "vni": vni, "encrypted": encrypted})
            })
            .collect();
        Self::with_specs(exe, dir, &specs, flags)
    }

    /// As [`OverlayHosts::with_flags`], with each network given as its `network.create`
    /// arguments (a JSON object with at least `name` and `vni`).
    pub fn with_specs(
        exe: &Path,
        dir: &Path,
        nets: &[serde_json::Value],
        flags: &[&str],
    ) -> Result<OverlayHosts, String> {
        let h1 = Netns::create(&unique_name("vshost"))?;
        let h2 = Netns::create(&unique_name("vshost"))?;
        let v1 = unique_name("vsu");
        h1.ip(&[
            "link",
            "add",
            &v1,
            "type",
            "veth",
            "peer",
            "name",
            "underlay",
            "netns",
            h2.name(),
        ])?;
        let mut daemons = Vec::new();
        for (i, (h, veth)) in [(&h1, v1.as_str()), (&h2, "underlay")]
            .into_iter()
            .enumerate()
        {
            let index = i + 1;
            h.ip(&["link", "add", "br0", "type", "bridge"])?;
            h.ip(&["link", "set", "br0", "up"])?;
            h.ip(&["link", "set", veth, "master", "br0", "up"])?;
            let d = DaemonProcess::start_with(
                exe,
                &dir.join(format!("host{index}")),
                Some(h.name()),
                flags,
            )?;
            let mut c = d.client()?;
            let mut call = |cmd: &str, args: serde_json::Value| {
                c.call(cmd, args)
                    .map(drop)
                    .map_err(|e| format!("host {index}: {cmd}: {}", e.message))
            };
            let uplink = format!("uplink{index}");
            call(
                "port.add",
                serde_json::json!({"name": uplink, "type": "tap"}),
            )?;
            h.ip(&["link", "set", &uplink, "master", "br0"])?;
            call(
                "uplink.set",
                serde_json::json!({"port": uplink, "ip": format!("192.168.80.{index}/24")}),
            )?;
            for spec in nets {
                let name = spec["name"].as_str().unwrap_or_default();
                call("network.create", spec.clone())?;
                let other = 3 - index;
                call(
                    "peer.add",
                    serde_json::json!({"network": name, "vtep": format!("192.168.80.{other}")}),
                )?;
            }
            daemons.push(d);
        }
        let d2 = daemons.pop().ok_or("no daemon")?;
        let d1 = daemons.pop().ok_or("no daemon")?;
        let bed = OverlayHosts {
            daemons: [d1, d2],
            hosts: [h1, h2],
        };
        // The kernel takes up to a second to bring the underlay up: until the veth end set up
        // last has carrier (the link watcher runs at most once a second), its bridge port stays
        // disabled and drops what crosses it. The first ARP request for the other VTEP would be
        // lost and resolution would wait for a retry, so wait here until the underlay passes.
        let wait = Duration::from_secs(5);
        wait_passing(&bed.hosts[0], &[v1.as_str(), "uplink1", "br0"], wait)?;
        wait_passing(&bed.hosts[1], &["underlay", "uplink2", "br0"], wait)?;
        Ok(bed)
    }

    /// A container namespace on overlay `network` of host `host` (0 or 1), with `ip`/24.
    pub fn container(
        &self,
        host: usize,
        network: &str,
        ip: Ipv4Addr,
    ) -> Result<(Netns, String), String> {
        let ns = Netns::create(&unique_name("vsc"))?;
        let port = unique_name("ovp");
        let d = self.daemons.get(host).ok_or("no such host")?;
        d.client()?
            .call("port.add", serde_json::json!({"name": port, "type": "tap", "network": network, "netns": ns.name()}))
            .map_err(|e| format!("port add on host {host}: {}", e.message))?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])?;
        Ok((ns, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bridge port whose veth peer is down does not pass; once the peer is up it does, within
    /// the kernel's second or so (root and iproute2 only).
    #[test]
    fn waits_for_a_bridge_port_to_forward() {
        if !is_root() || Command::new("ip").arg("-V").output().is_err() {
            eprintln!("skipped: needs root (a namespace) and iproute2");
            return;
        }
        let ns = Netns::create(&unique_name("vswait")).unwrap();
        ns.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
        ns.ip(&["link", "set", "br0", "up"]).unwrap();
        ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"])
            .unwrap();
        ns.ip(&["link", "set", "va", "master", "br0", "up"])
            .unwrap();
        let e = wait_passing(&ns, &["va"], Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("va is LOWERLAYERDOWN"), "{e}");
        assert!(wait_passing(&ns, &["nosuchdev"], Duration::ZERO).is_err());
        ns.ip(&["link", "set", "vb", "up"]).unwrap();
        wait_passing(&ns, &["va", "vb", "br0"], Duration::from_secs(5)).unwrap();
    }
}
