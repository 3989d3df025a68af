//! libnetwork's remote network driver protocol (Docker 20.10): JSON over HTTP/1.1 on a unix
//! socket in `/run/docker/plugins/`. Every call is a `POST /Method` whose body is one JSON
//! object (Docker sends no Content-Type); the answer is a JSON object, with `Err` set when the
//! call failed.
//!
//! The driver keeps no state of its own: a Docker network is the switch's network
//! `dk-<first 12 of the network id>`, an endpoint is the TAP port `vs<first 12 of the endpoint
//! id>`, so a restarted plugin (or daemon) finds everything by name.
//!
//! An endpoint's life: `CreateEndpoint` adds the TAP port in the host's namespace; `Join`
//! hands its name to Docker, which moves the device into the container's sandbox and renames
//! it `eth0`; the driver then asks the daemon to `port locate` it there (in the background,
//! until Docker has moved it), so `port ls` shows where it is and a restarted daemon re-attaches
//! to it in the sandbox; `DeleteEndpoint` removes the port and its device.

use super::{id_prefix, proto_name, publish_ports, unpublish_ports, PortMapping};
use crate::client::Client;
use crate::proto::{cmd, ErrorBody, ErrorCode, NetworkInfo, NetworkSpec, PortLocateArgs};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest request body read (Docker's are a few hundred bytes).
const MAX_BODY: usize = 1 << 20;

/// How long a `Join`'s background `port locate` waits for Docker to move the device.
const LOCATE_FOR: Duration = Duration::from_secs(60);

/// What Docker names the device in the container: `eth` and a number.
const DST_PREFIX: &str = "eth";

/// The switch's network for Docker network `id`.
pub fn network_name(id: &str) -> Result<String, ErrorBody> {
    Ok(format!("dk-{}", id_prefix("network id", id, 12)?))
}

/// The port (and TAP device) for Docker endpoint `id`.
pub fn port_name(id: &str) -> Result<String, ErrorBody> {
    Ok(format!("vs{}", id_prefix("endpoint id", id, 12)?))
}

/// The driver: where `vswitchd`'s control socket is.
#[derive(Debug, Clone)]
pub struct Driver {
    /// `vswitchd`'s control socket.
    pub socket: PathBuf,
}

fn bad(m: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidArgument, m)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, ErrorBody> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("the request has no string field {key}")))
}

/// Strips a prefix length: Docker writes gateways as `172.18.0.1/16`.
fn addr_only(s: &str) -> &str {
    s.split_once('/').map_or(s, |(a, _)| a)
}

/// A truthy `-o` value: absent is false, `-o encrypted` (empty) is true.
fn truthy(v: &Value) -> Result<bool, ErrorBody> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "" | "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(bad(format!("'{s}' is not true or false"))),
        },
        _ => Err(bad(format!("{v} is not true or false"))),
    }
}

