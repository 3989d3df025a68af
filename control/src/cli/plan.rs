//! Turns a parsed command line into the one request it sends and the way its reply is shown.
//! Everything here happens before the socket is touched.

use super::args::{
    CaptureCmd, CaptureDir, Command, ConfigCmd, FdbCmd, KeyCmd, NetworkCmd, NetworkCreate,
    PeerArgs, PeerCmd, PortAdd, PortCmd, PortKind, TraceCmd, UplinkCmd, UplinkSet,
};
use super::check;
use super::CliError;
use control::proto::{
    cmd, CaptureDirection, CaptureStart, ConfigDoc, EspEncap, ExportArgs, FdbLsArgs, FdbRmArgs,
    KeyAdd, KeyTag, NameArgs, NetworkSpec, PeerLsArgs, PeerSpec, PortLocateArgs, PortSpec,
    PortType, Scope, StaticFdb, StatsArgs, TraceAddArgs, UplinkSpec,
};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One request to send, and what to do with its result.
#[derive(Debug)]
pub(crate) struct Call {
    /// Command name, one of [`cmd`].
    pub cmd: &'static str,
    /// Its arguments.
    pub args: Value,
    /// How a human sees the result.
    pub show: Show,
    /// Send it again after this long, until interrupted (`stats --watch`).
    pub every: Option<Duration>,
}

/// How a result is shown to a human (`--json` prints it as it came instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Show {
    /// `StatusInfo` as key: value lines and a worker table.
    Status,
    /// A confirmation for a `NetworkInfo` just created.
    NetworkCreated,
    /// `[NetworkInfo]` as a table.
    Networks,
    /// `NetworkInfo` as key: value lines.
    Network,
    /// A confirmation for a `PortInfo` just added.
    PortAdded,
    /// `[PortInfo]` as a table.
    Ports,
    /// `PortInfo` as key: value lines.
    Port,
    /// `[FdbEntry]` as a table.
    Fdb,
    /// A confirmation for an `UplinkInfo` just set.
    UplinkSet,
    /// `UplinkInfo` (or `null`) as key: value lines and a neighbour table.
    Uplink,
    /// `[PeerSpec]` as a table.
    Peers,
    /// `ClusterInfo` as key: value lines and a host table.
    Cluster,
    /// `[KeyInfo]` as a table.
    Keys,
    /// `StatsInfo` as tables.
    Stats,
    /// A `null` result, confirmed by this line.
    Done(String),
    /// `ConfigDoc`, printed as pretty JSON or written to the file.
    Export(Option<PathBuf>),
    /// `ImportSummary` for this file.
    Imported(PathBuf),
    /// `StatsInfo` samples turned into rates by `top` (`once`: one frame, then exit).
    Top { once: bool },
    /// A confirmation for `trace add`.
    TraceArmed,
    /// `TraceInfo` as one block per packet.
    Trace,
    /// `[NatSession]` as a table.
    NatSessions,
    /// `NatStatsInfo` as key: value lines.
    NatStats,
    /// `NatSettings` after `nat set`, as key: value lines.
    NatSettings,
    /// `[EndpointSpec]` as a table.
    Endpoints,
    /// A confirmation for a `ServiceInfo` just created.
    ServiceCreated,
    /// `[ServiceInfo]` as a table.
    Services,
    /// `ServiceInfo` as key: value lines and a backend table.
    Service,
    /// `CaptureStarted`, then `capture.read` until done, written as pcap to the file (`None`:
    /// stdout).
    Capture(Option<PathBuf>),
}

impl Call {
    pub(super) fn new(
        cmd: &'static str,
        args: &impl Serialize,
        show: Show,
    ) -> Result<Call, CliError> {
        let args = serde_json::to_value(args)
            .map_err(|e| CliError::Failed(format!("cannot encode the arguments of {cmd}: {e}")))?;
        Ok(Call {
            cmd,
            args,
            show,
            every: None,
        })
    }
}

/// Arguments of the commands that take none.
#[derive(Serialize)]
struct NoArgs {}

