//! The devices behind ports, as the control thread holds them: TAP devices it creates (and
//! keeps across crashes) and interfaces it binds AF_XDP sockets to.

use dataplane::pool::Pool;
use dataplane::port::afxdp::AfXdpDevice;
use dataplane::port::tap::TapDevice;
use dataplane::port::PortIo;
use dataplane::sys::{netns, tap as sys_tap, xdp};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A port's device.
pub enum Device {
    /// A persistent multi-queue TAP device.
    Tap(TapDevice),
    /// AF_XDP sockets on an existing interface, with our redirect program attached.
    AfXdp(AfXdpDevice),
}

impl Device {
    /// Kernel interface name.
    pub fn name(&self) -> &str {
        match self {
            Device::Tap(d) => d.name(),
            Device::AfXdp(d) => d.name(),
        }
    }

    /// Whether the daemon created the device (a TAP it did not re-attach to).
    pub fn created(&self) -> bool {
        matches!(self, Device::Tap(d) if d.created())
    }

    /// Queues opened.
    pub fn queue_count(&self) -> usize {
        match self {
            Device::Tap(d) => d.queue_count(),
            Device::AfXdp(d) => d.queue_count(),
        }
    }

    /// MTU as the kernel has it now.
    pub fn mtu(&self) -> io::Result<u32> {
        match self {
            Device::Tap(d) => d.mtu(),
            Device::AfXdp(d) => {
                let name = d.name().to_string();
                netns::run_in(d.netns(), move || sys_tap::mtu(&name))
            }
        }
    }

    /// How frames move: for AF_XDP the attach mode and copy mode, e.g. `native, copy`; for a TAP,
    /// the offloads it takes (with virtio-net headers) and whether its queues read and write
    /// through io_uring.
    pub fn mode(&self) -> Option<String> {
        match self {
            Device::Tap(d) if d.offloads() => Some(format!(
                "offloads: csum, tso4, tso6{}{}{}",
                if d.tunnel_gso() {
                    ", udp-tunnel-gso"
                } else {
                    ""
                },
                if d.uso() { ", uso4, uso6" } else { "" },
                if d.uring() { "; io_uring" } else { "" }
            )),
            Device::Tap(d) if d.uring() => Some("io_uring".to_string()),
            Device::Tap(_) => None,
            Device::AfXdp(d) => Some(d.mode().to_string()),
        }
    }

    /// Whether UDP tunnel super-frames cross the device whole (a TAP with tunnel GSO).
    pub fn tunnel_gso(&self) -> bool {
        matches!(self, Device::Tap(d) if d.tunnel_gso())
    }

    /// Whether UDP super-frames cross the device whole (a TAP with USO).
    pub fn uso(&self) -> bool {
        matches!(self, Device::Tap(d) if d.uso())
    }

    /// The kernel's drop counters of an AF_XDP port's sockets (`None` for a TAP).
    pub fn kernel_stats(&self) -> Option<dataplane::sys::xdp::XskStats> {
        match self {
            Device::Tap(_) => None,
            Device::AfXdp(d) => Some(d.kernel_stats()),
        }
    }

    /// Worker `w`'s handle on the device, if it gets one: every worker gets a TAP queue (queues
    /// are shared when there are fewer than workers); an AF_XDP queue goes to one worker only.
    pub fn queue_for(&mut self, w: usize) -> io::Result<Option<PortIo>> {
        match self {
            Device::Tap(d) => d.queue(w).map(|q| Some(PortIo::Tap(q))),
            Device::AfXdp(d) if w < d.queue_count() => d.queue(w).map(|q| Some(PortIo::AfXdp(q))),
            Device::AfXdp(_) => Ok(None),
        }
    }

    /// Whether the interface still exists (an AF_XDP port's interface can be deleted under it).
    pub fn exists(&self) -> bool {
        match self {
            Device::Tap(_) => true,
            Device::AfXdp(d) => {
                let name = d.name().to_string();
                netns::run_in(d.netns(), move || xdp::ifindex(&name)).is_ok()
            }
        }
    }

    /// A TAP device's current name and namespace descriptor (`None` for AF_XDP ports, which
    /// never move).
    pub fn tap_location(&self) -> Option<io::Result<(String, std::os::fd::OwnedFd)>> {
        match self {
            Device::Tap(d) => Some(d.location()),
            Device::AfXdp(_) => None,
        }
    }

    /// Records a TAP device's new name and namespace.
    pub fn relocated(&mut self, name: &str, netns: Option<&Path>) {
        if let Device::Tap(d) = self {
            d.relocated(name, netns);
        }
    }

    /// Removes what the daemon made: a TAP device goes; an AF_XDP port's program is detached
    /// (the interface stays).
    pub fn destroy(self) -> io::Result<()> {
        match self {
            Device::Tap(d) => d.destroy(),
            Device::AfXdp(d) => {
                drop(d);
                Ok(())
            }
        }
    }
}

/// Opens an AF_XDP port on `ifname`.
pub fn open_afxdp(
    ifname: &str,
    netns: Option<&Path>,
    queues: u16,
    pool: &Arc<Pool>,
) -> io::Result<Device> {
    AfXdpDevice::open(ifname, netns, queues, pool).map(Device::AfXdp)
}
