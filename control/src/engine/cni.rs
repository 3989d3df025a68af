//! A CNI plugin (spec 1.0; results also in 0.3.x/0.4.0 form): `CNI_COMMAND` ADD, DEL, CHECK and
//! VERSION, the network configuration on stdin, the result or a CNI error object on stdout.
//!
//! ADD asks the IPAM plugin the configuration names (`host-local`, found in `CNI_PATH`) for an
//! address, creates the switch's network on first use (from the address range, unless it
//! exists), adds a TAP port made directly inside `CNI_NETNS` and named `CNI_IFNAME` (no move
//! needed: CNI hands over the namespace, not a device), gives it the address and routes, and
//! publishes `runtimeConfig.portMappings`. DEL undoes that and is idempotent (a missing port,
//! namespace or daemon object is not an error). CHECK compares the port, the interface and
//! the IPAM plugin's own CHECK with `prevResult`.
//!
//! Configuration keys besides the standard ones: `network` (the switch's network; default the
//! configuration's `name`), `socket` (`vswitchd`'s control socket; default `$VSWITCH_SOCKET`
//! or /run/vswitch/vswitchd.sock), and `vni`, `encrypted`, `internal`, `mtu` for a network the
//! plugin creates.

use super::{fnv1a, proto_name, publish_ports, unpublish_ports, PortMapping};
use crate::client::{socket_path, Client};
use crate::proto::{cmd, ErrorBody, ErrorCode, NetworkInfo, NetworkSpec, PortInfo};
use crate::text::{format_mac, parse_cidr, prefix_mask};
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Spec versions this plugin speaks.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// A CNI error: the spec's well-known codes below 100, this plugin's own from 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The code.
    pub code: u32,
    /// What went wrong.
    pub msg: String,
    /// Further detail (the IPAM plugin's own error, say).
    pub details: String,
}

/// Incompatible CNI version.
pub const E_VERSION: u32 = 1;
/// Invalid or missing environment variables.
pub const E_ENV: u32 = 4;
/// I/O failure (a device, a namespace).
pub const E_IO: u32 = 5;
/// The configuration could not be decoded.
pub const E_DECODE: u32 = 6;
/// Invalid network configuration.
pub const E_CONFIG: u32 = 7;
/// Try again later (`vswitchd` is not answering).
pub const E_TRY_LATER: u32 = 11;
/// `vswitchd` refused a request.
pub const E_DAEMON: u32 = 100;
/// CHECK found the container's interface other than the result says.
pub const E_CHECK: u32 = 101;
/// The IPAM plugin failed.
pub const E_IPAM: u32 = 102;
/// Published ports could not be set up.
pub const E_PUBLISH: u32 = 103;

impl CniError {
    /// An error with no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The error object for stdout.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

impl From<ErrorBody> for CniError {
    fn from(e: ErrorBody) -> Self {
        let code = if e.code == ErrorCode::System {
            E_TRY_LATER
        } else {
            E_DAEMON
        };
        CniError::new(code, format!("vswitchd: {}", e.message))
    }
}

/// The `CNI_*` environment of one call.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (a path).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` (`K=V;K=V`).
    pub args: String,
    /// `CNI_PATH` (where plugins, the IPAM one included, are found).
    pub path: String,
}

impl Env {
    /// Reads the process's environment.
    pub fn from_process() -> Env {
        let v = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            command: v("CNI_COMMAND"),
            container_id: v("CNI_CONTAINERID"),
            netns: v("CNI_NETNS"),
            ifname: v("CNI_IFNAME"),
            args: v("CNI_ARGS"),
            path: v("CNI_PATH"),
        }
    }

    fn need(&self, name: &str, v: &str) -> Result<(), CniError> {
        if v.is_empty() {
            return Err(CniError::new(
                E_ENV,
                format!("{name} is not set; a container runtime sets it"),
            ));
        }
        Ok(())
    }

    /// A `CNI_ARGS` value.
    fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// The port for (container, interface): `cni` + 12 hex digits, stable across plugin versions.
pub fn port_name(container_id: &str, ifname: &str) -> String {
    format!(
        "cni{:012x}",
        fnv1a(&[container_id, ifname]) & 0xffff_ffff_ffff
    )
}