/// Checks a command line and builds its request.
pub(crate) fn plan(command: &Command) -> Result<Call, CliError> {
    match command {
        Command::Status => Call::new(cmd::STATUS, &NoArgs {}, Show::Status),
        Command::Network(n) => network(n),
        Command::Port(p) => port(p),
        Command::Fdb(f) => fdb(f),
        Command::Uplink(u) => uplink(u),
        Command::Peer(p) => peer(p),
        Command::Cluster(super::args::ClusterCmd::Ls) => {
            Call::new(cmd::CLUSTER_LS, &NoArgs {}, Show::Cluster)
        }
        Command::Stats(s) => {
            if let Some(p) = s.port.as_deref() {
                check::port_name(p).map_err(CliError::Usage)?;
            }
            let mut call = Call::new(
                cmd::STATS,
                &StatsArgs {
                    port: s.port.clone(),
                },
                Show::Stats,
            )?;
            if s.watch {
                call.every = Some(interval(s.interval)?);
            }
            Ok(call)
        }
        Command::Top(t) => {
            let mut call = Call::new(
                cmd::STATS,
                &StatsArgs { port: None },
                Show::Top { once: t.once },
            )?;
            call.every = Some(interval(t.interval)?);
            Ok(call)
        }
        Command::Trace(TraceCmd::Add { count, port }) => {
            if *count == 0 || *count > 1000 {
                return Err(CliError::Usage(format!(
                    "trace add takes 1 to 1000 packets, not {count}"
                )));
            }
            if let Some(p) = port.as_deref() {
                check::port_name(p).map_err(CliError::Usage)?;
            }
            let args = TraceAddArgs {
                count: *count,
                port: port.clone(),
            };
            Call::new(cmd::TRACE_ADD, &args, Show::TraceArmed)
        }
        Command::Trace(TraceCmd::Show) => Call::new(cmd::TRACE_SHOW, &NoArgs {}, Show::Trace),
        Command::Trace(TraceCmd::Clear) => Call::new(
            cmd::TRACE_CLEAR,
            &NoArgs {},
            Show::Done("trace cleared".into()),
        ),
        Command::Config(ConfigCmd::Export {
            output,
            include_secrets,
        }) => Call::new(
            cmd::CONFIG_EXPORT,
            &ExportArgs {
                include_secrets: *include_secrets,
            },
            Show::Export(output.clone()),
        ),
        Command::Key(k) => key(k),
        Command::Config(ConfigCmd::Import { file }) => {
            let doc = read_doc(file)?;
            Call::new(cmd::CONFIG_IMPORT, &doc, Show::Imported(file.clone()))
        }
        Command::Capture(c) => capture(c),
        Command::Nat(n) => super::nat::plan(n),
        Command::Endpoint(e) => super::endpoint::plan(e),
        Command::Service(s) => super::service::plan(s),
        Command::Publish(p) => super::service::plan_publish(p),
        Command::Backend(b) => super::service::plan_backend(b),
    }
}

fn capture(c: &CaptureCmd) -> Result<Call, CliError> {
    check::port_name(&c.port).map_err(CliError::Usage)?;
    if let Some(s) = c.snaplen {
        if s == 0 || s > control::proto::CAPTURE_MAX_SNAPLEN {
            return Err(CliError::Usage(format!(
                "--snaplen {s} is out of range; give 1 to {} bytes",
                control::proto::CAPTURE_MAX_SNAPLEN
            )));
        }
    }
    if c.count == Some(0) {
        return Err(CliError::Usage(
            "--count 0 would capture nothing; give a positive count, or leave it out to capture until Ctrl-C".into(),
        ));
    }
    let start = CaptureStart {
        port: c.port.clone(),
        direction: match c.direction {
            CaptureDir::Rx => CaptureDirection::Rx,
            CaptureDir::Tx => CaptureDirection::Tx,
            CaptureDir::Both => CaptureDirection::Both,
        },
        snaplen: c.snaplen,
        count: c.count,
        ring: None,
    };
    let out = (c.write.as_os_str() != "-").then(|| c.write.clone());
    Call::new(cmd::CAPTURE_START, &start, Show::Capture(out))
}

/// `--interval SECS` of `stats --watch` and `top` [default: 1].
fn interval(secs: Option<u64>) -> Result<Duration, CliError> {
    let secs = secs.unwrap_or(1);
    if !(1..=check::INTERVAL_MAX_SECS).contains(&secs) {
        return Err(CliError::Usage(format!(
            "interval {secs} is out of range; use 1 to {} seconds",
            check::INTERVAL_MAX_SECS
        )));
    }
    Ok(Duration::from_secs(secs))
}

