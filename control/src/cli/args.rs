//! The command line grammar (clap derive); doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `vswitchctl [--socket PATH] [--json] COMMAND ...`
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version, propagate_version = true)]
#[command(about = "Control vswitchd: networks, ports, the MAC table, counters and configuration")]
pub(crate) struct Cli {
    /// Control socket of vswitchd [default: $VSWITCH_SOCKET, else /run/vswitch/vswitchd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the daemon's result as JSON, for scripts
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Version, uptime, workers and their cores, packets per second
    Status,
    /// Networks (bridge domains); with --vni an overlay (VXLAN) network
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Ports: TAP devices and AF_XDP sockets
    #[command(subcommand)]
    Port(PortCmd),
    /// The MAC table: learned and static entries
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// The host's underlay address: VXLAN source of overlay networks
    #[command(subcommand)]
    Uplink(UplinkCmd),
    /// Remote VTEPs of overlay networks
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Per-port and per-worker counters, drops by name
    Stats(StatsCmd),
    /// Live rates: packets and bits per second per port, worker load, top drop reasons
    Top(TopCmd),
    /// Follow packets through every stage of the switch
    #[command(subcommand)]
    Trace(TraceCmd),
    /// The whole configuration as one JSON document
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Capture a port's frames to a pcap file that tcpdump, tshark and Wireshark read
    Capture(CaptureCmd),
    /// Source NAT of the networks' gateways: settings, sessions, figures
    #[command(subcommand)]
    Nat(super::nat::NatCmd),
    /// Names the networks' gateways answer in DNS (containers, services' extra names)
    #[command(subcommand)]
    Endpoint(super::endpoint::EndpointCmd),
    /// Services: VIPs and published ports load-balanced over backends
    #[command(subcommand)]
    Service(super::service::ServiceCmd),
    /// Published ports (a service with one published port; see `service`)
    #[command(subcommand)]
    Publish(super::service::PublishCmd),
    /// A service's backends (the same as `service backend`)
    #[command(subcommand)]
    Backend(super::service::BackendCmd),
    /// Encryption keys of encrypted overlay networks (ESP, AES-GCM)
    #[command(subcommand)]
    Key(KeyCmd),
    /// The cluster store (vswitchd --store): hosts, their underlay addresses, leases, revision
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

/// `cluster ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCmd {
    /// The hosts in the store, their underlay address, lease age and endpoints; the store's
    /// reachability and the last revision seen
    #[command(visible_alias = "list")]
    Ls,
}

/// `key ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCmd {
    /// Add a key: it receives at once, and sends once made primary
    Add {
        /// The key's tag (0-4294967295); SPIs are derived from it
        #[arg(long, value_name = "N")]
        tag: u32,
        /// RFC 4106 keying material in hex: a 16- or 32-byte AES key then a 4-byte salt
        /// (40 or 72 hex digits)
        #[arg(long, value_name = "HEX", required_unless_present = "key_file")]
        key: Option<String>,
        /// Read the hex keying material from FILE (`-`: standard input) instead, so that it is
        /// not in the process list or the shell's history
        #[arg(long, value_name = "FILE", conflicts_with = "key")]
        key_file: Option<PathBuf>,
    },
    /// Make a key the sending key
    Primary {
        /// The key's tag
        #[arg(long, value_name = "N")]
        tag: u32,
    },
    /// Remove a key (not the primary)
    #[command(visible_alias = "remove")]
    Rm {
        /// The key's tag
        #[arg(long, value_name = "N")]
        tag: u32,
    },
    /// List keys: tag, primary, age, packets (never key material)
    #[command(visible_alias = "list")]
    Ls,
}

/// Which frames `capture` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CaptureDir {
    /// Frames the switch receives on the port
    Rx,
    /// Frames the switch transmits on the port
    Tx,
    /// Both
    Both,
}

/// `capture PORT ...`
#[derive(Debug, Args)]
pub(crate) struct CaptureCmd {
    /// Port name; a subinterface PARENT.VID captures its trunk's frames tagged VID
    pub port: String,
    /// Which frames to take
    #[arg(long, value_enum, default_value = "both")]
    pub direction: CaptureDir,
    /// Stop after N packets [default: until Ctrl-C, SIGINT or SIGTERM]
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,
    /// Bytes kept of each frame (1-65535) [default: 65535]
    #[arg(short = 's', long, value_name = "N")]
    pub snaplen: Option<u32>,
    /// The pcap file to write; `-` writes to stdout (`... -w - | tcpdump -r -`)
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: PathBuf,
}

/// `network ...`
#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCmd {
    /// Create a network
    Create(NetworkCreate),
    /// List networks
    #[command(visible_alias = "list")]
    Ls,
    /// Show one network
    Inspect {
        /// Network name
        name: String,
    },
    /// Remove a network (it must have no ports)
    #[command(visible_alias = "remove")]
    Rm {
        /// Network name
        name: String,
    },
    /// Route between two networks with subnets through their gateways (no NAT); networks
    /// are isolated from each other until linked
    Link {
        /// One network
        a: String,
        /// The other
        b: String,
    },
    /// Isolate two linked networks from each other again
    Unlink {
        /// One network
        a: String,
        /// The other
        b: String,
    },
}