/// The published ports of `runtimeConfig.portMappings`.
pub fn port_mappings(conf: &Value) -> Result<Vec<PortMapping>, CniError> {
    let Some(list) = conf
        .get("runtimeConfig")
        .and_then(|r| r.get("portMappings"))
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
            let proto = m.get("protocol").map_or(Some("tcp"), proto_name);
            if let Some(ip) = m.get("hostIP").and_then(Value::as_str).filter(|ip| !ip.is_empty() && *ip != "0.0.0.0") {
                return Err(CniError::new(
                    E_CONFIG,
                    format!("port mapping on host address {ip}: published ports answer on the switch's uplink address; drop the host address"),
                ));
            }
            match (port("hostPort"), port("containerPort"), proto) {
                (Some(host_port), Some(container_port), Some(proto)) => Ok(PortMapping {
                    host_port,
                    container_port,
                    proto,
                }),
                _ => Err(CniError::new(
                    E_CONFIG,
                    format!(
                        "port mapping {m} needs hostPort, containerPort and protocol tcp or udp"
                    ),
                )),
            }
        })
        .collect()
}

/// The configuration of one call, as far as this plugin reads it.
struct Conf {
    version: String,
    network: String,
    socket: PathBuf,
    ipam_type: String,
    raw: Value,
}

fn parse_conf(stdin: &[u8]) -> Result<Conf, CniError> {
    let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            E_DECODE,
            format!("the network configuration is not JSON: {e}"),
        )
    })?;
    let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
    let version = s("cniVersion").unwrap_or_else(|| "0.3.0".to_string());
    if !SUPPORTED.contains(&version.as_str()) {
        return Err(CniError::new(
            E_VERSION,
            format!(
                "cniVersion {version} is not supported; use one of {}",
                SUPPORTED.join(", ")
            ),
        ));
    }
    let name = s("name").unwrap_or_default();
    let network = s("network").unwrap_or(name);
    crate::text::check_name("network", &network, 64).map_err(|e| {
        CniError::new(
            E_CONFIG,
            format!("{e} (set \"network\" in the plugin's configuration)"),
        )
    })?;
    let socket = socket_path(s("socket").as_deref().map(Path::new));
    let ipam_type = raw
        .get("ipam")
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Conf {
        version,
        network,
        socket,
        ipam_type,
        raw,
    })
}

/// Runs one call; `Ok(Some(v))` is printed on stdout.
pub fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, (String, CniError)> {
    if env.command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED}),
        ));
    }
    let conf = parse_conf(stdin).map_err(|e| ("1.0.0".to_string(), e))?;
    let v = conf.version.clone();
    let r = match env.command.as_str() {
        "ADD" => add(env, &conf).map(Some),
        "DEL" => del(env, &conf).map(|_| None),
        "CHECK" => check(env, &conf).map(|_| None),
        "" => Err(CniError::new(E_ENV, "CNI_COMMAND is not set; a container runtime sets it")),
        other => Err(CniError::new(
            E_ENV,
            format!("CNI_COMMAND {other} is not supported; this plugin does ADD, DEL, CHECK and VERSION"),
        )),
    };
    r.map_err(|e| (v, e))
}

/// Runs the IPAM plugin with `command`, the same environment and configuration.
fn ipam(env: &Env, conf: &Conf, command: &str) -> Result<Option<Value>, CniError> {
    if conf.ipam_type.is_empty() {
        return Err(CniError::new(E_CONFIG, "no \"ipam\" section with a \"type\"; use e.g. {\"type\": \"host-local\", \"ranges\": [[{\"subnet\": \"10.88.5.0/24\"}]]}"));
    }
    if conf.ipam_type.contains('/') {
        return Err(CniError::new(
            E_CONFIG,
            "ipam type must be a plugin name, not a path",
        ));
    }
    let bin = env
        .path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(&conf.ipam_type))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                E_CONFIG,
                format!(
                    "IPAM plugin '{}' is not in CNI_PATH ({}); install containernetworking-plugins",
                    conf.ipam_type, env.path
                ),
            )
        })?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::new(E_IPAM, format!("cannot run {}: {e}", bin.display())))?;
    let input = serde_json::to_vec(&conf.raw).unwrap_or_default();
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(&input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(E_IPAM, format!("{}: {e}", bin.display())))?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let why = parsed
            .as_ref()
            .and_then(|v| v.get("msg"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        let mut e = CniError::new(
            E_IPAM,
            format!("IPAM plugin {} {command} failed: {why}", conf.ipam_type),
        );
        e.details = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(e);
    }
    Ok(parsed)
}

