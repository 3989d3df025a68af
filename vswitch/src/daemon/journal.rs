//! The device journal: a kill -9 between making a TAP device and persisting the change that
//! made it must not leave the device behind. TAP devices persist across the daemon's death (so
//! that containers keep their interfaces over a crash), so one made for a change that was never
//! saved would stay in the kernel, in no port, forever.
//!
//! Before it makes any, the commit path writes the TAP devices a change will create (name and
//! namespace: those of its new TAP ports that do not exist yet) to
//! `STATE_DIR/devices-pending.json`, and removes the file once the change is saved or undone.
//! A daemon that starts and finds the file removes every device named there that the restored
//! configuration does not use, then the file. Devices that existed before the change (which the
//! daemon re-attaches to rather than creates) are never in it.

use super::*;
use serde::{Deserialize, Serialize};
use std::io;

/// A TAP device made by a change not yet persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PendingDevice {
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) netns: Option<PathBuf>,
}

/// The TAP devices that opening `fresh` ports will create: those not there yet.
pub(super) fn to_make(fresh: &[&PortState]) -> Vec<PendingDevice> {
    fresh
        .iter()
        .filter(|p| p.spec.kind == PortType::Tap)
        .filter_map(|p| {
            let name = p.spec.ifname.clone().unwrap_or_else(|| p.spec.name.clone());
            let netns = p.spec.netns.as_deref().map(dataplane::sys::netns::path_of);
            let probe = name.clone();
            let exists = dataplane::sys::netns::run_in(netns.as_deref(), move || {
                Ok(dataplane::sys::tap::exists(&probe))
            })
            // A namespace that cannot be entered fails the port's opening anyway.
            .unwrap_or(true);
            (!exists).then_some(PendingDevice { name, netns })
        })
        .collect()
}

impl Daemon {
    fn journal_file(&self) -> PathBuf {
        self.opts.state_dir.join("devices-pending.json")
    }

    /// Records `devices` (about to be made by a change); returns whether there were any. A
    /// failure to write it is logged, not fatal: the change itself is sound, only a crash
    /// before it is saved could then leave a device behind.
    pub(super) fn journal_devices(&self, devices: &[PendingDevice]) -> bool {
        if devices.is_empty() {
            return false;
        }
        let data = serde_json::to_vec(devices).unwrap_or_default();
        if let Err(e) = os::write_atomic(&self.journal_file(), &data) {
            tracing::warn!(error = %e, "cannot write the device journal");
        }
        true
    }

    /// The change is saved or undone: nothing pending.
    pub(super) fn journal_clear(&self) {
        match std::fs::remove_file(self.journal_file()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove the device journal"),
        }
    }

    /// At start, after the restore: removes the devices a change that was never saved made.
    pub(super) fn journal_recover(&self) {
        let path = self.journal_file();
        let pending: Vec<PendingDevice> = match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "device journal unreadable; ignored");
                Vec::new()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the device journal");
                return;
            }
        };
        for p in pending {
            // Judged by the configuration, not by the devices opened: a saved port whose device
            // could not be opened at restore (its namespace not back yet) still owns it.
            let used = self.desired.ports.values().any(|ps| {
                let spec = &ps.spec;
                spec.kind == PortType::Tap
                    && spec.ifname.as_deref().unwrap_or(&spec.name) == p.name
                    && spec.netns.as_deref().map(dataplane::sys::netns::path_of) == p.netns
            });
            if used {
                continue;
            }
            let name = p.name.clone();
            let exists = dataplane::sys::netns::run_in(p.netns.as_deref(), move || {
                Ok(dataplane::sys::tap::exists(&name))
            })
            .unwrap_or(false);
            if !exists {
                continue;
            }
            match dataplane::port::tap::TapDevice::open(
                &p.name,
                p.netns.as_deref(),
                1,
                None,
                Default::default(),
            )
            .and_then(dataplane::port::tap::TapDevice::destroy)
            {
                Ok(()) => tracing::warn!(
                    device = %p.name,
                    "removed a TAP device made by a change that was never saved (the daemon stopped in between)"
                ),
                Err(e) => tracing::error!(
                    device = %p.name,
                    error = %e,
                    "cannot remove a TAP device left by a change that was never saved"
                ),
            }
        }
        self.journal_clear();
    }
}