/// `network create ...`
#[derive(Debug, Args)]
pub(crate) struct NetworkCreate {
    /// Network name: 1-64 characters of letters, digits, '_', '-', '.'
    pub name: String,
    /// IPv4 subnet, e.g. 10.1.0.0/24
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Gateway address inside the subnet
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// VXLAN network identifier (1-16777215): makes this an overlay network
    #[arg(long, value_name = "N")]
    pub vni: Option<u32>,
    /// Encrypt overlay traffic (needs --vni)
    #[arg(long)]
    pub encrypted: bool,
    /// With --encrypted: esp sends ESP as IP protocol 50 (the default, as Docker does); udp
    /// sends it in UDP port 4500 (RFC 3948), which a TAP uplink writes and reads in bursts
    #[arg(long, value_name = "ENCAP", value_parser = ["esp", "udp"])]
    pub esp_encap: Option<String>,
    /// Most learned MAC addresses in this network [daemon default: 65536]
    #[arg(long, value_name = "N")]
    pub mac_limit: Option<u32>,
    /// Seconds an unrefreshed learned MAC stays in the table [daemon default: 300]
    #[arg(long, value_name = "SECS")]
    pub aging: Option<u32>,
    /// Do not learn remote MACs from decapsulated frames (needs --vni); for a control plane
    /// that programs every remote MAC with `fdb add --vtep`
    #[arg(long)]
    pub no_learn_remote: bool,
    /// No way out through the gateway (needs --subnet), as Docker's --internal
    #[arg(long)]
    pub internal: bool,
    /// global: publish the network in the cluster store (vswitchd --store) so that it exists on
    /// every host, with a VNI and subnet unique across the cluster (a subnet is allocated when
    /// --subnet is not given; needs --vni)
    #[arg(long, value_name = "SCOPE", value_parser = ["local", "global"])]
    pub scope: Option<String>,
}

/// `port ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PortCmd {
    /// Add a port
    Add(PortAdd),
    /// List ports
    #[command(visible_alias = "list")]
    Ls,
    /// Show one port
    Inspect {
        /// Port name
        name: String,
    },
    /// Remove a port (a TAP port's device goes with it)
    #[command(visible_alias = "remove")]
    Rm {
        /// Port name
        name: String,
    },
    /// Record that an engine moved the port's TAP device into namespace NS (and renamed it)
    Locate {
        /// Port name
        name: String,
        /// Namespace name or path the device is in now [default: the daemon's]
        #[arg(long)]
        netns: Option<String>,
    },
}

/// Port types as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PortKind {
    /// A TAP device the daemon creates
    Tap,
    /// An AF_XDP socket on the existing interface --ifname
    Afxdp,
    /// A VLAN subinterface PARENT.VID of trunk port PARENT
    Vlan,
}

/// `port add ...`
#[derive(Debug, Args)]
pub(crate) struct PortAdd {
    /// Port name: 1-15 characters of letters, digits, '_', '-', '.'; PARENT.VID names a VLAN
    /// subinterface of trunk port PARENT
    pub name: String,
    /// Port type [default: vlan for a name PARENT.VID; otherwise required]
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<PortKind>,
    /// Kernel interface name [default: the port name]
    #[arg(long, value_name = "IF")]
    pub ifname: Option<String>,
    /// Number of queues [default: one per worker]
    #[arg(long, value_name = "N")]
    pub queues: Option<u16>,
    /// Network the port belongs to
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
    /// MTU of the device (68-65535) [default: 1500]
    #[arg(long, value_name = "N")]
    pub mtu: Option<u32>,
    /// Network namespace (a name under /run/netns, or a path) for the kernel side
    #[arg(long, value_name = "NS")]
    pub netns: Option<String>,
    /// Most MAC addresses this port may have learned at once [daemon default: 4096]
    #[arg(long, value_name = "N")]
    pub mac_limit: Option<u32>,
}

