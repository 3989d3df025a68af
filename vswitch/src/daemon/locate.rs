//! `port locate`: a container engine moved a port's TAP device into its sandbox namespace and
//! renamed it (Docker's `Join` hands the device over by name; Docker moves it and calls it
//! `eth0`). The daemon learns where the device is through the device's own descriptor, never
//! by its name, and records the namespace and the current name: `port ls` shows them, and a
//! daemon restarted after a crash re-attaches to the device there (a persistent TAP keeps the
//! container's addresses and routes).

use super::*;
use std::os::fd::OwnedFd;

impl Daemon {
    /// Records where port `a.name`'s TAP device is, if it is in `a.netns` (none: the daemon's
    /// own namespace); a `conflict` error says where it is instead, so a caller may ask again
    /// (`not_found`: no such port or namespace, asking again will not help).
    pub(super) fn port_locate(&mut self, a: PortLocateArgs) -> Result<(), ErrorBody> {
        let name = a.name.as_str();
        let p = self.desired.ports.get(name).ok_or_else(|| no_port(name))?;
        if p.spec.kind != PortType::Tap {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!(
                    "port '{name}' is a {} port; only TAP devices are moved by container engines",
                    p.spec.kind
                ),
            ));
        }
        let down = || {
            err(
                ErrorCode::NotFound,
                format!(
                    "port '{name}' has no device (it is down; see vswitchctl port inspect {name})"
                ),
            )
        };
        let dev = self
            .runtime
            .get(name)
            .and_then(|r| r.device.as_ref())
            .ok_or_else(down)?;
        let (current, in_ns) = dev.tap_location().ok_or_else(down)?.map_err(|e| {
            err(
                ErrorCode::System,
                format!("cannot ask the kernel where port '{name}''s device is: {e}"),
            )
        })?;
        let (want, ns_path) = match a.netns.as_deref().filter(|s| !s.is_empty()) {
            Some(ns) => {
                let path = netns::path_of(ns);
                let f = netns::open(&path).map_err(|e| {
                    err(ErrorCode::NotFound, format!("{e}; give the namespace the device was moved into (a name under /run/netns or a path such as Docker's sandbox key)"))
                })?;
                (OwnedFd::from(f), Some(ns.to_string()))
            }
            None => (own_netns()?, None),
        };
        let here = netns::same(&in_ns, &want)
            .map_err(|e| err(ErrorCode::System, format!("cannot compare namespaces: {e}")))?;
        if !here {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "port '{name}''s device (now '{current}') is not in {} yet; ask again once the engine has moved it",
                    ns_path
                        .as_deref()
                        .map_or("the daemon's namespace".to_string(), |n| format!("namespace {n}"))
                ),
            ));
        }
        if let Some(prefix) = a.ifname_prefix.as_deref() {
            if !current.starts_with(prefix) {
                return Err(err(
                    ErrorCode::Conflict,
                    format!("port '{name}''s device is '{current}', not yet renamed to {prefix}N; ask again once the engine has renamed it"),
                ));
            }
        }
        let mut spec = p.spec.clone();
        spec.netns = ns_path.clone();
        spec.ifname = (current != spec.name).then(|| current.clone());
        if spec == p.spec {
            return Ok(());
        }
        let mut next = self.desired.clone();
        if let Some(ps) = next.ports.get_mut(name) {
            ps.spec = spec;
        }
        self.persist(&next)?;
        // Only where the device lives changed: the snapshot (networks, ids, MTUs) is the same.
        self.desired = next;
        if let Some(d) = self.runtime.get_mut(name).and_then(|r| r.device.as_mut()) {
            d.relocated(&current, ns_path.as_deref().map(netns::path_of).as_deref());
        }
        tracing::info!(port = %name, device = %current, netns = ns_path.as_deref().unwrap_or("-"), "port's device located");
        Ok(())
    }
}

/// A descriptor of the daemon's own network namespace.
fn own_netns() -> Result<OwnedFd, ErrorBody> {
    netns::open(Path::new("/proc/self/ns/net"))
        .map(OwnedFd::from)
        .map_err(|e| err(ErrorCode::System, e.to_string()))
}
