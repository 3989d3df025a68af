//! `vswitchctl service create|ls|inspect|rm` and `service backend add|set|rm`: the grammar, the
//! request and how the reply is shown.

use super::check;
use super::plan::{Call, Show};
use super::render::decode;
use super::table::{key_values, left, right, Table};
use super::CliError;
use clap::{Args, Subcommand, ValueEnum};
use control::proto::{cmd, BackendArgs, NameArgs, PortMapping, ServiceInfo, ServiceSpec};
use serde_json::Value;
use std::net::Ipv4Addr;

/// `service ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCmd {
    /// Create a service: a VIP on a network and/or ports published on the uplink address,
    /// load-balanced over backends (Maglev consistent hashing)
    Create(ServiceCreate),
    /// List services
    #[command(visible_alias = "list")]
    Ls,
    /// A service's settings and backends, with their share and live connections
    Inspect {
        /// The service
        name: String,
    },
    /// Remove a service (its connections end at once)
    #[command(visible_alias = "remove")]
    Rm {
        /// The service
        name: String,
    },
    /// A service's backends
    #[command(subcommand)]
    Backend(BackendCmd),
}

/// How a service is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Every host publishes; backends may be anywhere
    Ingress,
    /// Only local backends
    Host,
}

/// What the service's name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EndpointMode {
    /// Its VIP
    Vip,
    /// Every backend's address (no VIP)
    Dnsrr,
}

/// `service create ...`
#[derive(Debug, Args)]
pub(crate) struct ServiceCreate {
    /// The service's name
    pub name: String,
    /// The network its VIP and backends are on (one made with --subnet)
    #[arg(long, value_name = "NET")]
    pub network: String,
    /// The VIP [default: the highest free address of the subnet]
    #[arg(long, value_name = "IP")]
    pub vip: Option<String>,
    /// A port of the VIP: P[:T][/tcp|udp] (T: the backends' port, default P) (repeatable)
    #[arg(long = "port", value_name = "P[:T][/PROTO]")]
    pub ports: Vec<String>,
    /// A port published on the uplink address: P:T[/tcp|udp] (repeatable)
    #[arg(long = "publish", value_name = "P:T[/PROTO]")]
    pub publish: Vec<String>,
    /// Ingress: every host publishes; host: only local backends [default: ingress]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// What the name resolves to in DNS [default: vip]
    #[arg(long, value_enum)]
    pub endpoint_mode: Option<EndpointMode>,
    /// Seconds a removed backend's connections may go on before they are reset (0: at once)
    /// [default: 300]
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u32>,
    /// Active health check from the switch: tcp (a TCP connect to the backends' first TCP
    /// port); two failures in a row take a backend out until one passes
    #[arg(long, value_enum)]
    pub check: Option<Check>,
    /// Seconds between health checks [default: 5]
    #[arg(long, value_name = "SECS", requires = "check")]
    pub interval: Option<u32>,
    /// This host's own address on the network, different on every host: connections to
    /// backends on other hosts (an overlay network) are translated to it (routing mesh)
    #[arg(long, value_name = "IP")]
    pub ingress_ip: Option<String>,
}

/// Health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Check {
    /// A TCP connect (SYN answered by SYN-ACK)
    Tcp,
}

/// `service backend ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BackendCmd {
    /// Add a backend (a container's address on the service's network)
    Add {
        /// The service
        name: String,
        /// The backend's address
        #[arg(long, value_name = "IP")]
        ip: String,
        /// Relative weight, 0 to 10000 (0: drain) [default: 1]
        #[arg(long, value_name = "W")]
        weight: Option<u32>,
        /// Add it marked down (no new connections)
        #[arg(long)]
        down: bool,
    },
    /// Change a backend's weight (0: drain: no new connections, existing ones finish) or
    /// mark it down or up
    Set {
        /// The service
        name: String,
        /// The backend's address
        #[arg(long, value_name = "IP")]
        ip: String,
        /// Relative weight, 0 to 10000 (0: drain)
        #[arg(long, value_name = "W")]
        weight: Option<u32>,
        /// Mark it down: no new connections
        #[arg(long, conflicts_with = "up")]
        down: bool,
        /// Mark it up again
        #[arg(long)]
        up: bool,
    },
    /// Remove a backend; its connections go on for the drain timeout, then are reset
    #[command(visible_alias = "remove")]
    Rm {
        /// The service
        name: String,
        /// The backend's address
        #[arg(long, value_name = "IP")]
        ip: String,
        /// Seconds its connections may go on (0: reset at once) [default: the service's]
        #[arg(long, value_name = "SECS")]
        drain_timeout: Option<u32>,
    },
}