fn network(command: &NetworkCmd) -> Result<Call, CliError> {
    match command {
        NetworkCmd::Create(c) => {
            let spec = network_spec(c);
            check::network_spec(&spec).map_err(CliError::Usage)?;
            Call::new(cmd::NETWORK_CREATE, &spec, Show::NetworkCreated)
        }
        NetworkCmd::Ls => Call::new(cmd::NETWORK_LS, &NoArgs {}, Show::Networks),
        NetworkCmd::Inspect { name } => {
            check::network_name(name).map_err(CliError::Usage)?;
            Call::new(
                cmd::NETWORK_INSPECT,
                &NameArgs { name: name.clone() },
                Show::Network,
            )
        }
        NetworkCmd::Rm { name } => {
            check::network_name(name).map_err(CliError::Usage)?;
            let done = Show::Done(format!("network '{name}' removed"));
            Call::new(cmd::NETWORK_RM, &NameArgs { name: name.clone() }, done)
        }
        NetworkCmd::Link { a, b } | NetworkCmd::Unlink { a, b } => {
            check::network_name(a).map_err(CliError::Usage)?;
            check::network_name(b).map_err(CliError::Usage)?;
            let link = control::proto::NetLink {
                a: a.clone(),
                b: b.clone(),
            };
            if matches!(command, NetworkCmd::Link { .. }) {
                let done = Show::Done(format!("networks '{a}' and '{b}' linked"));
                Call::new(cmd::NETWORK_LINK, &link, done)
            } else {
                let done = Show::Done(format!("networks '{a}' and '{b}' unlinked"));
                Call::new(cmd::NETWORK_UNLINK, &link, done)
            }
        }
    }
}

fn network_spec(c: &NetworkCreate) -> NetworkSpec {
    NetworkSpec {
        name: c.name.clone(),
        subnet: c.subnet.clone(),
        gateway: c.gateway.clone(),
        vni: c.vni,
        encrypted: c.encrypted,
        esp_encap: match c.esp_encap.as_deref() {
            Some("udp") => Some(EspEncap::Udp),
            Some(_) => Some(EspEncap::Esp),
            None => None,
        },
        mac_limit: c.mac_limit,
        aging_secs: c.aging,
        learn_remote: c.no_learn_remote.then_some(false),
        internal: c.internal,
        scope: (c.scope.as_deref() == Some("global")).then_some(Scope::Global),
    }
}

fn port(command: &PortCmd) -> Result<Call, CliError> {
    match command {
        PortCmd::Add(a) => {
            let spec = port_spec(a)?;
            check::port_spec(&spec).map_err(CliError::Usage)?;
            Call::new(cmd::PORT_ADD, &spec, Show::PortAdded)
        }
        PortCmd::Ls => Call::new(cmd::PORT_LS, &NoArgs {}, Show::Ports),
        PortCmd::Inspect { name } => {
            check::port_name(name).map_err(CliError::Usage)?;
            Call::new(
                cmd::PORT_INSPECT,
                &NameArgs { name: name.clone() },
                Show::Port,
            )
        }
        PortCmd::Rm { name } => {
            check::port_name(name).map_err(CliError::Usage)?;
            let done = Show::Done(format!("port '{name}' removed"));
            Call::new(cmd::PORT_RM, &NameArgs { name: name.clone() }, done)
        }
        PortCmd::Locate { name, netns } => {
            check::port_name(name).map_err(CliError::Usage)?;
            let args = PortLocateArgs {
                name: name.clone(),
                netns: netns.clone(),
                ifname_prefix: None,
            };
            Call::new(cmd::PORT_LOCATE, &args, Show::Port)
        }
    }
}

fn port_spec(a: &PortAdd) -> Result<PortSpec, CliError> {
    let kind = match a.kind {
        Some(PortKind::Tap) => PortType::Tap,
        Some(PortKind::Afxdp) => PortType::Afxdp,
        Some(PortKind::Vlan) => PortType::Vlan,
        None if check::vlan_subinterface(&a.name).is_some() => PortType::Vlan,
        None => {
            return Err(CliError::Usage(format!(
                "say what port '{}' is with --type tap or --type afxdp (or name it PARENT.VID for a VLAN subinterface)",
                a.name
            )))
        }
    };
    Ok(PortSpec {
        name: a.name.clone(),
        kind,
        ifname: a.ifname.clone(),
        queues: a.queues,
        network: a.network.clone(),
        mtu: a.mtu,
        netns: a.netns.clone(),
        mac_limit: a.mac_limit,
    })
}