/// `fdb ...`
#[derive(Debug, Subcommand)]
pub(crate) enum FdbCmd {
    /// List MAC table entries
    #[command(visible_alias = "list")]
    Ls {
        /// Only this network's entries
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// At most this many entries (the table is fetched in pages either way)
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Add a static entry behind a port or a remote VTEP
    Add {
        /// Network name
        #[arg(long, value_name = "NET")]
        network: String,
        /// MAC address, e.g. 02:42:ac:11:00:02
        #[arg(long)]
        mac: String,
        /// Port the MAC lives behind
        #[arg(long, value_name = "P")]
        port: Option<String>,
        /// Remote VTEP the MAC lives behind (overlay networks)
        #[arg(long, value_name = "IP")]
        vtep: Option<String>,
    },
    /// Remove a static entry
    #[command(visible_alias = "remove")]
    Rm {
        /// Network name
        #[arg(long, value_name = "NET")]
        network: String,
        /// MAC address
        #[arg(long)]
        mac: String,
    },
}

/// `uplink ...`
#[derive(Debug, Subcommand)]
pub(crate) enum UplinkCmd {
    /// Set the host's address on its uplink (the VXLAN source address)
    Set(UplinkSet),
    /// Show the uplink: address, MAC, overlay MTU and resolved neighbours
    Show,
}

/// `uplink set ...`
#[derive(Debug, Args)]
pub(crate) struct UplinkSet {
    /// The port that faces the underlay (a TAP or AF_XDP port in no network)
    pub port: String,
    /// The host's address and prefix, e.g. 192.168.1.10/24
    #[arg(long, value_name = "CIDR")]
    pub ip: String,
    /// Next hop for VTEPs outside the prefix
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// UDP destination port of VXLAN (1-65535) [daemon default: 4789]
    #[arg(long, value_name = "N")]
    pub vxlan_port: Option<u32>,
}

/// `peer ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PeerCmd {
    /// Add a remote VTEP: it gets the network's broadcast and unknown traffic
    Add(PeerArgs),
    /// Remove a remote VTEP
    #[command(visible_alias = "remove")]
    Rm(PeerArgs),
    /// List remote VTEPs
    #[command(visible_alias = "list")]
    Ls {
        /// Only this network's peers
        #[arg(long, value_name = "NET")]
        network: Option<String>,
    },
}

/// `peer add|rm ...`
#[derive(Debug, Args)]
pub(crate) struct PeerArgs {
    /// Overlay network
    #[arg(long, value_name = "NET")]
    pub network: String,
    /// The remote VTEP's underlay IPv4 address
    #[arg(long, value_name = "IP")]
    pub vtep: String,
}

/// `trace ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TraceCmd {
    /// Trace the next N packets (from one port, or any), in addition to any still armed
    Add {
        /// Packets to trace (1-1000)
        #[arg(value_name = "N")]
        count: u32,
        /// Only packets received on this port (a trunk or the uplink, not a subinterface)
        #[arg(long, value_name = "P")]
        port: Option<String>,
    },
    /// Show every traced packet, each with the stages it passed
    Show,
    /// Stop tracing and forget the traces collected
    Clear,
}

/// `stats ...`
#[derive(Debug, Args)]
pub(crate) struct StatsCmd {
    /// Only this port
    #[arg(long, value_name = "P")]
    pub port: Option<String>,
    /// Print again every interval until Ctrl-C
    #[arg(long)]
    pub watch: bool,
    /// Seconds between prints with --watch (1-3600) [default: 1]
    #[arg(long, value_name = "SECS", requires = "watch")]
    pub interval: Option<u64>,
}

/// `top ...`
#[derive(Debug, Args)]
pub(crate) struct TopCmd {
    /// Print one frame (two samples an interval apart) and exit; with --json, the rates as JSON
    #[arg(long)]
    pub once: bool,
    /// Seconds between samples (1-3600) [default: 1]
    #[arg(long, value_name = "SECS")]
    pub interval: Option<u64>,
}

/// `config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCmd {
    /// Print the configuration document (or write it to a file)
    Export {
        /// Write the document to this file instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Include the encryption keys' material (left out otherwise)
        #[arg(long)]
        include_secrets: bool,
    },
    /// Apply a configuration document: create what is missing, leave what matches
    Import {
        /// The JSON document, as written by `config export`
        file: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["vswitchctl", "network", "ls", "--json", "--socket", "/s"])
            .unwrap();
        assert!(cli.json);
        assert_eq!(cli.socket, Some(PathBuf::from("/s")));
    }

    #[test]
    fn capture_needs_a_file_and_takes_tcpdump_style_flags() {
        assert!(Cli::try_parse_from(["vswitchctl", "capture", "p1"]).is_err());
        let cli = Cli::try_parse_from([
            "vswitchctl",
            "capture",
            "p1",
            "-c",
            "5",
            "-s",
            "128",
            "-w",
            "-",
        ])
        .unwrap();
        let Command::Capture(c) = cli.command else {
            panic!("not a capture: {:?}", cli.command);
        };
        assert_eq!((c.count, c.snaplen), (Some(5), Some(128)));
        assert_eq!(c.direction, CaptureDir::Both);
        assert_eq!(c.write, PathBuf::from("-"));
    }

    #[test]
    fn interval_needs_watch() {
        assert!(Cli::try_parse_from(["vswitchctl", "stats", "--interval", "2"]).is_err());
        assert!(Cli::try_parse_from(["vswitchctl", "stats", "--watch", "--interval", "2"]).is_ok());
    }
}
