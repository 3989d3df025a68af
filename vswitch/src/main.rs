//! `vswitchd`: the userspace virtual switch daemon.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vswitch::daemon::{self, server, Daemon, Options};

#[derive(Parser)]
#[command(
    name = "vswitchd",
    version,
    about = "Userspace poll-mode virtual switch for container networks",
    args_override_self = true
)]
struct Args {
    /// Control socket path [env: VSWITCH_SOCKET] [default: /run/vswitch/vswitchd.sock]
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Directory where the configuration is persisted.
    #[arg(long, default_value = "/var/lib/vswitch", global = true)]
    state_dir: PathBuf,
    /// Cores that get a pinned poll-mode worker, e.g. 1,3-5 (default: all but core 0 when there
    /// are more than two, else one worker on the last core).
    #[arg(long)]
    cores: Option<String>,
    /// Group (name or id) allowed to use the control socket besides root.
    #[arg(long)]
    group: Option<String>,
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    /// Packet buffers in the shared pool (2 KiB each).
    #[arg(long, default_value_t = 16384)]
    buffers: u32,
    /// MAC table entries per worker.
    #[arg(long, default_value_t = 262_144)]
    fdb_size: u32,
    /// Large (68 KiB) buffers for TCP super-frames from TAP ports with offloads.
    #[arg(long, default_value_t = 1024)]
    large_buffers: u32,
    /// Virtio-net offloads on TAP ports: the kernel hands over TCP super-frames and partial
    /// checksums, passed as they are to other TAP ports and finished in software for the rest.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    tap_offload: OnOff,
    /// With --tap-offload on: UDP tunnel segmentation offload on TAP ports where the kernel has
    /// it (Linux 6.17+), so VXLAN super-frames cross a TAP uplink whole; off cuts them before
    /// encapsulation.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    tap_tunnel_gso: OnOff,
    /// With --tap-offload on: UDP segmentation offload (Linux 6.2+) on TAP ports in no network
    /// (uplinks), so equal-sized UDP datagrams of one flow in a burst (sealed ESP-in-UDP
    /// packets) leave in one write and arrive as one read, cut in software.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    tap_uso: OnOff,
    /// With --tap-offload on: merge consecutive in-order TCP segments of one flow in a burst
    /// into one super-frame before writing it to a TAP (software GRO; never holds a frame past
    /// its burst).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    tap_gro: OnOff,
    /// Read and write TAP ports through io_uring: each queue keeps a multishot read armed over a
    /// ring of provided pool buffers (64 small ones per queue, or 16 large ones with offloads)
    /// and enters the kernel only when frames wait; each transmit burst is one system call.
    /// Plain reads and writes for a queue where the kernel (6.7+) or the pool cannot; off: plain
    /// everywhere.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    tap_uring: OnOff,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics, e.g. 127.0.0.1:9477 (off unless
    /// given).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    /// Close control connections that send no request for this many seconds (0: never).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    control_idle_timeout: u64,
    /// Join a cluster through etcd: publish this host and its endpoints, program peers and
    /// remote MACs from the other hosts', share global networks (needs --host-id).
    #[arg(long, value_name = "etcd://HOST:PORT[,HOST:PORT...]")]
    store: Option<String>,
    /// This host's id in the store: 1-64 characters of letters, digits, '_', '-', '.'.
    #[arg(long, value_name = "NAME")]
    host_id: Option<String>,
    /// Key prefix in the store.
    #[arg(long, default_value = "/vswitch", value_name = "P")]
    store_prefix: String,
    /// TTL of this host's lease in the store: a host that dies leaves every other host within
    /// this many seconds.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    store_ttl: u64,
    /// Seconds between rotations of the keys of encrypted global networks (done by the one host
    /// elected in the store; each step waits for every host).
    #[arg(long, default_value_t = 43_200, value_name = "SECS")]
    store_key_rotation: u64,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
enum Cmd {
    /// A self-contained demonstration: makes its own namespaces, runs traffic through the switch,
    /// prints its counters, cleans up.
    Demo {
        /// Bytes to move over TCP between the two namespaces.
        #[arg(long, default_value_t = 100 << 20)]
        bytes: u64,
        /// When not run as root, fail instead of running again under sudo.
        #[arg(long)]
        no_sudo: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    {
        use std::io::IsTerminal;
        let ansi = std::io::stderr().is_terminal();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .init();
    }
    let socket = control::client::socket_path(args.socket.as_deref());
    if let Some(Cmd::Demo { bytes, no_sudo }) = args.command {
        return match vswitch::demo::run(bytes, !no_sudo) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: demo failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args, socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, socket: PathBuf) -> Result<(), String> {
    let cores = args
        .cores
        .as_deref()
        .map(dataplane::parse_core_list)
        .transpose()?;
    let metrics = args.metrics.as_deref().map(parse_metrics).transpose()?;
    let store = match (&args.store, &args.host_id) {
        (Some(url), Some(id)) => Some(vswitch::store::agent::StoreConfig::parse(
            url,
            id,
            &args.store_prefix,
            args.store_ttl,
            args.store_key_rotation,
        )?),
        (Some(_), None) => {
            return Err("--store needs --host-id NAME (this host's id in the store)".into())
        }
        (None, _) => None,
    };
    let gid = args
        .group
        .as_deref()
        .map(daemon::os::group_id)
        .transpose()
        .map_err(|e| format!("--group: {e}"))?;
    std::fs::create_dir_all(&args.state_dir).map_err(|e| {
        format!(
            "cannot create state directory {}: {e}",
            args.state_dir.display()
        )
    })?;
    let _lock = daemon::os::lock_dir(&args.state_dir).map_err(|e| e.to_string())?;
    let listener = server::bind(&socket, gid)?;
    let opts = Options {
        socket: socket.clone(),
        state_dir: args.state_dir,
        cores,
        group: args.group,
        buffers: args.buffers,
        fdb_size: args.fdb_size,
        large_buffers: args.large_buffers,
        tap_offload: args.tap_offload == OnOff::On,
        tap_tunnel_gso: args.tap_tunnel_gso == OnOff::On,
        tap_uso: args.tap_uso == OnOff::On,
        tap_gro: args.tap_gro == OnOff::On,
        tap_uring: args.tap_uring == OnOff::On,
        metrics,
        store,
    };
    let mut d = Daemon::start(opts).inspect_err(|_| {
        let _ = std::fs::remove_file(&socket);
    })?;
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "vswitchd ready");
    let limits = server::ControlLimits {
        idle: (args.control_idle_timeout > 0)
            .then(|| std::time::Duration::from_secs(args.control_idle_timeout)),
    };
    let r = server::serve(&mut d, listener, gid, limits);
    d.stop(!matches!(r, Ok(server::Stop::KeepDevices)));
    let _ = std::fs::remove_file(&socket);
    r.map(|_| ())
        .map_err(|e| format!("control loop failed: {e}"))
}

/// `--metrics ADDR:PORT`: an IP address and a port (no host names: the daemon binds, it does not
/// resolve).
fn parse_metrics(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("--metrics '{s}' is not an address and port; give an IP and a port, e.g. --metrics 127.0.0.1:9477 or --metrics [::1]:9477")
    })
}