/// The first IPv4 address of a result: address, prefix, gateway.
fn first_ipv4(result: &Value) -> Option<(Ipv4Addr, u8, Option<Ipv4Addr>)> {
    result.get("ips")?.as_array()?.iter().find_map(|ip| {
        let (a, p) = parse_cidr(ip.get("address")?.as_str()?).ok()?;
        let gw = ip
            .get("gateway")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok());
        Some((a, p, gw))
    })
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> CniError + '_ {
    move |e| CniError::new(E_IO, format!("{what}: {e}"))
}

fn add(env: &Env, conf: &Conf) -> Result<Value, CniError> {
    env.need("CNI_CONTAINERID", &env.container_id)?;
    env.need("CNI_NETNS", &env.netns)?;
    env.need("CNI_IFNAME", &env.ifname)?;
    let maps = port_mappings(&conf.raw)?;
    let mut c = Client::connect(&conf.socket)?;
    let result = ipam(env, conf, "ADD")?
        .ok_or_else(|| CniError::new(E_IPAM, "the IPAM plugin printed no result"))?;
    let undo_ipam = || {
        let _ = ipam(env, conf, "DEL");
    };
    let Some((addr, prefix, gw)) = first_ipv4(&result) else {
        undo_ipam();
        return Err(CniError::new(
            E_CONFIG,
            "the IPAM plugin gave no IPv4 address; the switch's networks are IPv4",
        ));
    };
    let port = port_name(&env.container_id, &env.ifname);
    // The DNS name registered, to take back if a later step fails.
    let mut registered: Option<(String, String)> = None;
    let r = (|| -> Result<Value, CniError> {
        ensure_network(&mut c, conf, addr, prefix, gw)?;
        let mut spec = json!({"name": port, "type": "tap", "network": conf.network,
                          "netns": env.netns, "ifname": env.ifname});
        if let Some(mtu) = conf.raw.get("mtu").and_then(Value::as_u64) {
            spec["mtu"] = json!(mtu);
        }
        if let Err(e) = c.call(cmd::PORT_ADD, spec.clone()) {
            if e.code != ErrorCode::AlreadyExists {
                return Err(e.into());
            }
            // A port left by an ADD that failed half-way: take it away and start afresh.
            c.call(cmd::PORT_RM, json!({"name": port}))?;
            c.call(cmd::PORT_ADD, spec)?;
        }
        let routes: Vec<(Ipv4Addr, u8, Option<Ipv4Addr>)> = {
            let from_ipam: Vec<_> = result
                .get("routes")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter_map(|r| {
                    let (d, p) = parse_cidr(r.get("dst")?.as_str()?).ok()?;
                    let g = r
                        .get("gw")
                        .and_then(Value::as_str)
                        .and_then(|g| g.parse().ok());
                    Some((d, p, g.or(gw)))
                })
                .collect();
            if from_ipam.is_empty() && !internal(conf) {
                gw.map(|g| (Ipv4Addr::UNSPECIFIED, 0, Some(g)))
                    .into_iter()
                    .collect()
            } else {
                from_ipam
            }
        };
        let ifname = env.ifname.clone();
        let mac = super::netcfg::in_netns(Path::new(&env.netns), move || {
            super::netcfg::set_ipv4(&ifname, addr, prefix)?;
            super::netcfg::set_up(&ifname)?;
            let _ = super::netcfg::set_up("lo");
            for (d, p, g) in &routes {
                super::netcfg::add_route(&ifname, *d, *p, *g)?;
            }
            super::netcfg::mac(&ifname)
        })
        .map_err(io_err("configure the container's interface"))?;
        if let Some(name) = dns_name(env) {
            if c.call(
                cmd::ENDPOINT_ADD,
                json!({"name": name, "network": conf.network, "ip": addr.to_string()}),
            )
            .is_ok()
            {
                registered = Some((name, addr.to_string()));
            }
        }
        publish_ports(&mut c, &port, &conf.network, &addr.to_string(), &maps)
            .map_err(|e| CniError::new(E_PUBLISH, e.message))?;
        let mut out = result.clone();
        out["cniVersion"] = json!(conf.version);
        out["interfaces"] =
            json!([{"name": env.ifname, "mac": format_mac(&mac), "sandbox": env.netns}]);
        if let Some(ips) = out.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                ip["interface"] = json!(0);
                if conf.version.starts_with("0.") {
                    ip["version"] = json!("4");
                } else if let Some(o) = ip.as_object_mut() {
                    o.remove("version");
                }
            }
        }
        Ok(out)
    })();
    if r.is_err() {
        if let Some((name, ip)) = registered {
            // The name must not go on pointing at an address IPAM hands out again.
            let _ = c.call(
                cmd::ENDPOINT_RM,
                json!({"name": name, "network": conf.network, "ip": ip}),
            );
        }
        let _ = c.call(cmd::PORT_RM, json!({"name": port}));
        undo_ipam();
    }
    r
}