/// The switch's network for a `CreateNetwork` request.
pub fn network_spec(req: &Value) -> Result<NetworkSpec, ErrorBody> {
    let mut spec = NetworkSpec {
        name: network_name(str_field(req, "NetworkID")?)?,
        subnet: None,
        gateway: None,
        vni: None,
        encrypted: false,
        esp_encap: None,
        mac_limit: None,
        aging_secs: None,
        learn_remote: None,
        internal: false,
        scope: None,
    };
    let empty = Map::new();
    let opts = req
        .get("Options")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(v) = opts.get("com.docker.network.internal") {
        spec.internal = truthy(v)?;
    }
    if opts
        .get("com.docker.network.enable_ipv6")
        .is_some_and(|v| v.as_bool() == Some(true))
    {
        return Err(bad("vswitch networks are IPv4 only: drop --ipv6"));
    }
    let generic = opts
        .get("com.docker.network.generic")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (k, v) in generic {
        match k.as_str() {
            "vni" => {
                let n = v
                    .as_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .or_else(|| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .filter(|n| (1..=crate::proto::VNI_MAX).contains(n))
                    .ok_or_else(|| bad(format!("-o vni={v} is not a VNI; use 1 to {}", crate::proto::VNI_MAX)))?;
                spec.vni = Some(n);
            }
            "encrypted" => spec.encrypted = truthy(v).map_err(|e| bad(format!("-o encrypted: {e}")))?,
            "internal" => spec.internal = truthy(v).map_err(|e| bad(format!("-o internal: {e}")))?,
            "esp-encap" => {
                spec.esp_encap = Some(match v.as_str() {
                    Some("esp") => crate::proto::EspEncap::Esp,
                    Some("udp") => crate::proto::EspEncap::Udp,
                    _ => return Err(bad(format!("-o esp-encap={v} is not an encapsulation; use esp or udp"))),
                });
            }
            // Read by `peers`.
            "peers" => {}
            other => {
                return Err(bad(format!(
                    "unknown option -o {other}; the vswitch driver takes -o vni=N, -o peers=IP[,IP...], -o encrypted, -o esp-encap=esp|udp and --internal"
                )))
            }
        }
    }
    if spec.encrypted && spec.vni.is_none() {
        return Err(bad("-o encrypted needs an overlay: add -o vni=N"));
    }
    if spec.esp_encap.is_some() && !spec.encrypted {
        return Err(bad(
            "-o esp-encap chooses how ESP travels: add -o encrypted",
        ));
    }
    let pools = req
        .get("IPv4Data")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    match pools {
        [] => {}
        [p] => {
            spec.subnet = Some(str_field(p, "Pool")?.to_string());
            spec.gateway = p
                .get("Gateway")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
                .map(|g| addr_only(g).to_string());
        }
        _ => {
            return Err(bad(
                "a vswitch network has one IPv4 subnet: give one --subnet",
            ))
        }
    }
    if req
        .get("IPv6Data")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(bad("vswitch networks are IPv4 only: drop the IPv6 subnet"));
    }
    Ok(spec)
}

/// The remote VTEPs of an overlay (`-o peers=IP[,IP...]`): every other host's uplink address.
pub fn peers(req: &Value) -> Result<Vec<std::net::Ipv4Addr>, ErrorBody> {
    let Some(v) = req
        .get("Options")
        .and_then(|o| o.get("com.docker.network.generic"))
        .and_then(|g| g.get("peers"))
    else {
        return Ok(Vec::new());
    };
    let list = v.as_str().unwrap_or_default();
    let peers: Result<Vec<_>, _> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| bad(format!("-o peers: '{p}' is not an IPv4 address; write -o peers=192.168.1.11,192.168.1.12")))
        })
        .collect();
    let peers = peers?;
    if !peers.is_empty()
        && req
            .pointer("/Options/com.docker.network.generic/vni")
            .is_none()
    {
        return Err(bad("-o peers needs an overlay: add -o vni=N"));
    }
    Ok(peers)
}

/// The published ports of a `CreateEndpoint` (`com.docker.network.portmap`).
pub fn port_mappings(req: &Value) -> Result<Vec<PortMapping>, ErrorBody> {
    let Some(list) = req
        .get("Options")
        .and_then(|o| o.get("com.docker.network.portmap"))
        .and_then(Value::as_array)
    else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|m| {
            let port = |k: &str| {
                m.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
            };
            let proto = m.get("Proto").and_then(proto_name);
            if let Some(ip) = m.get("HostIP").and_then(Value::as_str).filter(|ip| !ip.is_empty() && *ip != "0.0.0.0") {
                return Err(bad(format!(
                    "-p {ip}:...: published ports answer on the switch's uplink address; drop the host address"
                )));
            }
            match (port("HostPort"), port("Port"), proto) {
                (Some(host_port), Some(container_port), Some(proto)) => Ok(PortMapping {
                    host_port,
                    container_port,
                    proto,
                }),
                _ => Err(bad(format!(
                    "published port {m} needs a host port, a container port and tcp or udp (e.g. -p 8080:80)"
                ))),
            }
        })
        .collect()
}

impl Driver {
    fn client(&self) -> Result<Client, ErrorBody> {
        Client::connect(&self.socket)
    }

