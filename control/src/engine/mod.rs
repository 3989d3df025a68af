//! What the container-engine plugins share: `vswitch-docker-plugin` (libnetwork's remote network
//! driver, [`docker`]) and `vswitch-cni` (a CNI 1.0 plugin, [`cni`]). Both are separate
//! processes that drive `vswitchd` only through the control protocol, as `vswitchctl` does:
//! the daemon's control thread stays the one writer of the configuration, a plugin crash or
//! upgrade never touches the dataplane, and the engines' protocols (HTTP, exec with
//! environment variables) stay out of the daemon.

pub mod cni;
pub mod docker;
pub mod netcfg;

use crate::client::Client;
use crate::proto::{cmd, ErrorBody, ErrorCode};
use serde_json::{json, Value};

/// A port published by the engine (`docker run -p 8080:80`, CNI's `portMappings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// Port on the host (the uplink address).
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: &'static str,
}

impl PortMapping {
    /// `P:T/proto`, as `service create --publish` takes it.
    pub fn publish_arg(&self) -> String {
        format!("{}:{}/{}", self.host_port, self.container_port, self.proto)
    }
}

/// Maps a protocol name or IP protocol number (Docker sends 6 and 17) to `tcp` or `udp`.
pub fn proto_name(p: &Value) -> Option<&'static str> {
    match p {
        Value::Number(n) if n.as_u64() == Some(6) => Some("tcp"),
        Value::Number(n) if n.as_u64() == Some(17) => Some("udp"),
        Value::String(s) if s.eq_ignore_ascii_case("tcp") || s.is_empty() => Some("tcp"),
        Value::String(s) if s.eq_ignore_ascii_case("udp") => Some("udp"),
        _ => None,
    }
}

/// The control requests that publish `maps` for the container at `ip` on `network`, as a
/// service of its own named `service` (the services of issue 12: `service create NAME --network
/// NET --publish P:T/proto --mode host --endpoint-mode dnsrr` and `service backend add NAME --ip
/// IP`).
pub fn publish_requests(
    service: &str,
    network: &str,
    ip: &str,
    maps: &[PortMapping],
) -> Vec<(&'static str, Value)> {
    if maps.is_empty() {
        return Vec::new();
    }
    let publish: Vec<String> = maps.iter().map(PortMapping::publish_arg).collect();
    vec![
        (
            cmd::SERVICE_CREATE,
            // dnsrr: no VIP, which would take an address out of the engine's IPAM range.
            json!({"name": service, "network": network, "publish": publish, "mode": "host",
                   "endpoint_mode": "dnsrr"}),
        ),
        (
            cmd::SERVICE_BACKEND_ADD,
            json!({"service": service, "ip": ip}),
        ),
    ]
}

/// Publishes `maps` through the daemon's services ([`publish_requests`]). A daemon without
/// services answers the first request `unknown_command`: that becomes an `unsupported` error
/// saying so, and nothing was changed.
pub fn publish_ports(
    client: &mut Client,
    service: &str,
    network: &str,
    ip: &str,
    maps: &[PortMapping],
) -> Result<(), ErrorBody> {
    for (i, (cmd, args)) in publish_requests(service, network, ip, maps)
        .into_iter()
        .enumerate()
    {
        match client.call(cmd, args) {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::UnknownCommand => {
                return Err(ErrorBody::new(
                    ErrorCode::Unsupported,
                    format!(
                        "published ports need the services feature, which this vswitchd lacks ({cmd} is unknown to it); run the container without -p / portMappings, or upgrade vswitchd"
                    ),
                ));
            }
            Err(e) => {
                if i > 0 {
                    let _ = unpublish_ports(client, service);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Removes what [`publish_ports`] made; a service that does not exist (nothing was published,
/// or a daemon without services) is not an error.
pub fn unpublish_ports(client: &mut Client, service: &str) -> Result<(), ErrorBody> {
    match client.call(cmd::SERVICE_RM, json!({"name": service})) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::UnknownCommand) => Ok(()),
        Err(e) => Err(e),
    }
}

/// FNV-1a, 64 bits: a name derived from an engine's identifiers must be the same in every
/// version of the plugin (the standard library's hasher promises no such thing).
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The leading characters of an engine's hexadecimal id that name our objects, checked, so
/// that what the engine sends can never make an invalid or surprising name.
pub fn id_prefix(what: &str, id: &str, len: usize) -> Result<String, ErrorBody> {
    let ok = id.len() >= len && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(ErrorBody::new(
            ErrorCode::InvalidArgument,
            format!("{what} '{id}' is not an engine id (at least {len} letters or digits)"),
        ));
    }
    Ok(id.get(..len).unwrap_or(id).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_requests_make_one_host_mode_service_with_the_container_as_backend() {
        let maps = [
            PortMapping {
                host_port: 8080,
                container_port: 80,
                proto: "tcp",
            },
            PortMapping {
                host_port: 5353,
                container_port: 53,
                proto: "udp",
            },
        ];
        let r = publish_requests("vsabc", "dk-123", "10.1.0.2", &maps);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "service.create");
        assert_eq!(
            r[0].1,
            json!({"name": "vsabc", "network": "dk-123", "publish": ["8080:80/tcp", "5353:53/udp"], "mode": "host", "endpoint_mode": "dnsrr"})
        );
        assert_eq!(
            r[1],
            (
                "service.backend.add",
                json!({"service": "vsabc", "ip": "10.1.0.2"})
            )
        );
        assert!(publish_requests("x", "n", "1.2.3.4", &[]).is_empty());
    }

    #[test]
    fn derived_names_are_stable_and_checked() {
        assert_eq!(fnv1a(&["a", "b"]), fnv1a(&["a", "b"]));
        assert_ne!(fnv1a(&["ab", ""]), fnv1a(&["a", "b"]));
        assert_eq!(fnv1a(&[""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            id_prefix("id", "ABCDEF0123456789", 12).unwrap(),
            "abcdef012345"
        );
        assert!(id_prefix("id", "abc", 12).is_err());
        assert!(id_prefix("id", "../../etc/passwd", 4).is_err());
        assert_eq!(proto_name(&json!(6)), Some("tcp"));
        assert_eq!(proto_name(&json!(17)), Some("udp"));
        assert_eq!(proto_name(&json!("UDP")), Some("udp"));
        assert_eq!(proto_name(&json!("sctp")), None);
    }
}
