//! `vswitchctl endpoint add|rm|ls`: names the gateways' DNS answers.

use super::check;
use super::plan::{Call, Show};
use super::render::decode;
use super::table::{left, Table};
use super::CliError;
use clap::Subcommand;
use control::proto::{cmd, EndpointLsArgs, EndpointRmArgs, EndpointSpec};
use serde_json::Value;

/// `endpoint ...`
#[derive(Debug, Subcommand)]
pub(crate) enum EndpointCmd {
    /// Make NAME (and NAME.NET) resolve to IP for DNS queries to NET's gateway; a name given
    /// again with another address gets both (DNS round robin)
    Add {
        /// The name (labels of letters, digits, '-', '_', joined by dots; case-insensitive)
        name: String,
        /// The network (one with a --subnet: its gateway answers DNS)
        #[arg(long, value_name = "NET")]
        network: String,
        /// Its IPv4 address in the network's subnet
        #[arg(long, value_name = "IP")]
        ip: String,
    },
    /// Remove a name (every address of it, or only --ip)
    #[command(visible_alias = "remove")]
    Rm {
        /// The name
        name: String,
        /// Its network
        #[arg(long, value_name = "NET")]
        network: String,
        /// Only this address of it
        #[arg(long, value_name = "IP")]
        ip: Option<String>,
    },
    /// List names
    #[command(visible_alias = "list")]
    Ls {
        /// Only this network's names
        #[arg(long, value_name = "NET")]
        network: Option<String>,
    },
}

fn ip(s: &str) -> Result<(), CliError> {
    s.parse::<std::net::Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| CliError::Usage(format!("'{s}' is not an IPv4 address, e.g. 10.1.0.5")))
}

/// The request for an `endpoint` command.
pub(crate) fn plan(e: &EndpointCmd) -> Result<Call, CliError> {
    let usage = CliError::Usage;
    match e {
        EndpointCmd::Add {
            name,
            network,
            ip: a,
        } => {
            control::text::check_dns_name(name).map_err(usage)?;
            check::network_name(network).map_err(usage)?;
            ip(a)?;
            let spec = EndpointSpec {
                name: name.clone(),
                network: network.clone(),
                ip: a.clone(),
            };
            let done = format!("'{name}' resolves to {a} on network '{network}'");
            Call::new(cmd::ENDPOINT_ADD, &spec, Show::Done(done))
        }
        EndpointCmd::Rm {
            name,
            network,
            ip: a,
        } => {
            check::network_name(network).map_err(usage)?;
            if let Some(a) = a {
                ip(a)?;
            }
            let args = EndpointRmArgs {
                name: name.clone(),
                network: network.clone(),
                ip: a.clone(),
            };
            let done = format!("name '{name}' removed from network '{network}'");
            Call::new(cmd::ENDPOINT_RM, &args, Show::Done(done))
        }
        EndpointCmd::Ls { network } => {
            if let Some(n) = network {
                check::network_name(n).map_err(usage)?;
            }
            let args = EndpointLsArgs {
                network: network.clone(),
            };
            Call::new(cmd::ENDPOINT_LS, &args, Show::Endpoints)
        }
    }
}

/// Renders `endpoint ls`.
pub(crate) fn render(cmd: &str, result: Value) -> Result<String, CliError> {
    let list: Vec<EndpointSpec> = decode(cmd, result)?;
    let mut t = Table::new(&[left("NAME"), left("NETWORK"), left("IP")]);
    for e in list {
        t.row([e.name, e.network, e.ip]);
    }
    Ok(t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_addresses_are_refused_before_sending() {
        let add = |name: &str, ip: &str| {
            plan(&EndpointCmd::Add {
                name: name.into(),
                network: "blue".into(),
                ip: ip.into(),
            })
        };
        assert!(matches!(add("web", "10.1.0.5"), Ok(c) if c.cmd == "endpoint.add"));
        assert!(
            matches!(add("we b", "10.1.0.5"), Err(CliError::Usage(m)) if m.contains("not a valid DNS name"))
        );
        assert!(
            matches!(add("web", "10.1.0"), Err(CliError::Usage(m)) if m.contains("not an IPv4 address"))
        );
        let table = render(
            "endpoint.ls",
            serde_json::json!([{"name": "web", "network": "blue", "ip": "10.1.0.5"}]),
        )
        .unwrap();
        assert!(
            table.contains("web") && table.contains("10.1.0.5"),
            "{table}"
        );
    }
}
