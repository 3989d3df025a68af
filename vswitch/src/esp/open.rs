//! Opening ESP packets from the underlay, for `underlay-in` (one [`Opener`] per worker).
//!
//! The order of checks, each a named drop ([`OpenDrop`]): outer IPv4 and lengths (`esp_runt`,
//! `esp_fragment`), SPI and source (`esp_unknown_spi`), the anti-replay window before any
//! decryption (`esp_replay`, `esp_outside_window`), the ICV (`esp_bad_icv`); only then is the
//! window advanced; then padding (`esp_bad_padding`) and next header (`esp_bad_next_header`).
//!
//! Windows are per worker, exact with one worker. With several, the uplink's flow hash (over
//! the outer addresses and protocol) puts an SA's packets on one queue, but the queue can move
//! (RSS table rewritten; a multi-queue TAP device follows the queue the switch last wrote the
//! flow on), and a replay reaching another worker would pass that worker's window. Sharing the
//! windows (or handing each SA to one owner worker) is open work.

use super::replay::{Reject, Window};
use super::ring::EspConf;
use super::sa::{self, EspIn};
use super::OpenDrop;

/// What opening a packet gave: the SA and where the decrypted VXLAN frame now lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// SPI.
    pub spi: u32,
    /// Sequence number.
    pub seq: u32,
    /// Bytes to remove from the front of the frame.
    pub trim: usize,
    /// Length of the frame after that.
    pub len: usize,
    /// It came as ESP in UDP (RFC 3948), not as IP protocol 50.
    pub udp: bool,
}

/// One worker's receive state: a window per receiving SA.
#[derive(Default)]
pub struct Opener {
    /// Parallel to the ring's receiving SAs: (SA id, window).
    windows: Vec<(u64, Window)>,
    /// Accepted packets of one SA not yet added to its counter: (index, count).
    pending: Option<(usize, u64)>,
}

impl Opener {
    /// Follows a new ring: windows of SAs that stay are kept, new SAs get a fresh one.
    pub fn configure(&mut self, conf: &EspConf) {
        self.pending = None;
        let old = std::mem::take(&mut self.windows);
        self.windows = conf
            .rx()
            .iter()
            .map(|(_, s)| {
                let w = old.iter().find(|(id, _)| *id == s.id);
                (s.id, w.map(|(_, w)| w.clone()).unwrap_or_default())
            })
            .collect();
    }

    /// Adds the pending accepted count to its SA (call at the end of a burst).
    #[inline]
    pub fn flush(&mut self, conf: &EspConf) {
        if let Some((i, n)) = self.pending.take() {
            if let Some((_, s)) = conf.rx().get(i) {
                s.add_rx(n);
            }
        }
    }

    /// Opens the ESP packet `frame` (Ethernet, IPv4 protocol 50 or ESP in UDP, for us) in
    /// place.
    pub fn open(&mut self, conf: &EspConf, frame: &mut [u8]) -> Result<Opened, OpenDrop> {
        let p: EspIn = sa::parse(frame)?;
        self.open_parsed(conf, frame, &p)?;
        let (trim, len) = sa::strip(frame, &p)?;
        Ok(Opened {
            spi: p.spi,
            seq: p.seq,
            trim,
            len,
            udp: p.esp_off != p.ip_end,
        })
    }

    /// Checks `p` (read from `frame` by [`sa::parse`] or [`sa::parse_payload`]) against its
    /// SA's window, authenticates and decrypts it in place, and advances the window. The
    /// trailer is left to be checked.
    pub fn open_parsed(
        &mut self,
        conf: &EspConf,
        frame: &mut [u8],
        p: &EspIn,
    ) -> Result<(), OpenDrop> {
        let i = conf.rx_index(p.spi, p.src).ok_or(OpenDrop::UnknownSpi)?;
        let sa = &conf.rx().get(i).ok_or(OpenDrop::UnknownSpi)?.1;
        if self.windows.get(i).is_none_or(|(id, _)| *id != sa.id) {
            // A ring this worker has not followed yet (configure runs first; kept safe anyway).
            self.configure(conf);
        }
        let w = &mut self.windows.get_mut(i).ok_or(OpenDrop::UnknownSpi)?.1;
        let verdict = w.check(p.seq, p.iv).map_err(|r| match r {
            Reject::Replay => OpenDrop::Replay,
            Reject::OutsideWindow => OpenDrop::OutsideWindow,
        })?;
        sa.decrypt(frame, p)?;
        w.accept(p.seq, p.iv, verdict);
        match &mut self.pending {
            Some((j, n)) if *j == i => *n += 1,
            _ => {
                self.flush(conf);
                self.pending = Some((i, 1));
            }
        }
        Ok(())
    }
}