/// `publish ...`: INTERFACE.md's form of a service with one published port.
#[derive(Debug, Subcommand)]
pub(crate) enum PublishCmd {
    /// Publish port P on the uplink address, load-balanced over the backends' port T (a
    /// service named NAME with one published port and no VIP port)
    Add {
        /// The service's name
        name: String,
        /// tcp or udp
        #[arg(long, value_name = "PROTO", default_value = "tcp")]
        proto: String,
        /// The published port
        #[arg(long, value_name = "P")]
        port: u16,
        /// The backends' port
        #[arg(long, value_name = "T")]
        target: u16,
        /// The backends' network
        #[arg(long, value_name = "NET")]
        network: String,
        /// Ingress: every host publishes; host: only local backends [default: ingress]
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// A backend's address (repeatable)
        #[arg(long = "backend", value_name = "IP")]
        backends: Vec<String>,
    },
    /// List services (those with published ports show them)
    #[command(visible_alias = "list")]
    Ls,
    /// Remove a published service
    #[command(visible_alias = "remove")]
    Rm {
        /// The service
        name: String,
    },
}

/// The request for a `publish` command (planned as the `service` command it stands for).
pub(crate) fn plan_publish(p: &PublishCmd) -> Result<Call, CliError> {
    match p {
        PublishCmd::Add {
            name: n,
            proto,
            port,
            target,
            network,
            mode,
            backends,
        } => {
            let publish = format!("{port}:{target}/{proto}");
            PortMapping::parse(&publish, true).map_err(CliError::Usage)?;
            for b in backends {
                ip(b, "--backend")?;
            }
            name(n)?;
            check::network_name(network).map_err(CliError::Usage)?;
            let spec = ServiceSpec {
                name: n.clone(),
                network: network.clone(),
                publish: vec![publish],
                mode: mode.map(|m| {
                    match m {
                        Mode::Ingress => "ingress",
                        Mode::Host => "host",
                    }
                    .to_string()
                }),
                backends: backends
                    .iter()
                    .map(|b| control::proto::BackendSpec {
                        ip: b.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            Call::new(cmd::SERVICE_CREATE, &spec, Show::ServiceCreated)
        }
        PublishCmd::Ls => plan(&ServiceCmd::Ls),
        PublishCmd::Rm { name: n } => plan(&ServiceCmd::Rm { name: n.clone() }),
    }
}

/// The request for a top-level `backend` command (`service backend`).
pub(crate) fn plan_backend(b: &BackendCmd) -> Result<Call, CliError> {
    backend(b)
}

fn name(s: &str) -> Result<(), CliError> {
    control::text::check_name("service", s, 63).map_err(CliError::Usage)
}

fn ip(s: &str, what: &str) -> Result<(), CliError> {
    s.parse::<Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| CliError::Usage(format!("{what} '{s}' is not an IPv4 address")))
}

/// The request for a `service` command.
pub(crate) fn plan(s: &ServiceCmd) -> Result<Call, CliError> {
    match s {
        ServiceCmd::Create(c) => {
            name(&c.name)?;
            check::network_name(&c.network).map_err(CliError::Usage)?;
            if let Some(v) = c.vip.as_deref() {
                ip(v, "--vip")?;
            }
            if let Some(v) = c.ingress_ip.as_deref() {
                ip(v, "--ingress-ip")?;
            }
            for p in &c.ports {
                PortMapping::parse(p, false).map_err(CliError::Usage)?;
            }
            for p in &c.publish {
                PortMapping::parse(p, true).map_err(CliError::Usage)?;
            }
            let spec = ServiceSpec {
                name: c.name.clone(),
                network: c.network.clone(),
                vip: c.vip.clone(),
                ports: c.ports.clone(),
                publish: c.publish.clone(),
                mode: c.mode.map(|m| {
                    match m {
                        Mode::Ingress => "ingress",
                        Mode::Host => "host",
                    }
                    .to_string()
                }),
                endpoint_mode: c.endpoint_mode.map(|m| {
                    match m {
                        EndpointMode::Vip => "vip",
                        EndpointMode::Dnsrr => "dnsrr",
                    }
                    .to_string()
                }),
                drain_timeout: c.drain_timeout,
                check: c.check.map(|Check::Tcp| "tcp".to_string()),
                check_interval: c.interval,
                ingress_ip: c.ingress_ip.clone(),
                backends: Vec::new(),
            };
            Call::new(cmd::SERVICE_CREATE, &spec, Show::ServiceCreated)
        }
        ServiceCmd::Ls => Call::new(cmd::SERVICE_LS, &serde_json::json!({}), Show::Services),
        ServiceCmd::Inspect { name: n } => {
            name(n)?;
            Call::new(
                cmd::SERVICE_INSPECT,
                &NameArgs { name: n.clone() },
                Show::Service,
            )
        }
        ServiceCmd::Rm { name: n } => {
            name(n)?;
            Call::new(
                cmd::SERVICE_RM,
                &NameArgs { name: n.clone() },
                Show::Done(format!("service '{n}' removed")),
            )
        }
        ServiceCmd::Backend(b) => backend(b),
    }
}

fn backend(b: &BackendCmd) -> Result<Call, CliError> {
    let (c, args) = match b {
        BackendCmd::Add {
            name: n,
            ip: a,
            weight,
            down,
        } => (
            cmd::SERVICE_BACKEND_ADD,
            BackendArgs {
                service: n.clone(),
                ip: a.clone(),
                weight: *weight,
                down: down.then_some(true),
                drain_timeout: None,
            },
        ),
        BackendCmd::Set {
            name: n,
            ip: a,
            weight,
            down,
            up,
        } => {
            if weight.is_none() && !down && !up {
                return Err(CliError::Usage(
                    "service backend set needs --weight W, --down or --up".into(),
                ));
            }
            (
                cmd::SERVICE_BACKEND_SET,
                BackendArgs {
                    service: n.clone(),
                    ip: a.clone(),
                    weight: *weight,
                    down: if *down {
                        Some(true)
                    } else {
                        up.then_some(false)
                    },
                    drain_timeout: None,
                },
            )
        }
        BackendCmd::Rm {
            name: n,
            ip: a,
            drain_timeout,
        } => (
            cmd::SERVICE_BACKEND_RM,
            BackendArgs {
                service: n.clone(),
                ip: a.clone(),
                weight: None,
                down: None,
                drain_timeout: *drain_timeout,
            },
        ),
    };
    name(&args.service)?;
    ip(&args.ip, "--ip")?;
    if args.weight.is_some_and(|w| w > 10_000) {
        return Err(CliError::Usage(format!(
            "--weight {} is out of range; give 0 (drain) to 10000",
            args.weight.unwrap_or_default()
        )));
    }
    Call::new(c, &args, Show::Service)
}

/// Renders a `service` command's result.
pub(crate) fn render(show: &Show, cmd: &str, result: Value) -> Result<String, CliError> {
    Ok(match show {
        Show::Services => {
            let list: Vec<ServiceInfo> = decode(cmd, result)?;
            let mut t = Table::new(&[
                left("NAME"),
                left("NETWORK"),
                left("VIP"),
                left("PORTS"),
                left("PUBLISHED"),
                left("MODE"),
                right("BACKENDS"),
            ]);
            for s in &list {
                let up = s.backends.iter().filter(|b| b.state == "up").count();
                t.row([
                    s.name.clone(),
                    s.network.clone(),
                    s.vip.clone().unwrap_or_else(|| "-".into()),
                    dash(&s.ports.join(",")),
                    dash(&s.publish.join(",")),
                    format!("{}/{}", s.mode, s.endpoint_mode),
                    format!("{up}/{}", s.backends.len()),
                ]);
            }
            t.render()
        }
        Show::ServiceCreated => {
            let s: ServiceInfo = decode(cmd, result)?;
            format!(
                "service '{}' created on network '{}' (vip {})\n",
                s.name,
                s.network,
                s.vip.as_deref().unwrap_or("none")
            )
        }
        _ => {
            let s: ServiceInfo = decode(cmd, result)?;
            let mut out = key_values(&[
                ("name", s.name.clone()),
                ("network", s.network.clone()),
                ("vip", s.vip.clone().unwrap_or_else(|| "-".into())),
                ("ports", dash(&s.ports.join(", "))),
                ("published", dash(&s.publish.join(", "))),
                ("mode", s.mode.clone()),
                ("endpoint mode", s.endpoint_mode.clone()),
                ("drain timeout", format!("{}s", s.drain_timeout)),
                (
                    "health check",
                    s.check.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "ingress address",
                    s.ingress_ip.clone().unwrap_or_else(|| "-".into()),
                ),
                ("maglev table", format!("{} slots", s.table_size)),
                ("connections", s.connections.to_string()),
            ]);
            let mut t = Table::new(&[
                left("BACKEND"),
                right("WEIGHT"),
                left("STATE"),
                right("SHARE"),
                right("CONNECTIONS"),
            ]);
            for b in &s.backends {
                t.row([
                    b.ip.clone(),
                    b.weight.to_string(),
                    b.state.clone(),
                    format!("{:.1}%", b.share),
                    b.connections.to_string(),
                ]);
            }
            if !s.backends.is_empty() {
                out.push('\n');
                out.push_str(&t.render());
            }
            out
        }
    })
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_sends_the_spec_and_checks_ports() {
        let c = ServiceCreate {
            name: "web".into(),
            network: "blue".into(),
            vip: None,
            ports: vec!["80:8080".into()],
            publish: vec!["8080:80/tcp".into()],
            mode: Some(Mode::Host),
            endpoint_mode: None,
            drain_timeout: Some(0),
            check: None,
            interval: None,
            ingress_ip: None,
        };
        let call = plan(&ServiceCmd::Create(c)).unwrap();
        assert_eq!(call.cmd, "service.create");
        assert_eq!(
            call.args,
            json!({"name": "web", "network": "blue", "ports": ["80:8080"],
                   "publish": ["8080:80/tcp"], "mode": "host", "drain_timeout": 0})
        );
        let bad = ServiceCreate {
            name: "web".into(),
            network: "blue".into(),
            vip: None,
            ports: vec![],
            publish: vec!["8080".into()],
            mode: None,
            endpoint_mode: None,
            drain_timeout: None,
            check: None,
            interval: None,
            ingress_ip: None,
        };
        let e = plan(&ServiceCmd::Create(bad)).unwrap_err();
        assert!(matches!(e, CliError::Usage(m) if m.contains("needs a target")));
        let e = plan(&ServiceCmd::Backend(BackendCmd::Set {
            name: "web".into(),
            ip: "10.1.0.3".into(),
            weight: None,
            down: false,
            up: false,
        }))
        .unwrap_err();
        assert!(matches!(e, CliError::Usage(m) if m.contains("--weight")));
        let c = plan(&ServiceCmd::Backend(BackendCmd::Set {
            name: "web".into(),
            ip: "10.1.0.3".into(),
            weight: None,
            down: true,
            up: false,
        }))
        .unwrap();
        assert_eq!(
            c.args,
            json!({"service": "web", "ip": "10.1.0.3", "down": true})
        );
    }

    #[test]
    fn publish_add_is_a_service_with_one_published_port() {
        let c = plan_publish(&PublishCmd::Add {
            name: "web".into(),
            proto: "udp".into(),
            port: 5353,
            target: 53,
            network: "blue".into(),
            mode: None,
            backends: vec!["10.1.0.3".into()],
        })
        .unwrap();
        assert_eq!(c.cmd, "service.create");
        assert_eq!(
            c.args,
            json!({"name": "web", "network": "blue", "publish": ["5353:53/udp"],
                   "backends": [{"ip": "10.1.0.3"}]})
        );
    }

    #[test]
    fn inspect_renders_backends_with_share_and_connections() {
        let text = render(
            &Show::Service,
            "service.inspect",
            json!({"name": "web", "network": "blue", "vip": "10.1.0.254", "ports": ["80:8080/tcp"],
                   "publish": [], "mode": "ingress", "endpoint_mode": "vip", "drain_timeout": 300,
                   "table_size": 1021, "connections": 7,
                   "backends": [{"ip": "10.1.0.3", "weight": 2, "state": "up", "share": 66.6,
                                 "connections": 7}]}),
        )
        .unwrap();
        assert!(
            text.contains("10.1.0.254") && text.contains("66.6%"),
            "{text}"
        );
        assert!(text.contains("BACKEND"), "{text}");
    }
}
