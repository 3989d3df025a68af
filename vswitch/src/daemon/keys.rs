//! `key add|primary|rm|ls`: the overlay encryption keys, and the ESP security associations the
//! workers get from them (one per key tag, per direction, per peer VTEP of an encrypted
//! network; see `crate::esp::sa` for how SPIs and per-SA keys are derived).
//!
//! Key material lives in the desired state (so in the state file, mode 0600) and in the SAs;
//! it never appears in a log line, an error message, `key ls`, a trace, the metrics or `config
//! export` without `--include-secrets` (`KeySpec`'s `Debug` leaves it out).

use super::*;
use crate::esp::ring::EspConf;
use crate::esp::sa::{self, Sa};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Parses hex keying material; the message never repeats what was given.
pub(super) fn parse_key(hex: &str) -> Result<Vec<u8>, ErrorBody> {
    let hex = hex.trim();
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    let bad = || {
        err(
            ErrorCode::InvalidArgument,
            format!(
                "--key must be {} or {} hex digits (RFC 4106: a 16- or 32-byte AES key, then a 4-byte salt), e.g. from: od -An -tx1 -N20 /dev/urandom | tr -d ' \\n'",
                sa::KEY_LENS[0] * 2,
                sa::KEY_LENS[1] * 2
            ),
        )
    };
    if !hex.is_ascii() || !hex.len().is_multiple_of(2) || !sa::KEY_LENS.contains(&(hex.len() / 2)) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

fn no_key(tag: u32) -> ErrorBody {
    err(
        ErrorCode::NotFound,
        format!("key {tag} does not exist; see vswitchctl key ls"),
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Desired {
    /// One more key (receive only until it is made primary).
    pub(super) fn add_key(&self, spec: KeySpec) -> Result<Desired, ErrorBody> {
        parse_key(&spec.key)?;
        if self.keys.iter().any(|k| k.tag == spec.tag) {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!(
                    "key {} already exists; pick another tag or remove it first (vswitchctl key rm --tag {})",
                    spec.tag, spec.tag
                ),
            ));
        }
        if spec.primary && self.keys.iter().any(|k| k.primary) {
            return Err(err(
                ErrorCode::InvalidArgument,
                "two primary keys in the document; keep one",
            ));
        }
        let mut next = self.clone();
        next.keys.push(spec);
        next.keys.sort_by_key(|k| k.tag);
        Ok(next)
    }

    /// Makes `tag` the sending key.
    pub(super) fn set_primary_key(&self, tag: u32) -> Result<Desired, ErrorBody> {
        if !self.keys.iter().any(|k| k.tag == tag) {
            return Err(no_key(tag));
        }
        let mut next = self.clone();
        for k in &mut next.keys {
            k.primary = k.tag == tag;
        }
        Ok(next)
    }

    /// Removes a key that is not the primary.
    pub(super) fn remove_key(&self, tag: u32) -> Result<Desired, ErrorBody> {
        let k = self
            .keys
            .iter()
            .find(|k| k.tag == tag)
            .ok_or_else(|| no_key(tag))?;
        if k.primary {
            return Err(err(
                ErrorCode::Conflict,
                format!("key {tag} is the primary (sending) key; make another key primary first (vswitchctl key primary --tag N)"),
            ));
        }
        let mut next = self.clone();
        next.keys.retain(|k| k.tag != tag);
        Ok(next)
    }

    /// Remote VTEPs of encrypted networks.
    pub(super) fn encrypted_peers(&self) -> BTreeSet<Ipv4Addr> {
        self.tunnel_ids
            .keys()
            .filter(|(net, _)| self.nets.get(net).is_some_and(|n| n.spec.encrypted))
            .map(|(_, ip)| *ip)
            .collect()
    }
}

/// An SA's identity: (tag, source VTEP, destination VTEP).
type SaKey = (u32, Ipv4Addr, Ipv4Addr);

/// The SAs made so far, kept across snapshots so their packet counters go on (an SA made anew
/// would start its sequence numbers again).
#[derive(Default)]
pub(super) struct SaCache {
    /// (tag, source, destination) -> (the tag's keying material, the SA).
    map: HashMap<SaKey, (Vec<u8>, Arc<Sa>)>,
}

impl SaCache {
    fn get(&mut self, master: &[u8], tag: u32, src: Ipv4Addr, dst: Ipv4Addr) -> Option<Arc<Sa>> {
        let k = (tag, src, dst);
        if let Some((m, s)) = self.map.get(&k) {
            if m == master {
                return Some(s.clone());
            }
        }
        let s = Arc::new(Sa::new(master, src, dst, tag, crate::esp::wall_ns())?);
        self.map.insert(k, (master.to_vec(), s.clone()));
        Some(s)
    }
}

impl Daemon {
    /// The SAs of the current configuration (the snapshot's share, compiled by the daemon
    /// because SAs outlive snapshots).
    pub(super) fn esp_ring(&mut self) -> Arc<EspConf> {
        let d = &self.desired;
        let local = d
            .uplink
            .as_ref()
            .and_then(|u| super::parse_cidr(&u.ip).ok())
            .map(|(ip, _)| ip);
        let (mut tx, mut rx, mut keep) = (Vec::new(), Vec::new(), HashSet::new());
        if let Some(me) = local {
            for peer in d.encrypted_peers() {
                for k in &d.keys {
                    let Ok(master) = parse_key(&k.key) else {
                        continue;
                    };
                    if let Some(s) = self.sas.get(&master, k.tag, peer, me) {
                        keep.insert((k.tag, peer, me));
                        rx.push(s);
                    }
                    if k.primary {
                        if let Some(s) = self.sas.get(&master, k.tag, me, peer) {
                            keep.insert((k.tag, me, peer));
                            tx.push(s);
                        }
                    }
                }
            }
        }
        // A key that stops being primary keeps its sending SA (and counter) for a while in case
        // it comes back; only SAs of removed keys or peers go.
        let tags: HashSet<u32> = d.keys.iter().map(|k| k.tag).collect();
        self.sas
            .map
            .retain(|k, _| keep.contains(k) || (tags.contains(&k.0) && local == Some(k.1)));
        Arc::new(EspConf::new(tx, rx))
    }

    pub(super) fn key_add(&mut self, a: KeyAdd) -> Result<(), ErrorBody> {
        let tag = a.tag;
        let spec = KeySpec {
            tag,
            key: a.key,
            primary: false,
            added: now_unix(),
        };
        let next = self.desired.add_key(spec)?;
        self.commit(next)?;
        tracing::info!(
            tag,
            "encryption key added (receive only until made primary)"
        );
        Ok(())
    }

    pub(super) fn key_primary(&mut self, tag: u32) -> Result<(), ErrorBody> {
        let next = self.desired.set_primary_key(tag)?;
        self.commit(next)?;
        tracing::info!(tag, "encryption key is now the primary (sending) key");
        Ok(())
    }

    pub(super) fn key_rm(&mut self, tag: u32) -> Result<(), ErrorBody> {
        let next = self.desired.remove_key(tag)?;
        self.commit(next)?;
        tracing::info!(tag, "encryption key removed");
        Ok(())
    }

    pub(super) fn key_ls(&self) -> Vec<KeyInfo> {
        let now = now_unix();
        self.desired
            .keys
            .iter()
            .map(|k| {
                let sas = self.sas.map.iter().filter(|((t, _, _), _)| *t == k.tag);
                let (mut tx, mut rx) = (0, 0);
                for (_, (_, s)) in sas {
                    tx += s.tx_packets();
                    rx += s.rx_packets();
                }
                KeyInfo {
                    tag: k.tag,
                    primary: k.primary,
                    age_secs: now.saturating_sub(k.added),
                    bits: if k.key.trim().trim_start_matches("0x").len() > 40 {
                        256
                    } else {
                        128
                    },
                    tx_packets: tx,
                    rx_packets: rx,
                }
            })
            .collect()
    }
}