fn fdb(command: &FdbCmd) -> Result<Call, CliError> {
    match command {
        FdbCmd::Ls { network, limit } => {
            if let Some(n) = network.as_deref() {
                check::network_name(n).map_err(CliError::Usage)?;
            }
            if *limit == Some(0) {
                return Err(CliError::Usage(
                    "--limit 0 lists nothing; give a positive count, or leave it out".into(),
                ));
            }
            // `limit` here is the whole listing's; the pages are asked for by `fdb_pages`.
            Call::new(
                cmd::FDB_LS,
                &FdbLsArgs {
                    network: network.clone(),
                    limit: *limit,
                    after: None,
                },
                Show::Fdb,
            )
        }
        FdbCmd::Add {
            network,
            mac,
            port,
            vtep,
        } => {
            let mac = check::mac(mac).map_err(CliError::Usage)?;
            let entry = StaticFdb {
                network: network.clone(),
                mac: mac.clone(),
                port: port.clone(),
                vtep: vtep.clone(),
                origin: None,
            };
            check::static_fdb(&entry).map_err(CliError::Usage)?;
            let done = Show::Done(format!("static entry {mac} added to network '{network}'"));
            Call::new(cmd::FDB_ADD, &entry, done)
        }
        FdbCmd::Rm { network, mac } => {
            let mac = check::mac(mac).map_err(CliError::Usage)?;
            check::network_name(network).map_err(CliError::Usage)?;
            let done = Show::Done(format!("entry {mac} removed from network '{network}'"));
            Call::new(
                cmd::FDB_RM,
                &FdbRmArgs {
                    network: network.clone(),
                    mac,
                },
                done,
            )
        }
    }
}

fn uplink(command: &UplinkCmd) -> Result<Call, CliError> {
    match command {
        UplinkCmd::Set(s) => {
            let spec = uplink_spec(s)?;
            check::uplink_spec(&spec).map_err(CliError::Usage)?;
            Call::new(cmd::UPLINK_SET, &spec, Show::UplinkSet)
        }
        UplinkCmd::Show => Call::new(cmd::UPLINK_SHOW, &NoArgs {}, Show::Uplink),
    }
}

fn uplink_spec(s: &UplinkSet) -> Result<UplinkSpec, CliError> {
    let vxlan_port = s
        .vxlan_port
        .map(check::vxlan_port)
        .transpose()
        .map_err(CliError::Usage)?;
    Ok(UplinkSpec {
        port: s.port.clone(),
        ip: s.ip.clone(),
        gateway: s.gateway.clone(),
        vxlan_port,
        mac: None,
    })
}

fn peer(command: &PeerCmd) -> Result<Call, CliError> {
    let spec = |a: &PeerArgs| -> Result<PeerSpec, CliError> {
        let spec = PeerSpec {
            network: a.network.clone(),
            vtep: a.vtep.clone(),
            origin: None,
        };
        check::peer_spec(&spec).map_err(CliError::Usage)?;
        Ok(spec)
    };
    match command {
        PeerCmd::Add(a) => {
            let p = spec(a)?;
            let done = Show::Done(format!("peer {} added to network '{}'", p.vtep, p.network));
            Call::new(cmd::PEER_ADD, &p, done)
        }
        PeerCmd::Rm(a) => {
            let p = spec(a)?;
            let done = Show::Done(format!(
                "peer {} removed from network '{}'",
                p.vtep, p.network
            ));
            Call::new(cmd::PEER_RM, &p, done)
        }
        PeerCmd::Ls { network } => {
            if let Some(n) = network.as_deref() {
                check::network_name(n).map_err(CliError::Usage)?;
            }
            Call::new(
                cmd::PEER_LS,
                &PeerLsArgs {
                    network: network.clone(),
                },
                Show::Peers,
            )
        }
    }
}

fn key(command: &KeyCmd) -> Result<Call, CliError> {
    match command {
        KeyCmd::Add { tag, key, key_file } => {
            let key = match (key, key_file) {
                (Some(k), _) => k.clone(),
                (None, Some(f)) => {
                    let text = if f.as_os_str() == "-" {
                        let mut s = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
                    } else {
                        std::fs::read_to_string(f)
                    };
                    text.map_err(|e| {
                        CliError::Failed(format!("cannot read the key from {}: {e}", f.display()))
                    })?
                    .trim()
                    .to_string()
                }
                (None, None) => {
                    return Err(CliError::Usage(
                        "key add needs --key HEX or --key-file FILE".into(),
                    ))
                }
            };
            let key = &key;
            check::key_material(key).map_err(CliError::Usage)?;
            let done = Show::Done(format!(
                "key {tag} added (receives now; sends after: vswitchctl key primary --tag {tag})"
            ));
            let args = KeyAdd {
                tag: *tag,
                key: key.clone(),
            };
            Call::new(cmd::KEY_ADD, &args, done)
        }
        KeyCmd::Primary { tag } => Call::new(
            cmd::KEY_PRIMARY,
            &KeyTag { tag: *tag },
            Show::Done(format!("key {tag} is now the primary (sending) key")),
        ),
        KeyCmd::Rm { tag } => Call::new(
            cmd::KEY_RM,
            &KeyTag { tag: *tag },
            Show::Done(format!("key {tag} removed")),
        ),
        KeyCmd::Ls => Call::new(cmd::KEY_LS, &NoArgs {}, Show::Keys),
    }
}

