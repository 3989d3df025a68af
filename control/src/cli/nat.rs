//! `vswitchctl nat set|ls|stats`: the grammar, the request and how the reply is shown.

use super::check;
use super::plan::{Call, Show};
use super::render::{decode, duration};
use super::table::{key_values, left, right, Table};
use super::CliError;
use clap::{Args, Subcommand};
use control::proto::{cmd, NatLsArgs, NatSession, NatSettings, NatStatsInfo};
use serde_json::Value;

/// `nat ...`
#[derive(Debug, Subcommand)]
pub(crate) enum NatCmd {
    /// Change NAT settings (timeouts in seconds, the outside port range, the table size)
    Set(NatSet),
    /// List NAT sessions with their state, age and time left
    #[command(visible_alias = "list")]
    Ls {
        /// Only sessions of this network
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// At most N sessions [default: 1000]
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Table size, embryonic sessions, created/expired/evicted (totals and per second)
    Stats,
}

/// `nat set ...`
#[derive(Debug, Args)]
pub(crate) struct NatSet {
    /// TCP with a SYN from one side only [default: 240]
    #[arg(long, value_name = "SECS")]
    pub tcp_syn: Option<u32>,
    /// Idle established TCP [default: 7440, RFC 5382]
    #[arg(long, value_name = "SECS")]
    pub tcp_established: Option<u32>,
    /// TCP after a FIN from one side [default: 240]
    #[arg(long, value_name = "SECS")]
    pub tcp_fin: Option<u32>,
    /// TCP after FINs from both sides [default: 240]
    #[arg(long, value_name = "SECS")]
    pub tcp_time_wait: Option<u32>,
    /// TCP after a RST [default: 240]
    #[arg(long, value_name = "SECS")]
    pub tcp_rst: Option<u32>,
    /// Idle UDP [default: 300, RFC 4787]
    #[arg(long, value_name = "SECS")]
    pub udp: Option<u32>,
    /// Idle ICMP echo [default: 60, RFC 5508]
    #[arg(long, value_name = "SECS")]
    pub icmp: Option<u32>,
    /// Lowest outside port [default: 32768]
    #[arg(long, value_name = "PORT")]
    pub port_min: Option<u16>,
    /// Highest outside port [default: 60999]
    #[arg(long, value_name = "PORT")]
    pub port_max: Option<u16>,
    /// Most sessions per worker [default: 65536]; a change empties the tables
    #[arg(long, value_name = "N")]
    pub sessions: Option<u32>,
}

/// The request for a `nat` command.
pub(crate) fn plan(n: &NatCmd) -> Result<Call, CliError> {
    match n {
        NatCmd::Set(s) => {
            let args = NatSettings {
                tcp_syn: s.tcp_syn,
                tcp_established: s.tcp_established,
                tcp_fin: s.tcp_fin,
                tcp_time_wait: s.tcp_time_wait,
                tcp_rst: s.tcp_rst,
                udp: s.udp,
                icmp: s.icmp,
                port_min: s.port_min,
                port_max: s.port_max,
                sessions: s.sessions,
            };
            if args == NatSettings::default() {
                return Err(CliError::Usage(
                    "nat set needs at least one setting, e.g. --tcp-established 7440 (see vswitchctl nat set --help)".into(),
                ));
            }
            Call::new(cmd::NAT_SET, &args, Show::NatSettings)
        }
        NatCmd::Ls { network, limit } => {
            if let Some(n) = network.as_deref() {
                check::network_name(n).map_err(CliError::Usage)?;
            }
            if *limit == Some(0) {
                return Err(CliError::Usage(
                    "--limit 0 shows nothing; give at least 1".into(),
                ));
            }
            let args = NatLsArgs {
                network: network.clone(),
                limit: *limit,
            };
            Call::new(cmd::NAT_LS, &args, Show::NatSessions)
        }
        NatCmd::Stats => Call::new(cmd::NAT_STATS, &serde_json::json!({}), Show::NatStats),
    }
}

fn settings(s: &NatSettings) -> Vec<(&'static str, String)> {
    let v = |x: Option<u32>| x.map_or_else(|| "-".to_string(), |x| format!("{x}s"));
    vec![
        ("tcp syn", v(s.tcp_syn)),
        ("tcp established", v(s.tcp_established)),
        ("tcp fin", v(s.tcp_fin)),
        ("tcp time-wait", v(s.tcp_time_wait)),
        ("tcp rst", v(s.tcp_rst)),
        ("udp", v(s.udp)),
        ("icmp", v(s.icmp)),
        (
            "ports",
            format!(
                "{}-{}",
                s.port_min.unwrap_or_default(),
                s.port_max.unwrap_or_default()
            ),
        ),
        (
            "sessions per worker",
            s.sessions.unwrap_or_default().to_string(),
        ),
    ]
}

/// Renders a `nat` command's result.
pub(crate) fn render(show: &Show, cmd: &str, result: Value) -> Result<String, CliError> {
    Ok(match show {
        Show::NatSessions => {
            let list: Vec<NatSession> = decode(cmd, result)?;
            let mut t = Table::new(&[
                left("NETWORK"),
                left("PROTO"),
                left("INSIDE"),
                left("OUTSIDE"),
                left("REMOTE"),
                left("STATE"),
                right("AGE"),
                right("EXPIRES"),
            ]);
            for s in &list {
                t.row([
                    s.network.clone(),
                    s.proto.clone(),
                    s.inside.clone(),
                    s.outside.clone(),
                    s.remote.clone(),
                    s.state.clone(),
                    duration(s.age_secs),
                    duration(s.expires_secs),
                ]);
            }
            t.render()
        }
        Show::NatStats => {
            let s: NatStatsInfo = decode(cmd, result)?;
            let mut kv = vec![
                ("sessions", format!("{} of {}", s.sessions, s.capacity)),
                ("embryonic", s.embryonic.to_string()),
                (
                    "created",
                    format!("{} ({:.0}/s)", s.created, s.created_per_sec),
                ),
                (
                    "expired",
                    format!("{} ({:.0}/s)", s.expired, s.expired_per_sec),
                ),
                (
                    "evicted",
                    format!("{} ({:.0}/s)", s.evicted, s.evicted_per_sec),
                ),
            ];
            kv.extend(settings(&s.settings));
            key_values(&kv)
        }
        _ => {
            let s: NatSettings = decode(cmd, result)?;
            key_values(&settings(&s))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_needs_a_setting_and_sends_only_what_is_given() {
        let e = plan(&NatCmd::Set(NatSet {
            tcp_syn: None,
            tcp_established: None,
            tcp_fin: None,
            tcp_time_wait: None,
            tcp_rst: None,
            udp: None,
            icmp: None,
            port_min: None,
            port_max: None,
            sessions: None,
        }))
        .unwrap_err();
        assert!(matches!(e, CliError::Usage(m) if m.contains("--tcp-established")));
        let c = plan(&NatCmd::Set(NatSet {
            tcp_syn: None,
            tcp_established: Some(7440),
            tcp_fin: None,
            tcp_time_wait: None,
            tcp_rst: None,
            udp: Some(30),
            icmp: None,
            port_min: None,
            port_max: None,
            sessions: None,
        }))
        .unwrap();
        assert_eq!(c.cmd, "nat.set");
        assert_eq!(c.args, json!({"tcp_established": 7440, "udp": 30}));
    }

    #[test]
    fn sessions_render_as_a_table() {
        let text = render(
            &Show::NatSessions,
            "nat.ls",
            json!([{"network": "blue", "proto": "tcp", "inside": "10.1.0.2:40000",
                    "outside": "192.168.1.2:33000", "remote": "192.168.1.1:80",
                    "state": "established", "age_secs": 65, "expires_secs": 7400, "worker": 0}]),
        )
        .unwrap();
        assert!(text.starts_with("NETWORK"), "{text}");
        assert!(text.contains("10.1.0.2:40000") && text.contains("established"));
        assert!(text.contains("1m05s"), "{text}");
    }
}
