//! The SAs of one configuration snapshot: the key ring as the workers see it.

use super::sa::Sa;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Sending SAs by peer (the primary key's), receiving SAs by SPI (every key's).
#[derive(Default, Clone)]
pub struct EspConf {
    tx: Vec<(u32, Arc<Sa>)>,
    rx: Vec<(u32, Arc<Sa>)>,
}

impl fmt::Debug for EspConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspConf")
            .field("tx", &self.tx.iter().map(|(_, s)| s).collect::<Vec<_>>())
            .field("rx", &self.rx.iter().map(|(_, s)| s).collect::<Vec<_>>())
            .finish()
    }
}

impl EspConf {
    /// A ring of sending SAs `tx` (one per destination) and receiving SAs `rx`.
    pub fn new(tx: Vec<Arc<Sa>>, rx: Vec<Arc<Sa>>) -> EspConf {
        let mut tx: Vec<(u32, Arc<Sa>)> = tx.into_iter().map(|s| (u32::from(s.dst), s)).collect();
        let mut rx: Vec<(u32, Arc<Sa>)> = rx.into_iter().map(|s| (s.spi, s)).collect();
        tx.sort_by_key(|(k, _)| *k);
        rx.sort_by_key(|(k, s)| (*k, u32::from(s.src)));
        EspConf { tx, rx }
    }

    /// The SA for packets to `dst`.
    #[inline]
    pub fn tx_for(&self, dst: Ipv4Addr) -> Option<&Arc<Sa>> {
        let k = u32::from(dst);
        let i = self.tx.binary_search_by_key(&k, |(d, _)| *d).ok()?;
        self.tx.get(i).map(|(_, s)| s)
    }

    /// Index (into [`EspConf::rx`]) of the receiving SA with `spi` from `src`.
    #[inline]
    pub fn rx_index(&self, spi: u32, src: Ipv4Addr) -> Option<usize> {
        let key = (spi, u32::from(src));
        self.rx
            .binary_search_by_key(&key, |(k, s)| (*k, u32::from(s.src)))
            .ok()
    }

    /// Receiving SAs, sorted by SPI.
    #[inline]
    pub fn rx(&self) -> &[(u32, Arc<Sa>)] {
        &self.rx
    }

    /// Sending SAs, sorted by destination.
    pub fn tx(&self) -> &[(u32, Arc<Sa>)] {
        &self.tx
    }
}
