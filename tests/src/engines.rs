//! Helpers for the container-engine tests (`docker_system`, `podman_system`): a private
//! `dockerd`, the Docker driver plugin, a busybox image made from `busybox-static`, and the
//! check that the engines are installed (a skip with the reason, a failure under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether every program in `tools` is installed; when not, prints why the test is skipped
/// (under `CI=true` that is a failure).
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Path::new(t).exists()
                && !Command::new("sh")
                    .args(["-c", &format!("command -v {t}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (apt-get install -y --no-install-recommends docker.io podman containernetworking-plugins busybox-static)",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Writes a root file system with busybox-static and its applet links under `dir` and returns
/// the tar of it (`docker import` / `podman import` take it).
pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.contains('/') {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    let tar = dir.join("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the busybox rootfs failed");
    tar
}

/// Sends `sig` to `child` and waits up to `wait` for it, then kills it.
fn stop_child(child: &mut Child, sig: i32, wait: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own unreaped child's pid, which cannot have been reused.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `dockerd` of the test's own: data, exec root, socket and pid file under its directory,
/// no iptables and no default bridge; stopped (with its containers) on drop.
pub struct Dockerd {
    child: Child,
    dir: PathBuf,
}

impl Dockerd {
    /// Starts it and waits until it answers (at most 60 s).
    pub fn start(dir: &Path) -> Dockerd {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let mut d = Dockerd {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if d.docker(&["version"]).status.success() {
                return d;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("dockerd exited ({st}): {}", d.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer in 60 s: {}",
                d.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Where Docker keeps the containers' network namespaces (their sandbox keys).
    pub fn netns_dir(&self) -> PathBuf {
        self.dir.join("exec").join("netns")
    }

    /// The last lines of dockerd's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Runs Debian's `/usr/bin/docker` (the client that matches dockerd 20.10) against it.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/docker")
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("/usr/bin/docker runs")
    }

    /// As [`Dockerd::docker`], which must succeed; its standard output, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(30));
    }
}

/// `vswitch-docker-plugin` serving driver `name` (its socket in /run/docker/plugins, where
/// dockerd finds it) for the daemon at `vswitchd`; stopped and its socket removed on drop.
pub struct DockerPlugin {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl DockerPlugin {
    /// Starts it and waits until its socket exists.
    pub fn start(name: &str, vswitchd: &Path, log: &Path) -> DockerPlugin {
        let socket = PathBuf::from(format!("/run/docker/plugins/{name}.sock"));
        let child = Command::new(crate::bin("vswitch-docker-plugin"))
            .arg("--plugin-socket")
            .arg(&socket)
            .arg("--socket")
            .arg(vswitchd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the plugin made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        DockerPlugin {
            child,
            socket,
            log: log.to_path_buf(),
        }
    }

    /// The plugin's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DockerPlugin {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Polls `f` every 100 ms until it returns true or `secs` pass; whether it did.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private Podman (CNI backend): storage, run root and temporary files under its
/// directory, its networks the conflists in `net.d` there, CNI plugins from `cni-bin` there
/// (where `vswitch` is the CNI plugin) and /usr/lib/cni; its containers are removed on drop.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Writes its configuration under `dir`: `CONTAINERS_CONF` with `default_ulimits` (Podman's
    /// defaults raise limits, which root without CAP_SYS_RESOURCE may not), the CNI backend,
    /// cgroupfs and file events (no systemd).
    pub fn new(dir: &Path) -> Podman {
        for d in ["net.d", "cni-bin"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let _ = std::os::unix::fs::symlink(
            crate::bin("vswitch-cni"),
            dir.join("cni-bin").join("vswitch"),
        );
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\
             network_config_dir = \"{}\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            dir.join("cni-bin").display(),
            dir.join("net.d").display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        Podman {
            dir: dir.to_path_buf(),
        }
    }

    /// Where its network configurations go (`NAME.conflist`).
    pub fn net_dir(&self) -> PathBuf {
        self.dir.join("net.d")
    }

    /// Runs `podman` with its configuration.
    pub fn podman(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("podman runs")
    }

    /// As [`Podman::podman`], which must succeed; its standard output, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
    }
}

/// A checked TCP transfer of `bytes` random bytes with busybox `nc` from container `from` to
/// container `to` (reached as `to_addr`), through an engine's `exec` (`exec(["exec", ...])`).
/// The receiver's stdin stays open (`sleep |`): busybox nc half-closes when its stdin ends, and
/// the sender would stop at the first FIN. The md5 sums must match.
pub fn nc_transfer(
    exec: &dyn Fn(&[&str]) -> Output,
    from: &str,
    to: &str,
    to_addr: &str,
    port: u16,
    bytes: u32,
) {
    let ok = |args: &[&str]| {
        let o = exec(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let listen = format!("sleep 120 | nc -l -p {port} > /tmp/rx{port}");
    ok(&["exec", "-d", to, "sh", "-c", &listen]);
    let make = format!("head -c {bytes} /dev/urandom > /tmp/tx{port} && md5sum < /tmp/tx{port}");
    let sent = ok(&["exec", from, "sh", "-c", &make]);
    let send = format!("nc {to_addr} {port} < /tmp/tx{port}");
    let connected = eventually(10, || {
        exec(&["exec", from, "sh", "-c", &send]).status.success()
    });
    assert!(
        connected,
        "nc from {from} to {to_addr}:{port} never connected"
    );
    let count = format!("wc -c < /tmp/rx{port}");
    let mut got = String::new();
    let complete = eventually(20, || {
        got = ok(&["exec", to, "sh", "-c", &count]);
        got == bytes.to_string()
    });
    assert!(complete, "{to} received {got} of {bytes} bytes");
    let recv = ok(&["exec", to, "sh", "-c", &format!("md5sum < /tmp/rx{port}")]);
    assert_eq!(
        sent, recv,
        "the bytes {to} received differ from what {from} sent"
    );
}