    /// Answers one call: the reply object, with `Err` set when it failed.
    pub fn handle(&self, method: &str, body: &[u8]) -> Value {
        let req: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return json!({"Err": format!("{method}: the body is not JSON: {e}")}),
            }
        };
        match self.dispatch(method, &req) {
            Ok(v) => v,
            Err(e) => json!({"Err": e.message}),
        }
    }

    fn dispatch(&self, method: &str, req: &Value) -> Result<Value, ErrorBody> {
        match method {
            "/Plugin.Activate" => Ok(json!({"Implements": ["NetworkDriver"]})),
            "/NetworkDriver.GetCapabilities" => {
                Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))
            }
            "/NetworkDriver.CreateNetwork" => self.create_network(req),
            "/NetworkDriver.DeleteNetwork" => {
                let name = network_name(str_field(req, "NetworkID")?)?;
                self.tolerate_missing(cmd::NETWORK_RM, json!({"name": name}))
            }
            "/NetworkDriver.CreateEndpoint" => self.create_endpoint(req),
            "/NetworkDriver.DeleteEndpoint" => self.delete_endpoint(req),
            "/NetworkDriver.EndpointOperInfo" => Ok(json!({"Value": {}})),
            "/NetworkDriver.Join" => self.join(req),
            "/NetworkDriver.Leave"
            | "/NetworkDriver.ProgramExternalConnectivity"
            | "/NetworkDriver.RevokeExternalConnectivity"
            | "/NetworkDriver.DiscoverNew"
            | "/NetworkDriver.DiscoverDelete"
            | "/NetworkDriver.AllocateNetwork"
            | "/NetworkDriver.FreeNetwork" => Ok(json!({})),
            other => Err(ErrorBody::new(
                ErrorCode::UnknownCommand,
                format!("{other} is not a network driver call this plugin knows"),
            )),
        }
    }

    /// Runs a removal; "it does not exist" is success (Docker retries deletions).
    fn tolerate_missing(&self, cmd: &str, args: Value) -> Result<Value, ErrorBody> {
        match self.client()?.call(cmd, args) {
            Ok(_) => Ok(json!({})),
            Err(e) if e.code == ErrorCode::NotFound => Ok(json!({})),
            Err(e) => Err(e),
        }
    }

    fn create_network(&self, req: &Value) -> Result<Value, ErrorBody> {
        let spec = network_spec(req)?;
        let peers = peers(req)?;
        let mut c = self.client()?;
        match c.call_typed::<_, NetworkInfo>(cmd::NETWORK_CREATE, &spec) {
            Ok(_) => {
                for p in peers {
                    let r = c.call(
                        cmd::PEER_ADD,
                        json!({"network": spec.name, "vtep": p.to_string()}),
                    );
                    if let Err(e) = r {
                        let _ = c.call(cmd::NETWORK_RM, json!({"name": spec.name}));
                        return Err(e);
                    }
                }
                Ok(json!({}))
            }
            // Docker may create a network again after its own restart: the same one is fine.
            Err(e) if e.code == ErrorCode::AlreadyExists => {
                let have: NetworkInfo =
                    c.call_typed(cmd::NETWORK_INSPECT, &json!({"name": spec.name}))?;
                if have.spec.subnet == spec.subnet && have.spec.vni == spec.vni {
                    Ok(json!({}))
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    fn create_endpoint(&self, req: &Value) -> Result<Value, ErrorBody> {
        let net = network_name(str_field(req, "NetworkID")?)?;
        let port = port_name(str_field(req, "EndpointID")?)?;
        let maps = port_mappings(req)?;
        let ip = req
            .get("Interface")
            .and_then(|i| i.get("Address"))
            .and_then(Value::as_str)
            .map(addr_only)
            .unwrap_or_default()
            .to_string();
        let mut c = self.client()?;
        c.call(
            cmd::PORT_ADD,
            json!({"name": port, "type": "tap", "network": net}),
        )?;
        if !maps.is_empty() {
            if let Err(e) = publish_ports(&mut c, &port, &net, &ip, &maps) {
                let _ = c.call(cmd::PORT_RM, json!({"name": port}));
                return Err(e);
            }
        }
        // Docker assigns the address and keeps the device's own MAC.
        Ok(json!({}))
    }

    fn delete_endpoint(&self, req: &Value) -> Result<Value, ErrorBody> {
        let port = port_name(str_field(req, "EndpointID")?)?;
        unpublish_ports(&mut self.client()?, &port)?;
        self.tolerate_missing(cmd::PORT_RM, json!({"name": port}))
    }

    fn join(&self, req: &Value) -> Result<Value, ErrorBody> {
        let net = network_name(str_field(req, "NetworkID")?)?;
        let port = port_name(str_field(req, "EndpointID")?)?;
        let sandbox = str_field(req, "SandboxKey")?.to_string();
        let info: NetworkInfo = self
            .client()?
            .call_typed(cmd::NETWORK_INSPECT, &json!({"name": net}))?;
        // Docker moves the device after this call returns: follow it from the side.
        let socket = self.socket.clone();
        let p = port.clone();
        std::thread::spawn(move || locate(&socket, &p, &sandbox));
        let mut reply = json!({
            "InterfaceName": {"SrcName": port, "DstPrefix": DST_PREFIX},
            // The switch is the gateway: Docker must not add its docker_gwbridge.
            "DisableGatewayService": true,
        });
        if let Some(gw) = info.spec.gateway.as_deref().filter(|_| !info.spec.internal) {
            reply["Gateway"] = json!(gw);
        }
        Ok(reply)
    }
}

/// Asks the daemon to record port `port` in namespace `sandbox` until Docker has moved it there.
fn locate(socket: &Path, port: &str, sandbox: &str) {
    let until = Instant::now() + LOCATE_FOR;
    let args = PortLocateArgs {
        name: port.to_string(),
        netns: Some(sandbox.to_string()),
        // Docker moves the device, then renames it: only the final name is worth recording.
        ifname_prefix: Some(DST_PREFIX.to_string()),
    };
    let mut last = None;
    let mut pause = Duration::from_millis(10);
    while Instant::now() < until {
        let r = Client::connect(socket).and_then(|mut c| {
            c.call(
                cmd::PORT_LOCATE,
                serde_json::to_value(&args).unwrap_or_default(),
            )
        });
        match r {
            Ok(_) => {
                eprintln!("vswitch-docker-plugin: port {port} located in {sandbox}");
                return;
            }
            // Not moved (or renamed) yet, or the daemon is restarting: ask again.
            Err(e) if matches!(e.code, ErrorCode::Conflict | ErrorCode::System) => last = Some(e),
            // Docker mounts the sandbox's namespace file just after Join, too: ask again while
            // the port exists (it goes when the container failed to start).
            Err(e) if e.code == ErrorCode::NotFound && port_exists(socket, port) => last = Some(e),
            Err(e) => {
                eprintln!("vswitch-docker-plugin: cannot locate port {port}: {e}");
                return;
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    if let Some(e) = last {
        eprintln!("vswitch-docker-plugin: port {port} not seen in {sandbox}: {e}");
    }
}

fn port_exists(socket: &Path, port: &str) -> bool {
    Client::connect(socket)
        .and_then(|mut c| c.call(cmd::PORT_INSPECT, json!({"name": port})))
        .is_ok()
}

/// Serves the driver on `listener`, a thread per connection, until the process ends.
pub fn serve(listener: UnixListener, driver: Driver) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                let d = driver.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_conn(s, &d) {
                        eprintln!("vswitch-docker-plugin: connection: {e}");
                    }
                });
            }
            Err(e) => eprintln!("vswitch-docker-plugin: accept: {e}"),
        }
    }
}

