//! The few ethtool calls the switch needs: transmit checksum offload (tests and testbed), receive
//! queue count and driver name (AF_XDP ports).

use super::cvt;
use std::io;
use std::os::fd::AsRawFd;

const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with `ifr_data` pointing at an ethtool command.
#[repr(C)]
struct IfReq<T> {
    name: [u8; libc::IFNAMSIZ],
    data: *mut T,
    _pad: [u8; 16],
}

/// Runs `SIOCETHTOOL` on `dev` (in the calling thread's namespace) with `cmd`, an ethtool
/// command structure (its first field the command number), which the kernel reads and may fill.
fn ethtool<T>(dev: &str, cmd: &mut T) -> io::Result<()> {
    let bytes = dev.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name '{dev}'"),
        ));
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: std::ptr::from_mut(cmd),
        _pad: [0; 16],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: SIOCETHTOOL reads a `struct ifreq` whose `ifr_data` points at the command, of the
    // layout its command number names; both outlive the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) }).map(|_| ())
}

/// Turns transmit checksum offload of `dev` (in the calling thread's namespace) on or off, as
/// `ethtool -K DEV tx on|off` does; off also turns TSO off, which needs it. With it off the
/// kernel completes checksums before a frame reaches a veth, instead of leaving the far end,
/// a userspace switch here, to do it.
pub fn set_tx_checksum(dev: &str, on: bool) -> io::Result<()> {
    let mut val = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    ethtool(dev, &mut val)
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// Receive queues of `dev` (in the calling thread's namespace), as `ethtool -l` shows them:
/// its rx or combined channels, at least 1.
pub fn rx_queues(dev: &str) -> io::Result<u32> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool(dev, &mut ch)?;
    Ok(ch.rx_count.max(ch.combined_count).max(1))
}

const ETHTOOL_GDRVINFO: u32 = 0x03;

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver of `dev` (in the calling thread's namespace), as `ethtool -i` names it (`veth`).
pub fn driver(dev: &str) -> io::Result<String> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    ethtool(dev, &mut info)?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}
