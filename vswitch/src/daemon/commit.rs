//! The one commit path: every change to the configuration, whichever command or document it
//! came from, becomes real here, in three steps, and either all of it happens or none of it.

use super::overlay::uplink_mtu_of;
use super::*;

/// What a commit may do with the disk and with devices that cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A command (or an import): a device that cannot be opened, or a state file that cannot
    /// be written, fails the commit and nothing changes.
    Command,
    /// The start-up restore: the state file already says this (it is not rewritten), and a port
    /// whose device cannot be opened comes up down, with the reason, rather than being lost.
    Restore,
}

/// A port opened by this commit, not yet the daemon's.
struct Opened {
    name: String,
    id: PortId,
    rt: PortRuntime,
}

/// Closes the devices a failed commit opened; those it created go away with them.
fn undo(opened: Vec<Opened>) {
    for o in opened {
        let Some(d) = o.rt.device else { continue };
        if d.created() {
            let dev = d.name().to_string();
            if let Err(e) = d.destroy() {
                tracing::warn!(port = %o.name, device = %dev, error = %e, "cannot remove the device of a change not made");
            }
        }
        // A device that was there before (a TAP left by an earlier daemon) is only closed.
    }
}

impl Daemon {
    /// Makes `next` the daemon's configuration (see the module doc of `daemon`).
    pub(super) fn commit(&mut self, next: Desired) -> Result<(), ErrorBody> {
        self.commit_as(next, Mode::Command)
    }

    /// [`Daemon::commit`] with a [`Mode`].
    pub(super) fn commit_as(&mut self, mut next: Desired, mode: Mode) -> Result<(), ErrorBody> {
        // Each (network, VTEP) needs a tunnel port id from the space ports use too; a change
        // that would leave one without is refused rather than accepted and silently inert.
        let starved = next.sync_tunnels();
        if let Some((net, vtep)) = starved.first() {
            let why = format!(
                "no port id left for a tunnel to {vtep} on network '{net}' ({} tunnels short): \
                 ports and remote VTEPs share {MAX_PORTS} ids; remove a peer, a remote MAC \
                 (fdb rm) or a port first",
                starved.len()
            );
            if mode == Mode::Command {
                return Err(err(ErrorCode::Conflict, why));
            }
            tracing::error!("restore: {why}");
        }
        // A port keeps its device while its spec and id stay; no command changes a port in
        // place (a new device under the same name would collide with the old one).
        for (name, p) in &next.ports {
            if self.desired.ports.get(name).is_some_and(|old| old != p) {
                return Err(err(
                    ErrorCode::Internal,
                    format!("port '{name}' cannot change in place; remove it and add it again"),
                ));
            }
        }

        // (a) Open the devices of new ports, the uplink's first so that ports in overlay
        // networks get the MTU it implies. One that fails undoes the others.
        let uplink = next.uplink.as_ref().map(|u| u.port.as_str());
        let mut fresh: Vec<&PortState> = next
            .ports
            .values()
            .filter(|p| !self.desired.ports.contains_key(&p.spec.name))
            .collect();
        fresh.sort_by_key(|p| (Some(p.spec.name.as_str()) != uplink, p.id));
        // TAP devices this change will make are journaled before they are made, so that a
        // crash before the change is saved does not leave them behind (`journal.rs`).
        let journaled = mode == Mode::Command && self.journal_devices(&journal::to_make(&fresh));
        let mut opened: Vec<Opened> = Vec::new();
        for p in fresh {
            let mtu = uplink_mtu_of(&next, |name| {
                opened
                    .iter()
                    .find(|o| o.name == name)
                    .map(|o| &o.rt)
                    .or_else(|| self.runtime.get(name))
                    .and_then(|r| r.device.as_ref())
            });
            match self.open_port(&next, p, mtu, mode == Mode::Command) {
                Ok(rt) => opened.push(Opened {
                    name: p.spec.name.clone(),
                    id: p.id,
                    rt,
                }),
                Err(e) => {
                    undo(opened);
                    if journaled {
                        self.journal_clear();
                    }
                    return Err(e);
                }
            }
        }

        // (b) Persist: once this succeeds the change is accepted.
        let t = Instant::now();
        if mode == Mode::Command && self.defer_persist && opened.is_empty() && !journaled {
            // The cluster store's share, which the store gives again after a restart: written
            // by the next tick (`Daemon::flush_state`), not before it is applied.
            self.persist_due = true;
        } else if mode == Mode::Command {
            let saved = self.persist(&next);
            if let Err(e) = saved {
                undo(opened);
                if journaled {
                    self.journal_clear();
                }
                return Err(e);
            }
            if journaled {
                self.journal_clear();
            }
            self.persist_due = false;
        }

        let persisted = t.elapsed();
        // (c) Swap it in: new ports' queues go to the workers, the snapshot is published (the
        // workers stop forwarding to removed ports), then removed ports are taken apart.
        let old = std::mem::replace(&mut self.desired, next);
        let mut removed = Vec::new();
        for p in old.ports.values() {
            if self.desired.ports.contains_key(&p.spec.name) {
                continue;
            }
            if let Some(rt) = self.runtime.remove(&p.spec.name) {
                removed.push(Opened {
                    name: p.spec.name.clone(),
                    id: p.id,
                    rt,
                });
            }
        }
        // A new port that took a removed port's id gets its queues once the old ones are gone.
        let (later, now): (Vec<Opened>, Vec<Opened>) = opened
            .into_iter()
            .partition(|o| removed.iter().any(|r| r.id == o.id));
        for mut o in now {
            self.attach_port(&o.name, o.id, &mut o.rt);
            self.runtime.insert(o.name, o.rt);
        }
        self.publish();
        for r in removed {
            self.release_port(&r.name, r.id, r.rt);
        }
        for mut o in later {
            self.attach_port(&o.name, o.id, &mut o.rt);
            self.runtime.insert(o.name, o.rt);
        }
        tracing::debug!(
            persist_us = persisted.as_micros() as u64,
            publish_us = (t.elapsed() - persisted).as_micros() as u64,
            "committed"
        );
        self.tell_store();
        Ok(())
    }
}