/// One HTTP/1.1 connection: requests in turn until the peer closes it.
fn serve_conn(stream: UnixStream, d: &Driver) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if (&mut r).take(8192).read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut len = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if (&mut r).take(8192).read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap_or(usize::MAX);
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let (status, reply) = if len > MAX_BODY {
            close = true;
            (
                "413 Payload Too Large",
                json!({"Err": "request body too large"}),
            )
        } else if method != "POST" {
            let mut body = vec![0; len];
            r.read_exact(&mut body)?;
            (
                "405 Method Not Allowed",
                json!({"Err": "only POST is served"}),
            )
        } else {
            let mut body = vec![0; len];
            r.read_exact(&mut body)?;
            let reply = d.handle(path, &body);
            let summary = reply
                .get("Err")
                .and_then(Value::as_str)
                .map_or("ok".to_string(), |e| format!("error: {e}"));
            eprintln!(
                "vswitch-docker-plugin: {path} {}: {summary}",
                String::from_utf8_lossy(&body).trim()
            );
            ("200 OK", reply)
        };
        let body = reply.to_string();
        write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        w.flush()?;
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NID: &str = "4f1c7d2a9b3e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";

    #[test]
    fn create_network_maps_docker_ipam_and_options() {
        let req = json!({
            "NetworkID": NID,
            "Options": {"com.docker.network.enable_ipv6": false,
                        "com.docker.network.generic": {"vni": "4242", "encrypted": ""}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.9.0.0/24", "Gateway": "10.9.0.1/24"}],
            "IPv6Data": []
        });
        let s = network_spec(&req).unwrap();
        assert_eq!(s.name, "dk-4f1c7d2a9b3e");
        assert_eq!(s.subnet.as_deref(), Some("10.9.0.0/24"));
        assert_eq!(s.gateway.as_deref(), Some("10.9.0.1"));
        assert_eq!(s.vni, Some(4242));
        assert!(s.encrypted && !s.internal);
    }

    #[test]
    fn bad_options_are_refused_with_what_to_do() {
        let with = |generic: Value| {
            network_spec(
                &json!({"NetworkID": NID, "Options": {"com.docker.network.generic": generic}}),
            )
            .unwrap_err()
            .message
        };
        assert!(with(json!({"vnii": "1"})).contains("-o vni=N"));
        assert!(with(json!({"vni": "0"})).contains("use 1 to"));
        assert!(with(json!({"encrypted": ""})).contains("add -o vni=N"));
        assert!(with(json!({"vni": "7", "esp-encap": "udp"})).contains("add -o encrypted"));
        assert!(
            with(json!({"vni": "7", "encrypted": "", "esp-encap": "gre"}))
                .contains("use esp or udp")
        );
        let s = network_spec(
            &json!({"NetworkID": NID, "Options": {"com.docker.network.generic":
            {"vni": "7", "encrypted": "", "esp-encap": "udp"}}}),
        )
        .unwrap();
        assert_eq!(s.esp_encap, Some(crate::proto::EspEncap::Udp));
        let req = |generic: Value| json!({"NetworkID": NID, "Options": {"com.docker.network.generic": generic}});
        assert_eq!(
            peers(&req(
                json!({"vni": "7", "peers": "192.168.1.2, 192.168.1.3"})
            ))
            .unwrap(),
            vec![
                std::net::Ipv4Addr::new(192, 168, 1, 2),
                std::net::Ipv4Addr::new(192, 168, 1, 3)
            ]
        );
        assert!(peers(&req(json!({"vni": "7", "peers": "nope"}))).is_err());
        assert!(peers(&req(json!({"peers": "192.168.1.2"}))).is_err());
        assert!(network_spec(&req(json!({"vni": "7", "peers": "192.168.1.2"}))).is_ok());
        assert!(network_spec(&json!({"NetworkID": "../x"})).is_err());
    }

    #[test]
    fn portmap_becomes_mappings() {
        let req = json!({"Options": {"com.docker.network.portmap": [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": 5353}]}});
        let m = port_mappings(&req).unwrap();
        assert_eq!(m[0].publish_arg(), "8080:80/tcp");
        assert_eq!(m[1].publish_arg(), "5353:53/udp");
        // Docker picks a random host port when none is given; a zero is refused, not published.
        let local = json!({"Options": {"com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": 8080, "HostIP": "127.0.0.1"}]}});
        assert!(port_mappings(&local)
            .unwrap_err()
            .message
            .contains("uplink address"));
        let zero = json!({"Options": {"com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": 0}]}});
        assert!(port_mappings(&zero).is_err());
    }

    #[test]
    fn activation_and_unknown_calls() {
        let d = Driver {
            socket: "/nonexistent".into(),
        };
        assert_eq!(
            d.handle("/Plugin.Activate", b""),
            json!({"Implements": ["NetworkDriver"]})
        );
        assert!(d.handle("/NetworkDriver.Nope", b"{}")["Err"]
            .as_str()
            .unwrap()
            .contains("not a network driver call"));
        assert!(d.handle("/NetworkDriver.CreateNetwork", b"{nope")["Err"]
            .as_str()
            .unwrap()
            .contains("not JSON"));
    }
}