/// Reads and checks a configuration document, so that a bad file fails here with its name.
fn read_doc(file: &Path) -> Result<ConfigDoc, CliError> {
    let name = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Failed(format!("cannot read {name}: {e}")))?;
    let doc: ConfigDoc = serde_json::from_str(&text)
        .map_err(|e| CliError::Failed(format!("{name} is not a configuration document: {e}")))?;
    check::config_doc(&doc).map_err(|e| CliError::Failed(format!("{name}: {e}")))?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use clap::Parser;
    use serde_json::json;

    fn plan_of(line: &[&str]) -> Result<Call, CliError> {
        let argv = std::iter::once("vswitchctl").chain(line.iter().copied());
        plan(&Cli::try_parse_from(argv).expect("the line parses").command)
    }

    fn usage_error(line: &[&str]) -> String {
        match plan_of(line) {
            Err(CliError::Usage(m)) => m,
            other => panic!("{line:?} gave {other:?}, not a usage error"),
        }
    }

    #[test]
    fn network_create_sends_only_the_given_settings() {
        let call = plan_of(&[
            "network",
            "create",
            "blue",
            "--subnet",
            "10.1.0.0/24",
            "--gateway",
            "10.1.0.1",
            "--vni",
            "100",
            "--encrypted",
            "--mac-limit",
            "10",
            "--aging",
            "30",
        ])
        .unwrap();
        assert_eq!(call.cmd, "network.create");
        assert_eq!(
            call.args,
            json!({"name": "blue", "subnet": "10.1.0.0/24", "gateway": "10.1.0.1", "vni": 100,
                   "encrypted": true, "mac_limit": 10, "aging_secs": 30})
        );
        let call = plan_of(&["network", "create", "red"]).unwrap();
        assert_eq!(call.args, json!({"name": "red"}));
    }

    #[test]
    fn esp_encap_chooses_esp_in_udp_for_an_encrypted_network_only() {
        let line = [
            "network",
            "create",
            "sec",
            "--vni",
            "7",
            "--encrypted",
            "--esp-encap",
        ];
        let call = plan_of(&[&line[..], &["udp"]].concat()).unwrap();
        assert_eq!(
            call.args,
            json!({"name": "sec", "vni": 7, "encrypted": true, "esp_encap": "udp"})
        );
        let call = plan_of(&[&line[..], &["esp"]].concat()).unwrap();
        assert_eq!(call.args["esp_encap"], "esp");
        let e = usage_error(&[
            "network",
            "create",
            "sec",
            "--vni",
            "7",
            "--esp-encap",
            "udp",
        ]);
        assert!(e.contains("add --encrypted"), "{e}");
        let argv = [
            "vswitchctl",
            "network",
            "create",
            "s",
            "--encrypted",
            "--esp-encap",
            "gre",
        ];
        let e = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(e.contains("possible values: esp, udp"), "{e}");
    }

    #[test]
    fn no_learn_remote_is_sent_as_false_and_needs_a_vni() {
        let call =
            plan_of(&["network", "create", "ov", "--vni", "7", "--no-learn-remote"]).unwrap();
        assert_eq!(
            call.args,
            json!({"name": "ov", "vni": 7, "learn_remote": false})
        );
        let call = plan_of(&["network", "create", "ov", "--vni", "7"]).unwrap();
        assert_eq!(call.args, json!({"name": "ov", "vni": 7}));
        let err = usage_error(&["network", "create", "ov", "--no-learn-remote"]);
        assert!(err.contains("--vni"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn uplink_set_sends_the_spec() {
        let call = plan_of(&[
            "uplink",
            "set",
            "up0",
            "--ip",
            "192.168.1.10/24",
            "--gateway",
            "192.168.1.1",
            "--vxlan-port",
            "8472",
        ])
        .unwrap();
        assert_eq!(call.cmd, "uplink.set");
        assert_eq!(call.show, Show::UplinkSet);
        assert_eq!(
            call.args,
            json!({"port": "up0", "ip": "192.168.1.10/24", "gateway": "192.168.1.1",
                   "vxlan_port": 8472})
        );
        let call = plan_of(&["uplink", "set", "up0", "--ip", "10.0.0.1/31"]).unwrap();
        assert_eq!(call.args, json!({"port": "up0", "ip": "10.0.0.1/31"}));
        let call = plan_of(&["uplink", "show"]).unwrap();
        assert_eq!(
            (call.cmd, call.args, call.show),
            ("uplink.show", json!({}), Show::Uplink)
        );
    }

    #[test]
    fn uplink_set_rejects_bad_values() {
        let set = |extra: &[&str]| {
            let mut line = vec!["uplink", "set", "up0"];
            line.extend_from_slice(extra);
            usage_error(&line)
        };
        assert!(set(&["--ip", "192.168.1.10"]).contains("not an IPv4 address with a prefix"));
        assert!(set(&["--ip", "192.168.1.0/24"]).contains("network address"));
        assert!(set(&["--ip", "192.168.1.10/24", "--gateway", "10.0.0.1"]).contains("outside"));
        assert!(set(&["--ip", "192.168.1.10/24", "--vxlan-port", "0"]).contains("1 to 65535"));
        assert!(set(&["--ip", "192.168.1.10/24", "--vxlan-port", "65536"]).contains("1 to 65535"));
        assert!(
            usage_error(&["uplink", "set", "bad/port", "--ip", "192.168.1.10/24"])
                .contains("port name")
        );
    }

    #[test]
    fn peer_commands_send_network_and_vtep() {
        let line = |verb| ["peer", verb, "--network", "blue", "--vtep", "192.0.2.7"];
        let call = plan_of(&line("add")).unwrap();
        assert_eq!(call.cmd, "peer.add");
        assert_eq!(call.args, json!({"network": "blue", "vtep": "192.0.2.7"}));
        assert_eq!(
            call.show,
            Show::Done("peer 192.0.2.7 added to network 'blue'".into())
        );
        let call = plan_of(&line("rm")).unwrap();
        assert_eq!(call.cmd, "peer.rm");
        assert_eq!(call.args, json!({"network": "blue", "vtep": "192.0.2.7"}));
        let call = plan_of(&["peer", "ls"]).unwrap();
        assert_eq!(
            (call.cmd, call.args, call.show),
            ("peer.ls", json!({}), Show::Peers)
        );
        let call = plan_of(&["peer", "ls", "--network", "blue"]).unwrap();
        assert_eq!(call.args, json!({"network": "blue"}));
        for verb in ["add", "rm"] {
            for (vtep, why) in [
                ("224.0.0.1", "multicast"),
                ("0.0.0.0", "unspecified"),
                ("255.255.255.255", "broadcast"),
                ("2001:db8::1", "not an IPv4 address"),
            ] {
                let err = usage_error(&["peer", verb, "--network", "blue", "--vtep", vtep]);
                assert!(err.contains(why), "{verb} {vtep}: {err}");
            }
        }
        assert!(usage_error(&["peer", "ls", "--network", "a b"]).contains("network name"));
    }

    #[test]
    fn key_commands_check_material_without_repeating_it() {
        let k = "000102030405060708090a0b0c0d0e0f10111213";
        let call = plan_of(&["key", "add", "--tag", "3", "--key", k]).unwrap();
        assert_eq!(call.cmd, "key.add");
        assert_eq!(call.args, json!({"tag": 3, "key": k}));
        assert!(format!(
            "{:?}",
            KeyAdd {
                tag: 3,
                key: k.into()
            }
        )
        .contains("tag: 3"));
        assert!(!format!(
            "{:?}",
            KeyAdd {
                tag: 3,
                key: k.into()
            }
        )
        .contains(k));
        let call = plan_of(&["key", "primary", "--tag", "3"]).unwrap();
        assert_eq!((call.cmd, call.args), ("key.primary", json!({"tag": 3})));
        let call = plan_of(&["key", "rm", "--tag", "3"]).unwrap();
        assert_eq!((call.cmd, call.args), ("key.rm", json!({"tag": 3})));
        let call = plan_of(&["key", "ls"]).unwrap();
        assert_eq!((call.cmd, call.show), ("key.ls", Show::Keys));
        for bad in [&k[..38], "zz0102030405060708090a0b0c0d0e0f10111213"] {
            let e = usage_error(&["key", "add", "--tag", "1", "--key", bad]);
            assert!(e.contains("40 or 72 hex digits") && !e.contains(bad), "{e}");
        }
        let file = std::env::temp_dir().join(format!("vswitch-key-{}", std::process::id()));
        std::fs::write(&file, format!("{k}\n")).unwrap();
        let call = plan_of(&[
            "key",
            "add",
            "--tag",
            "4",
            "--key-file",
            file.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(&file);
        assert_eq!(call.unwrap().args, json!({"tag": 4, "key": k}));
        let call = plan_of(&["config", "export", "--include-secrets"]).unwrap();
        assert_eq!(call.args, json!({"include_secrets": true}));
    }

    #[test]
    fn commands_without_arguments_send_an_empty_object() {
        for (line, name) in [
            (&["status"][..], "status"),
            (&["network", "ls"][..], "network.ls"),
            (&["port", "ls"][..], "port.ls"),
            (&["fdb", "ls"][..], "fdb.ls"),
            (&["stats"][..], "stats"),
            (&["config", "export"][..], "config.export"),
        ] {
            let call = plan_of(line).unwrap();
            assert_eq!((call.cmd, call.args), (name, json!({})), "{line:?}");
        }
    }

    #[test]
    fn named_commands_send_the_name() {
        for (line, name) in [
            (&["network", "inspect", "blue"][..], "network.inspect"),
            (&["network", "rm", "blue"][..], "network.rm"),
            (&["port", "inspect", "blue"][..], "port.inspect"),
            (&["port", "rm", "blue"][..], "port.rm"),
        ] {
            let call = plan_of(line).unwrap();
            assert_eq!(
                (call.cmd, call.args),
                (name, json!({"name": "blue"})),
                "{line:?}"
            );
        }
    }

    #[test]
    fn port_add_maps_every_flag() {
        let call = plan_of(&[
            "port",
            "add",
            "tap0",
            "--type",
            "tap",
            "--ifname",
            "vs-tap0",
            "--queues",
            "2",
            "--network",
            "blue",
            "--mtu",
            "9000",
            "--netns",
            "ns1",
            "--mac-limit",
            "8",
        ])
        .unwrap();
        assert_eq!(call.cmd, "port.add");
        assert_eq!(
            call.args,
            json!({"name": "tap0", "type": "tap", "ifname": "vs-tap0", "queues": 2,
                   "network": "blue", "mtu": 9000, "netns": "ns1", "mac_limit": 8})
        );
        let call = plan_of(&["port", "add", "x0", "--type", "afxdp", "--ifname", "eth1"]).unwrap();
        assert_eq!(
            call.args,
            json!({"name": "x0", "type": "afxdp", "ifname": "eth1"})
        );
    }

    #[test]
    fn capture_sends_its_start_and_checks_sizes_first() {
        let call = plan_of(&[
            "capture",
            "p1.10",
            "--direction",
            "rx",
            "-c",
            "3",
            "-w",
            "-",
        ])
        .unwrap();
        assert_eq!(call.cmd, "capture.start");
        assert_eq!(
            call.args,
            json!({"port": "p1.10", "direction": "rx", "count": 3})
        );
        assert_eq!(call.show, Show::Capture(None));
        let call = plan_of(&["capture", "p1", "-w", "/tmp/x.pcap"]).unwrap();
        assert_eq!(call.show, Show::Capture(Some("/tmp/x.pcap".into())));
        assert!(usage_error(&["capture", "p1", "-s", "0", "-w", "-"]).contains("out of range"));
        assert!(usage_error(&["capture", "p1", "-s", "65536", "-w", "-"]).contains("1 to 65535"));
        assert!(usage_error(&["capture", "p1", "-c", "0", "-w", "-"]).contains("positive count"));
    }

    #[test]
    fn fdb_commands_send_canonical_macs() {
        let call = plan_of(&[
            "fdb",
            "add",
            "--network",
            "blue",
            "--mac",
            "02-AA-00-00-00-01",
            "--vtep",
            "192.0.2.9",
        ])
        .unwrap();
        assert_eq!(call.cmd, "fdb.add");
        assert_eq!(
            call.args,
            json!({"network": "blue", "mac": "02:aa:00:00:00:01", "vtep": "192.0.2.9"})
        );
        let call = plan_of(&[
            "fdb",
            "rm",
            "--network",
            "blue",
            "--mac",
            "02:AA:00:00:00:01",
        ])
        .unwrap();
        assert_eq!(
            call.args,
            json!({"network": "blue", "mac": "02:aa:00:00:00:01"})
        );
        let call = plan_of(&["fdb", "ls", "--network", "blue"]).unwrap();
        assert_eq!(call.args, json!({"network": "blue"}));
    }

    #[test]
    fn bad_values_are_usage_errors_before_any_request() {
        assert!(usage_error(&["network", "create", "blue", "--encrypted"]).contains("--vni"));
        assert!(usage_error(&["network", "create", "blue", "--vni", "0"]).contains("out of range"));
        assert!(
            usage_error(&["network", "create", "blue", "--vni", "16777216"])
                .contains("out of range")
        );
        assert!(usage_error(&["network", "rm", "bad/name"]).contains("not a valid network name"));
        assert!(
            usage_error(&["port", "add", "waytoolongportname", "--type", "tap"])
                .contains("port name")
        );
        assert!(
            usage_error(&["fdb", "add", "--network", "b", "--mac", "02:00"]).contains("not a MAC")
        );
        assert!(
            usage_error(&["fdb", "add", "--network", "b", "--mac", "02:00:00:00:00:01"])
                .contains("exactly one")
        );
        assert!(usage_error(&["stats", "--watch", "--interval", "0"]).contains("interval"));
        assert!(usage_error(&["top", "--interval", "0"]).contains("interval"));
        assert!(usage_error(&["top", "--once", "--interval", "3601"]).contains("interval"));
        assert!(usage_error(&["stats", "--port", "a/b"]).contains("port name"));
    }

    #[test]
    fn watch_repeats_at_the_interval() {
        assert_eq!(plan_of(&["stats"]).unwrap().every, None);
        assert_eq!(
            plan_of(&["stats", "--watch"]).unwrap().every,
            Some(Duration::from_secs(1))
        );
        let call = plan_of(&["stats", "--port", "tap0", "--watch", "--interval", "5"]).unwrap();
        assert_eq!(call.every, Some(Duration::from_secs(5)));
        assert_eq!(call.args, json!({"port": "tap0"}));
    }

    #[test]
    fn top_samples_stats_at_the_interval() {
        let call = plan_of(&["top"]).unwrap();
        assert_eq!((call.cmd, call.args), ("stats", json!({})));
        assert_eq!(call.every, Some(Duration::from_secs(1)));
        assert_eq!(call.show, Show::Top { once: false });
        let call = plan_of(&["top", "--once", "--interval", "2"]).unwrap();
        assert_eq!(call.every, Some(Duration::from_secs(2)));
        assert_eq!(call.show, Show::Top { once: true });
    }

    #[test]
    fn config_import_rejects_a_bad_file_naming_it_and_the_position() {
        let path =
            std::env::temp_dir().join(format!("vswitchctl-plan-{}.json", std::process::id()));
        std::fs::write(&path, "{\"version\": 1,\n \"networks\": [}").unwrap();
        let err = plan_of(&["config", "import", path.to_str().unwrap()]).unwrap_err();
        let CliError::Failed(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.starts_with(&format!(
                "{} is not a configuration document: ",
                path.display()
            )),
            "{msg}"
        );
        assert!(msg.contains("line 2 column"), "{msg}");

        std::fs::write(&path, r#"{"version": 1, "networks": [{"name": "blue"}]}"#).unwrap();
        let call = plan_of(&["config", "import", path.to_str().unwrap()]).unwrap();
        assert_eq!(call.cmd, "config.import");
        assert_eq!(
            call.args,
            json!({"version": 1, "networks": [{"name": "blue"}], "ports": [], "fdb": []})
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn config_import_checks_uplink_and_peers() {
        let path =
            std::env::temp_dir().join(format!("vswitchctl-plan-ov-{}.json", std::process::id()));
        let doc = json!({"version": 1, "networks": [{"name": "ov", "vni": 5}], "ports": [],
                         "fdb": [], "uplink": {"port": "up0", "ip": "192.168.1.10/24"},
                         "peers": [{"network": "ov", "vtep": "192.0.2.7"}]});
        std::fs::write(&path, doc.to_string()).unwrap();
        let call = plan_of(&["config", "import", path.to_str().unwrap()]).unwrap();
        assert_eq!(call.args, doc);

        let mut bad = doc.clone();
        bad["peers"][0]["vtep"] = json!("239.0.0.1");
        std::fs::write(&path, bad.to_string()).unwrap();
        let err = plan_of(&["config", "import", path.to_str().unwrap()]).unwrap_err();
        let CliError::Failed(msg) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            msg,
            format!(
                "{}: peers[0]: VTEP 239.0.0.1 is a multicast address; give one host's unicast IPv4 address",
                path.display()
            )
        );
        let mut bad = doc;
        bad["uplink"]["gateway"] = json!("10.0.0.1");
        std::fs::write(&path, bad.to_string()).unwrap();
        let err = plan_of(&["config", "import", path.to_str().unwrap()]).unwrap_err();
        let CliError::Failed(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains(": uplink: gateway 10.0.0.1 is outside"),
            "{msg}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