fn internal(conf: &Conf) -> bool {
    conf.raw.get("internal").and_then(Value::as_bool) == Some(true)
}

/// The container's name, when the runtime passes one (`K8S_POD_NAME`) and DNS accepts it.
fn dns_name(env: &Env) -> Option<String> {
    let n = env.arg("K8S_POD_NAME")?;
    crate::text::check_dns_name(n).ok().map(|_| n.to_string())
}

/// Creates the switch's network on first use, from the IPAM range.
fn ensure_network(
    c: &mut Client,
    conf: &Conf,
    addr: Ipv4Addr,
    prefix: u8,
    gw: Option<Ipv4Addr>,
) -> Result<(), CniError> {
    let net = Ipv4Addr::from(u32::from(addr) & prefix_mask(prefix));
    let subnet = format!("{net}/{prefix}");
    match c.call_typed::<_, NetworkInfo>(cmd::NETWORK_INSPECT, &json!({"name": conf.network})) {
        // The switch's gateway must be in the range IPAM hands out addresses from.
        Ok(have) if have.spec.subnet.as_deref() != Some(subnet.as_str()) => {
            return Err(CniError::new(
                E_CONFIG,
                format!(
                    "the switch's network {} has subnet {}, but IPAM gave {addr}/{prefix}; make the ipam range {} or name another \"network\"",
                    conf.network,
                    have.spec.subnet.as_deref().unwrap_or("none"),
                    have.spec.subnet.as_deref().unwrap_or("match"),
                ),
            ))
        }
        Ok(_) => return Ok(()),
        Err(e) if e.code == ErrorCode::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let r = &conf.raw;
    let spec = NetworkSpec {
        name: conf.network.clone(),
        subnet: Some(subnet),
        gateway: gw.map(|g| g.to_string()),
        vni: r
            .get("vni")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok()),
        encrypted: r.get("encrypted").and_then(Value::as_bool) == Some(true),
        esp_encap: None,
        mac_limit: None,
        aging_secs: None,
        learn_remote: None,
        internal: internal(conf),
        scope: None,
    };
    match c.call_typed::<_, NetworkInfo>(cmd::NETWORK_CREATE, &spec) {
        Ok(_) => Ok(()),
        // Another ADD made it at the same time.
        Err(e) if e.code == ErrorCode::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn del(env: &Env, conf: &Conf) -> Result<(), CniError> {
    env.need("CNI_CONTAINERID", &env.container_id)?;
    env.need("CNI_IFNAME", &env.ifname)?;
    let port = port_name(&env.container_id, &env.ifname);
    // The address goes back to IPAM whatever the daemon says: a lease must not outlive the
    // container. A daemon that does not answer fails the call, so the runtime asks again.
    let daemon = del_from_daemon(env, conf, &port);
    ipam(env, conf, "DEL")?;
    daemon
}

/// DEL's share on the daemon: published ports, the DNS name, the port.
fn del_from_daemon(env: &Env, conf: &Conf, port: &str) -> Result<(), CniError> {
    let mut c = Client::connect(&conf.socket)?;
    unpublish_ports(&mut c, port)?;
    if let Some(name) = dns_name(env) {
        let ip = conf
            .raw
            .get("prevResult")
            .and_then(first_ipv4)
            .map(|(a, ..)| a.to_string());
        let mut args = json!({"name": name, "network": conf.network});
        if let Some(ip) = ip {
            args["ip"] = json!(ip);
        }
        let _ = c.call(cmd::ENDPOINT_RM, args);
    }
    match c.call(cmd::PORT_RM, json!({"name": port})) {
        Ok(_) => Ok(()),
        Err(e) if e.code == ErrorCode::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn check(env: &Env, conf: &Conf) -> Result<(), CniError> {
    env.need("CNI_CONTAINERID", &env.container_id)?;
    env.need("CNI_NETNS", &env.netns)?;
    env.need("CNI_IFNAME", &env.ifname)?;
    if conf.version.starts_with("0.3") {
        return Err(CniError::new(
            E_VERSION,
            format!(
                "CHECK needs cniVersion 0.4.0 or later, the configuration says {}",
                conf.version
            ),
        ));
    }
    let prev = conf
        .raw
        .get("prevResult")
        .ok_or_else(|| CniError::new(E_CONFIG, "CHECK needs prevResult"))?;
    let (addr, prefix, _) = first_ipv4(prev)
        .ok_or_else(|| CniError::new(E_CONFIG, "prevResult has no IPv4 address"))?;
    let want_mac = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .and_then(|l| {
            l.iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(&env.ifname))
        })
        .and_then(|i| i.get("mac"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let port = port_name(&env.container_id, &env.ifname);
    let mut c = Client::connect(&conf.socket)?;
    let info: PortInfo = c
        .call_typed(cmd::PORT_INSPECT, &json!({"name": port}))
        .map_err(|e| {
            CniError::new(
                E_CHECK,
                format!("the container's port {port} is missing: {}", e.message),
            )
        })?;
    if !info.state.starts_with("up") {
        return Err(CniError::new(
            E_CHECK,
            format!("the container's port {port} is {}", info.state),
        ));
    }
    if info.spec.network.as_deref() != Some(&conf.network) {
        return Err(CniError::new(
            E_CHECK,
            format!(
                "port {port} is on network {:?}, not {}",
                info.spec.network, conf.network
            ),
        ));
    }
    let ifname = env.ifname.clone();
    let (have, mac) = super::netcfg::in_netns(Path::new(&env.netns), move || {
        Ok((super::netcfg::ipv4(&ifname)?, super::netcfg::mac(&ifname)?))
    })
    .map_err(|e| {
        CniError::new(
            E_CHECK,
            format!("interface {} in {}: {e}", env.ifname, env.netns),
        )
    })?;
    if have != Some((addr, prefix)) {
        let now = have.map_or("none".to_string(), |(a, p)| format!("{a}/{p}"));
        return Err(CniError::new(
            E_CHECK,
            format!(
                "interface {} has address {now}, prevResult says {addr}/{prefix}",
                env.ifname
            ),
        ));
    }
    if let Some(w) = want_mac {
        if w != format_mac(&mac) {
            return Err(CniError::new(
                E_CHECK,
                format!(
                    "interface {} has MAC {}, prevResult says {w}",
                    env.ifname,
                    format_mac(&mac)
                ),
            ));
        }
    }
    ipam(env, conf, "CHECK")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_needs_no_configuration() {
        let env = Env {
            command: "VERSION".into(),
            ..Env::default()
        };
        let v = run(&env, b"").unwrap().unwrap();
        assert_eq!(v["supportedVersions"], json!(SUPPORTED));
    }

    #[test]
    fn errors_carry_cni_codes() {
        let env = Env {
            command: "ADD".into(),
            ..Env::default()
        };
        let (_, e) = run(&env, b"{nope").unwrap_err();
        assert_eq!(e.code, E_DECODE);
        let (_, e) = run(&env, br#"{"cniVersion": "9.9.9", "name": "n"}"#).unwrap_err();
        assert_eq!(e.code, E_VERSION);
        let (v, e) = run(
            &env,
            br#"{"cniVersion": "1.0.0", "name": "n", "type": "vswitch"}"#,
        )
        .unwrap_err();
        assert_eq!((v.as_str(), e.code), ("1.0.0", E_ENV));
        assert!(e.msg.contains("CNI_CONTAINERID"));
        let j = e.to_json(&v);
        assert_eq!(j["code"], json!(E_ENV));
        assert!(j["msg"].as_str().is_some());
        let env = Env {
            command: "GC".into(),
            ..Env::default()
        };
        let (_, e) = run(&env, br#"{"cniVersion": "1.0.0", "name": "n"}"#).unwrap_err();
        assert_eq!(e.code, E_ENV);
    }

    #[test]
    fn port_names_are_stable_valid_and_distinct_per_interface() {
        let a = port_name("0123456789abcdef", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("cni"));
        assert_eq!(a, port_name("0123456789abcdef", "eth0"));
        assert_ne!(a, port_name("0123456789abcdef", "eth1"));
    }

    #[test]
    fn port_mappings_from_runtime_config() {
        let c = json!({"runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]}});
        let m = port_mappings(&c).unwrap();
        assert_eq!(m[0].publish_arg(), "8080:80/tcp");
        assert_eq!(m[1].publish_arg(), "5353:53/udp");
        let bad = json!({"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "sctp"}]}});
        assert_eq!(port_mappings(&bad).unwrap_err().code, E_CONFIG);
    }
}
