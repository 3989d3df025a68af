//! Shared helpers for the end-to-end tests: where the built binaries are, and the root check that
//! skips (or, under `CI=true`, fails) tests that need network namespaces.

pub mod engines;

use std::path::PathBuf;

/// Path of a binary built by `cargo build --workspace --bins` in the same profile as the tests.
pub fn bin(name: &str) -> PathBuf {
    // The test executable lives in target/<profile>/deps/; the binaries one level up.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary is inside target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (README's test command does)",
        path.display()
    );
    path
}

/// Whether a test that needs root and network namespaces can run. When it cannot, prints why;
/// under `CI=true` that is a failure, not a skip.
pub fn can_run_system_tests(test: &str) -> bool {
    let why = if !vswitch::testbed::is_root() {
        Some("not running as root")
    } else if std::process::Command::new("ip").arg("-V").output().is_err() {
        Some("iproute2's `ip` is not installed")
    } else if !std::path::Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun does not exist")
    } else {
        None
    };
    match why {
        None => true,
        Some(reason) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: cannot run under CI=true: {reason}");
            }
            eprintln!(
                "SKIPPED {test}: {reason} (system tests need root, iproute2 and /dev/net/tun)"
            );
            false
        }
    }
}

/// A scratch directory unique to this process and `tag`, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(vswitch::testbed::unique_name(&format!(
            "vswitch-test-{tag}-"
        )));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir can be created");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a namespace (named from `prefix`) and a TAP port for it on `network` (the port's kernel
/// side inside it, given `ip`/24); returns both.
pub fn attach_tap(
    d: &vswitch::testbed::DaemonProcess,
    network: &str,
    prefix: &str,
    ip: std::net::Ipv4Addr,
) -> (vswitch::testbed::Netns, String) {
    use vswitch::testbed::{unique_name, Netns};
    let ns = Netns::create(&unique_name(prefix)).unwrap();
    let port = unique_name(&format!("{prefix}p"));
    d.client()
        .unwrap()
        .call(
            control::proto::cmd::PORT_ADD,
            serde_json::json!({"name": port, "type": "tap", "network": network, "netns": ns.name()}),
        )
        .unwrap_or_else(|e| panic!("port add: {e}; daemon log:\n{}", d.log_tail()));
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])
        .unwrap();
    (ns, port)
}

/// Runs `vswitchctl --socket S ARGS...` against `d`, which must succeed; its standard output.
pub fn ctl_ok(d: &vswitch::testbed::DaemonProcess, args: &[&str]) -> String {
    let out = std::process::Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vswitchctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `command` with `args` to `d`, which must succeed; its result (the daemon's log in the
/// panic otherwise).
pub fn call(
    d: &vswitch::testbed::DaemonProcess,
    command: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    d.client()
        .unwrap()
        .call(command, args.clone())
        .unwrap_or_else(|e| panic!("{command} {args}: {e}; daemon log:\n{}", d.log_tail()))
}

/// A named counter (event or drop) of `d`, summed over its workers.
pub fn worker_counter(d: &vswitch::testbed::DaemonProcess, name: &str) -> u64 {
    let s = call(d, control::proto::cmd::STATS, serde_json::json!({}));
    s["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["counters"][name].as_u64())
        .sum()
}

/// A raw packet socket (all protocols, blocking) bound to interface `ifname` inside the
/// namespace at `ns`: it receives every frame the kernel gets on the interface and sends frames
/// out of it.
pub fn packet_socket(ns: &std::path::Path, ifname: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let ifname = ifname.to_string();
    dataplane::sys::netns::run_in(Some(ns), move || {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(ifname).map_err(std::io::Error::other)?;
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set below make it a bind address.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: binding our socket to a sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    })
}
