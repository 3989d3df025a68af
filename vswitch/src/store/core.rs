//! The store's protocol core: the key layout, the view of the store built from listings and
//! watch events, what the store asks of this host (networks, peers, remote MACs: [`derive`]), the
//! batch that takes the daemon from what it was last given to that ([`diff`]), and the keys this
//! host publishes for itself ([`own_keys`]). No I/O and no clock: `now` comes in as an argument.
//!
//! # Keys (under the prefix, default `/vswitch`)
//!
//! | key | value | lease |
//! | --- | --- | --- |
//! | `hosts/<host>` | `{"vtep": "IP", "since": UNIX_SECS}` | the host's |
//! | `networks/<name>` | the network's spec (JSON, as `network create` takes it) | none |
//! | `vnis/<vni>`, `subnets/<a.b.c.d_len>` | the network's name (uniqueness claims) | none |
//! | `members/<net>/<host>` | empty: the host has ports in the network | the host's |
//! | `endpoints/<net>/<host>/<mac>` | `{"mac": "..."}` | the host's |
//! | `leader` | the id of the host that writes keys | the leader's |
//! | `keys/<tag>` | `{"key": HEX, "added": UNIX_SECS}` (written by the leader only) | none |
//! | `keyprimary` | the tag every host sends with (written by the leader only) | none |
//! | `keyacks/<host>` | `{"tags": [...], "primary": TAG}`: what the host has installed | the host's |
//!
//! # Keys of encrypted networks, cluster-wide
//!
//! One host, the leader (whoever holds `leader` on its lease: created if absent, so one at a
//! time; when it dies the key goes with its lease and another takes it), writes keys; every host
//! installs what `keys/` and `keyprimary` say and acknowledges in `keyacks/<host>`. The leader
//! moves one step at a time ([`leader_step`]), each only once every live host acknowledged the
//! step before, which is issue 10's lossless rotation rule applied to the cluster: a new key is
//! written (every host installs it for receive), then made primary (hosts switch in any order,
//! all can already open it), then the old one is removed once every host sends with the new.
//!
//! A host's own keys live on its lease: when it dies they vanish within the TTL, and every other
//! host removes its peers and remote MACs. The VTEP of an endpoint is its host's, so a host that
//! changes its underlay address rewrites one key, not all of its endpoints.

use super::etcd::{Event, Kv};
use control::proto::{
    ClusterApply, FdbRmArgs, KeySpec, NetworkSpec, PeerSpec, Scope, StaticFdb, ORIGIN_STORE,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// A host as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRec {
    /// Its underlay address; `None` until it has an uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<Ipv4Addr>,
    /// When it registered (Unix seconds).
    #[serde(default)]
    pub since: u64,
}

/// A key as the leader writes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRec {
    /// RFC 4106 keying material in hex.
    pub key: String,
    /// When it was written (Unix seconds).
    #[serde(default)]
    pub added: u64,
}

impl std::fmt::Debug for KeyRec {
    // Never the key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRec")
            .field("added", &self.added)
            .finish_non_exhaustive()
    }
}

/// What a host has installed of the store's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAck {
    /// Tags installed (receiving).
    #[serde(default)]
    pub tags: Vec<u32>,
    /// The tag it sends with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<u32>,
}

/// An endpoint's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRec {
    /// Its MAC.
    pub mac: String,
}

/// What a key under the prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `hosts/<host>`.
    Host(String),
    /// `networks/<name>`.
    Network(String),
    /// `members/<net>/<host>`.
    Member(String, String),
    /// `endpoints/<net>/<host>/<mac>`.
    Endpoint(String, String, [u8; 6]),
    /// `leader`.
    Leader,
    /// `keys/<tag>`.
    KeyTag(u32),
    /// `keyprimary`.
    KeyPrimary,
    /// `keyacks/<host>`.
    KeyAck(String),
    /// Anything else (claims, keys of other features, malformed keys).
    Other,
}

/// Key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout under `prefix` (a trailing `/` is added when missing).
    pub fn new(prefix: &str) -> Layout {
        let mut p = prefix.to_string();
        if !p.ends_with('/') {
            p.push('/');
        }
        Layout { prefix: p }
    }

    /// The prefix, with its trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `hosts/<host>`.
    pub fn host(&self, host: &str) -> String {
        format!("{}hosts/{host}", self.prefix)
    }

    /// `networks/<name>`.
    pub fn network(&self, name: &str) -> String {
        format!("{}networks/{name}", self.prefix)
    }

    /// `vnis/<vni>`.
    pub fn vni(&self, vni: u32) -> String {
        format!("{}vnis/{vni}", self.prefix)
    }

    /// `subnets/<cidr with / as _>`.
    pub fn subnet(&self, cidr: &str) -> String {
        format!("{}subnets/{}", self.prefix, cidr.replace('/', "_"))
    }

    /// `members/<net>/<host>`.
    pub fn member(&self, net: &str, host: &str) -> String {
        format!("{}members/{net}/{host}", self.prefix)
    }

    /// `endpoints/<net>/<host>/<mac>`.
    pub fn endpoint(&self, net: &str, host: &str, mac: &[u8; 6]) -> String {
        format!(
            "{}endpoints/{net}/{host}/{}",
            self.prefix,
            control::text::format_mac(mac)
        )
    }

    /// `leader`.
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// `keys/<tag>`.
    pub fn key(&self, tag: u32) -> String {
        format!("{}keys/{tag}", self.prefix)
    }

    /// `keyprimary`.
    pub fn key_primary(&self) -> String {
        format!("{}keyprimary", self.prefix)
    }

    /// `keyacks/<host>`.
    pub fn key_ack(&self, host: &str) -> String {
        format!("{}keyacks/{host}", self.prefix)
    }

    /// What `key` names.
    pub fn parse(&self, key: &str) -> Key {
        let Some(rest) = key.strip_prefix(&self.prefix) else {
            return Key::Other;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let ok = |s: &str| !s.is_empty();
        match parts.as_slice() {
            ["hosts", h] if ok(h) => Key::Host(h.to_string()),
            ["leader"] => Key::Leader,
            ["keyprimary"] => Key::KeyPrimary,
            ["keys", t] => t.parse().map_or(Key::Other, Key::KeyTag),
            ["keyacks", h] if ok(h) => Key::KeyAck(h.to_string()),
            ["networks", n] if ok(n) => Key::Network(n.to_string()),
            ["members", n, h] if ok(n) && ok(h) => Key::Member(n.to_string(), h.to_string()),
            ["endpoints", n, h, m] if ok(n) && ok(h) => match control::text::parse_mac(m) {
                Ok(mac) => Key::Endpoint(n.to_string(), h.to_string(), mac),
                Err(_) => Key::Other,
            },
            _ => Key::Other,
        }
    }
}

/// The store as this host last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Hosts with a live lease.
    pub hosts: BTreeMap<String, HostRec>,
    /// Global networks.
    pub networks: BTreeMap<String, NetworkSpec>,
    /// (network, host): the host has ports in the network.
    pub members: BTreeSet<(String, String)>,
    /// (network, host, MAC) -> revision of the key's last change.
    pub endpoints: BTreeMap<(String, String, [u8; 6]), i64>,
    /// The leader's host id.
    pub leader: Option<String>,
    /// Keys by tag.
    pub keys: BTreeMap<u32, KeyRec>,
    /// The tag hosts send with.
    pub primary: Option<u32>,
    /// What each host has installed.
    pub acks: BTreeMap<String, KeyAck>,
    /// The last store revision seen.
    pub revision: i64,
    /// Values that could not be read (skipped).
    pub malformed: u64,
    /// (network, MAC) -> the hosts that publish it, with the revision of their key.
    pub by_mac: BTreeMap<(String, [u8; 6]), BTreeMap<String, i64>>,
    /// Host -> its endpoints (network, MAC).
    pub by_host: BTreeMap<String, BTreeSet<(String, [u8; 6])>>,
    /// What changed since [`derive_delta`] last looked.
    pub touched: Touched,
}

/// What events changed, for [`derive_delta`]: a change costs what it touches, not the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Everything (a network came or went, a list, this host's address changed).
    pub all: bool,
    /// (network, MAC) whose remote entry may have changed.
    pub macs: BTreeSet<(String, [u8; 6])>,
    /// Networks whose peers may have changed.
    pub nets: BTreeSet<String>,
}

impl View {
    /// The view of a whole listing at `revision`.
    pub fn from_list(layout: &Layout, kvs: &[Kv], revision: i64) -> View {
        let mut v = View::default();
        for kv in kvs {
            v.put(layout, kv);
        }
        v.revision = revision;
        v.touched = Touched {
            all: true,
            ..Touched::default()
        };
        v
    }

    /// Everything that depends on host `h` is touched.
    fn touch_host(&mut self, h: &str) {
        if let Some(eps) = self.by_host.get(h) {
            self.touched.macs.extend(eps.iter().cloned());
        }
        for (n, m) in &self.members {
            if m == h {
                self.touched.nets.insert(n.clone());
            }
        }
    }

    fn remove_endpoint(&mut self, n: &str, h: &str, mac: [u8; 6]) -> bool {
        let key = (n.to_string(), mac);
        if let Some(c) = self.by_mac.get_mut(&key) {
            c.remove(h);
            if c.is_empty() {
                self.by_mac.remove(&key);
            }
        }
        if let Some(e) = self.by_host.get_mut(h) {
            e.remove(&key);
            if e.is_empty() {
                self.by_host.remove(h);
            }
        }
        let gone = self
            .endpoints
            .remove(&(n.to_string(), h.to_string(), mac))
            .is_some();
        self.touched.macs.insert(key);
        gone
    }

    fn put(&mut self, layout: &Layout, kv: &Kv) {
        match layout.parse(&kv.key) {
            Key::Host(h) => match serde_json::from_slice::<HostRec>(&kv.value) {
                Ok(rec) => {
                    self.touch_host(&h);
                    self.hosts.insert(h, rec);
                }
                Err(_) => self.malformed += 1,
            },
            Key::Network(n) => match serde_json::from_slice::<NetworkSpec>(&kv.value) {
                Ok(spec) if spec.name == n && spec.vni.is_some() => {
                    self.touched.all = true;
                    self.networks.insert(n, spec);
                }
                _ => self.malformed += 1,
            },
            Key::Member(n, h) => {
                self.touched.nets.insert(n.clone());
                self.members.insert((n, h));
            }
            Key::Endpoint(n, h, mac) => {
                let key = (n.clone(), mac);
                self.by_mac
                    .entry(key.clone())
                    .or_default()
                    .insert(h.clone(), kv.mod_revision);
                self.by_host
                    .entry(h.clone())
                    .or_default()
                    .insert(key.clone());
                self.touched.macs.insert(key);
                self.endpoints.insert((n, h, mac), kv.mod_revision);
            }
            Key::Leader => self.leader = Some(String::from_utf8_lossy(&kv.value).into_owned()),
            Key::KeyTag(t) => match serde_json::from_slice::<KeyRec>(&kv.value) {
                Ok(k) => {
                    self.keys.insert(t, k);
                }
                Err(_) => self.malformed += 1,
            },
            Key::KeyPrimary => match std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                Some(t) => self.primary = Some(t),
                None => self.malformed += 1,
            },
            Key::KeyAck(h) => match serde_json::from_slice::<KeyAck>(&kv.value) {
                Ok(a) => {
                    self.acks.insert(h, a);
                }
                Err(_) => self.malformed += 1,
            },
            Key::Other => {}
        }
    }

    /// Applies a watch message's events (`revision`: the message's); whether anything changed
    /// that this host acts on.
    pub fn apply(&mut self, layout: &Layout, events: &[Event], revision: i64) -> bool {
        let mut changed = false;
        for e in events {
            match e {
                Event::Put(kv) => {
                    changed |= layout.parse(&kv.key) != Key::Other;
                    self.put(layout, kv);
                }
                Event::Delete(key, _) => match layout.parse(key) {
                    Key::Host(h) => {
                        self.touch_host(&h);
                        changed |= self.hosts.remove(&h).is_some()
                    }
                    Key::Network(n) => {
                        self.touched.all = true;
                        changed |= self.networks.remove(&n).is_some()
                    }
                    Key::Member(n, h) => {
                        self.touched.nets.insert(n.clone());
                        changed |= self.members.remove(&(n, h))
                    }
                    Key::Endpoint(n, h, m) => changed |= self.remove_endpoint(&n, &h, m),
                    Key::Leader => changed |= self.leader.take().is_some(),
                    Key::KeyTag(t) => changed |= self.keys.remove(&t).is_some(),
                    Key::KeyPrimary => changed |= self.primary.take().is_some(),
                    Key::KeyAck(h) => changed |= self.acks.remove(&h).is_some(),
                    Key::Other => {}
                },
            }
        }
        self.revision = self.revision.max(revision);
        changed
    }

    /// Endpoints of `host`.
    pub fn endpoints_of(&self, host: &str) -> u64 {
        self.by_host.get(host).map_or(0, |e| e.len() as u64)
    }
}

/// What the store asks of this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    /// Global networks, by name.
    pub networks: BTreeMap<String, NetworkSpec>,
    /// (network, VTEP) of other hosts with ports in the network.
    pub peers: BTreeSet<(String, Ipv4Addr)>,
    /// (network, MAC) -> VTEP of other hosts' endpoints.
    pub fdb: BTreeMap<(String, [u8; 6]), Ipv4Addr>,
    /// The store's keys (tag, hex, primary), once the leader wrote any.
    pub keys: Option<Vec<(u32, String, bool)>>,
}

/// What the store asks of host `me` (whose underlay address is `my_vtep`): every global network;
/// a peer for each other live host with ports in a network; a remote MAC for each of their
/// endpoints. A MAC published by two hosts goes to the one that published it last.
pub fn derive(view: &View, me: &str, my_vtep: Option<Ipv4Addr>) -> Derived {
    let vtep_of = |h: &str| vtep_for(view, h, me, my_vtep);
    let mut d = Derived {
        networks: view.networks.clone(),
        keys: keys_derived(view),
        ..Derived::default()
    };
    for (net, host) in &view.members {
        if let (true, Some(v)) = (view.networks.contains_key(net), vtep_of(host)) {
            d.peers.insert((net.clone(), v));
        }
    }
    let mut newest: BTreeMap<(&str, [u8; 6]), i64> = BTreeMap::new();
    for ((net, host, mac), &rev) in &view.endpoints {
        let Some(v) = vtep_of(host) else { continue };
        if !view.networks.contains_key(net) {
            continue;
        }
        let seen = newest.entry((net.as_str(), *mac)).or_insert(i64::MIN);
        if rev > *seen {
            *seen = rev;
            d.fdb.insert((net.clone(), *mac), v);
        }
    }
    d
}

fn peer(net: &str, v: &Ipv4Addr) -> PeerSpec {
    PeerSpec {
        network: net.to_string(),
        vtep: v.to_string(),
        origin: Some(ORIGIN_STORE.into()),
    }
}

fn fdb(net: &str, mac: &[u8; 6], v: &Ipv4Addr) -> StaticFdb {
    StaticFdb {
        network: net.to_string(),
        mac: control::text::format_mac(mac),
        port: None,
        vtep: Some(v.to_string()),
        origin: Some(ORIGIN_STORE.into()),
    }
}

fn keys_of(k: &Option<Vec<(u32, String, bool)>>) -> Option<Vec<KeySpec>> {
    k.as_ref().map(|list| {
        list.iter()
            .map(|(tag, key, primary)| KeySpec {
                tag: *tag,
                key: key.clone(),
                primary: *primary,
                added: 0,
            })
            .collect()
    })
}

/// The store's keys as hosts install them.
fn keys_derived(view: &View) -> Option<Vec<(u32, String, bool)>> {
    (!view.keys.is_empty()).then(|| {
        view.keys
            .iter()
            .map(|(&t, k)| (t, k.key.clone(), view.primary == Some(t)))
            .collect()
    })
}

/// The VTEP of host `h` as `me` programs it: none for itself, a host without an address, or one
/// that claims `me`'s own address.
fn vtep_for(view: &View, h: &str, me: &str, my_vtep: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    if h == me {
        return None;
    }
    let v = view.hosts.get(h)?.vtep?;
    (Some(v) != my_vtep).then_some(v)
}

/// Brings `d` (what the daemon has been given so far) up to date with what changed in the view
/// since the last call (its [`Touched`], which this clears), in time proportional to that; the
/// batch that makes the daemon follow. Equal to `diff(d, derive(view))` (a test checks it).
pub fn derive_delta(
    view: &mut View,
    me: &str,
    my_vtep: Option<Ipv4Addr>,
    d: &mut Derived,
) -> ClusterApply {
    let touched = std::mem::take(&mut view.touched);
    if touched.all {
        let new = derive(view, me, my_vtep);
        let a = diff(d, &new);
        *d = new;
        return a;
    }
    let mut a = ClusterApply::default();
    let keys = keys_derived(view);
    if keys != d.keys {
        a.keys = keys_of(&keys);
        d.keys = keys;
    }
    for n in &touched.nets {
        let want: BTreeSet<Ipv4Addr> = if view.networks.contains_key(n) {
            view.members
                .range((n.clone(), String::new())..)
                .take_while(|(m, _)| m == n)
                .filter_map(|(_, h)| vtep_for(view, h, me, my_vtep))
                .collect()
        } else {
            BTreeSet::new()
        };
        let have: BTreeSet<Ipv4Addr> = d
            .peers
            .range((n.clone(), Ipv4Addr::UNSPECIFIED)..=(n.clone(), Ipv4Addr::BROADCAST))
            .map(|(_, v)| *v)
            .collect();
        for v in have.difference(&want) {
            a.peers_rm.push(peer(n, v));
            d.peers.remove(&(n.clone(), *v));
        }
        for v in want.difference(&have) {
            a.peers_add.push(peer(n, v));
            d.peers.insert((n.clone(), *v));
        }
    }
    for key in touched.macs {
        let new = if view.networks.contains_key(&key.0) {
            view.by_mac.get(&key).and_then(|c| {
                c.iter()
                    .filter_map(|(h, &rev)| Some((rev, vtep_for(view, h, me, my_vtep)?)))
                    .max_by_key(|&(rev, _)| rev)
                    .map(|(_, v)| v)
            })
        } else {
            None
        };
        let old = d.fdb.get(&key).copied();
        if new == old {
            continue;
        }
        if old.is_some() {
            a.fdb_rm.push(FdbRmArgs {
                network: key.0.clone(),
                mac: control::text::format_mac(&key.1),
            });
        }
        match new {
            Some(v) => {
                a.fdb_add.push(fdb(&key.0, &key.1, &v));
                d.fdb.insert(key, v);
            }
            None => {
                d.fdb.remove(&key);
            }
        }
    }
    a
}

/// The batch that replaces everything the store made on the daemon with `new` (after a list).
pub fn full(new: &Derived) -> ClusterApply {
    ClusterApply {
        replace: true,
        keys: keys_of(&new.keys),
        networks: new.networks.values().cloned().collect(),
        peers_add: new.peers.iter().map(|(n, v)| peer(n, v)).collect(),
        fdb_add: new.fdb.iter().map(|((n, m), v)| fdb(n, m, v)).collect(),
        ..ClusterApply::default()
    }
}

/// The batch that takes the daemon from `old` to `new` (removals before additions, so a MAC that
/// moved between hosts is removed and added again).
pub fn diff(old: &Derived, new: &Derived) -> ClusterApply {
    let mut a = ClusterApply {
        networks: new
            .networks
            .iter()
            .filter(|(k, v)| old.networks.get(*k) != Some(v))
            .map(|(_, v)| v.clone())
            .collect(),
        keys: if old.keys != new.keys {
            keys_of(&new.keys)
        } else {
            None
        },
        ..ClusterApply::default()
    };
    a.peers_rm = old
        .peers
        .difference(&new.peers)
        .map(|(n, v)| peer(n, v))
        .collect();
    a.peers_add = new
        .peers
        .difference(&old.peers)
        .map(|(n, v)| peer(n, v))
        .collect();
    for (k, v) in &old.fdb {
        if new.fdb.get(k) != Some(v) {
            a.fdb_rm.push(FdbRmArgs {
                network: k.0.clone(),
                mac: control::text::format_mac(&k.1),
            });
        }
    }
    for (k, v) in &new.fdb {
        if old.fdb.get(k) != Some(v) {
            a.fdb_add.push(fdb(&k.0, &k.1, v));
        }
    }
    a
}

/// What this host has that the store should know: its underlay address, and per global network
/// whether it has ports there and the MACs seen behind them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Local {
    /// The uplink's address.
    pub vtep: Option<Ipv4Addr>,
    /// Global networks this host has ports in.
    pub members: BTreeSet<String>,
    /// (network, MAC) learned behind local ports of global networks.
    pub endpoints: BTreeSet<(String, [u8; 6])>,
    /// The keys installed here (what the store's leader waits for).
    pub keys: KeyAck,
}

/// The keys host `me` keeps on its lease, with their values (registered at `since`).
pub fn own_keys(layout: &Layout, me: &str, local: &Local, since: u64) -> BTreeMap<String, Vec<u8>> {
    let mut keys = BTreeMap::new();
    let host = HostRec {
        vtep: local.vtep,
        since,
    };
    keys.insert(
        layout.host(me),
        serde_json::to_vec(&host).unwrap_or_default(),
    );
    keys.insert(
        layout.key_ack(me),
        serde_json::to_vec(&local.keys).unwrap_or_default(),
    );
    for n in &local.members {
        keys.insert(layout.member(n, me), Vec::new());
    }
    for (n, mac) in &local.endpoints {
        let rec = EndpointRec {
            mac: control::text::format_mac(mac),
        };
        keys.insert(
            layout.endpoint(n, me, mac),
            serde_json::to_vec(&rec).unwrap_or_default(),
        );
    }
    keys
}

/// Puts and deletes that take the store from `old` (what was published) to `new`.
pub fn publish_diff(
    old: &BTreeMap<String, Vec<u8>>,
    new: &BTreeMap<String, Vec<u8>>,
) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let puts = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let dels = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    (puts, dels)
}

/// What the leader does next with the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep {
    /// Write a new key with this tag (every host installs it for receive).
    Add(u32),
    /// Make this tag the sending key everywhere.
    Primary(u32),
    /// Remove this (old) key.
    Remove(u32),
}

/// The leader's next step for the keys of encrypted global networks at `now`, each taken only
/// once every live host acknowledged the one before (see the module doc); `None`: wait.
/// A key is rotated `rotate_secs` after it was written.
pub fn leader_step(view: &View, now: u64, rotate_secs: u64) -> Option<KeyStep> {
    if !view.networks.values().any(|n| n.encrypted) {
        return None;
    }
    let acks = || view.hosts.keys().map(|h| view.acks.get(h));
    let everywhere = |t: u32| acks().all(|a| a.is_some_and(|a| a.tags.contains(&t)));
    let sent_everywhere = |t: u32| acks().all(|a| a.is_some_and(|a| a.primary == Some(t)));
    let newest = view.keys.keys().next_back().copied();
    match (view.primary.filter(|p| view.keys.contains_key(p)), newest) {
        (_, None) => Some(KeyStep::Add(
            view.primary.unwrap_or(0).wrapping_add(1).max(1),
        )),
        (None, Some(t)) => everywhere(t).then_some(KeyStep::Primary(t)),
        (Some(p), Some(t)) if t > p => everywhere(t).then_some(KeyStep::Primary(t)),
        (Some(p), Some(_)) => {
            if let Some(&old) = view.keys.keys().find(|&&t| t != p) {
                return sent_everywhere(p).then_some(KeyStep::Remove(old));
            }
            let added = view.keys.get(&p).map_or(0, |k| k.added);
            (sent_everywhere(p) && now >= added.saturating_add(rotate_secs))
                .then_some(KeyStep::Add(p.wrapping_add(1).max(1)))
        }
    }
}

/// Whether `spec` is one the store can hold: a global overlay network.
pub fn check_global(spec: &NetworkSpec) -> Result<(), String> {
    if spec.scope != Some(Scope::Global) {
        return Err(format!("network '{}' is not --scope global", spec.name));
    }
    if spec.vni.is_none() {
        return Err("a global network is an overlay network; add --vni N".into());
    }
    Ok(())
}

/// The subnet to allocate for a global network without one: the first /24 of `pool` (a /16)
/// not in `taken` (subnet keys' names, `a.b.c.d_len`).
pub fn free_subnet(pool: Ipv4Addr, taken: &BTreeSet<String>) -> Option<String> {
    let base = u32::from(pool) & 0xffff_0000;
    (0..256u32)
        .map(|i| format!("{}/24", Ipv4Addr::from(base | (i << 8))))
        .find(|c| !taken.contains(&c.replace('/', "_")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
            lease: 0,
        }
    }

    fn net(name: &str, vni: u32) -> String {
        format!(r#"{{"name":"{name}","vni":{vni},"scope":"global"}}"#)
    }

    const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn cluster(l: &Layout) -> Vec<Kv> {
        vec![
            kv(&l.host("h1"), r#"{"vtep":"192.168.1.1","since":5}"#, 1),
            kv(&l.host("h2"), r#"{"vtep":"192.168.1.2","since":5}"#, 2),
            kv(&l.host("h3"), r#"{"vtep":"192.168.1.3","since":5}"#, 3),
            kv(&l.network("ov"), &net("ov", 100), 4),
            kv(&l.member("ov", "h2"), "", 5),
            kv(&l.member("ov", "h3"), "", 6),
            kv(&l.member("ov", "h1"), "", 6),
            kv(&l.endpoint("ov", "h2", &M1), "{}", 7),
            kv(&l.endpoint("ov", "h3", &M2), "{}", 8),
            kv(&l.endpoint("ov", "h1", &[2, 0, 0, 0, 0, 9]), "{}", 8),
            kv(&format!("{}subnets/10.0.0.0_24", l.prefix()), "ov", 9),
        ]
    }

    #[test]
    fn keys_parse_back_and_foreign_keys_are_other() {
        let l = Layout::new("/vs");
        assert_eq!(l.parse(&l.host("a")), Key::Host("a".into()));
        assert_eq!(l.parse(&l.network("n")), Key::Network("n".into()));
        assert_eq!(
            l.parse(&l.member("n", "a")),
            Key::Member("n".into(), "a".into())
        );
        assert_eq!(
            l.parse(&l.endpoint("n", "a", &M1)),
            Key::Endpoint("n".into(), "a".into(), M1)
        );
        for other in [
            "/vs/hosts/",
            "/vs/endpoints/n/a/zz",
            "/other/hosts/a",
            "/vs/hosts/a/b",
        ] {
            assert_eq!(l.parse(other), Key::Other, "{other}");
        }
    }

    #[test]
    fn a_host_gets_peers_and_remote_macs_of_the_others_only() {
        let l = Layout::new("/vs");
        let v = View::from_list(&l, &cluster(&l), 9);
        let d = derive(&v, "h1", Some("192.168.1.1".parse().unwrap()));
        assert_eq!(d.networks.len(), 1);
        let peers: Vec<String> = d.peers.iter().map(|p| p.1.to_string()).collect();
        assert_eq!(peers, ["192.168.1.2", "192.168.1.3"]);
        assert_eq!(d.fdb.len(), 2, "its own endpoint is not a remote MAC");
        assert_eq!(
            d.fdb[&("ov".to_string(), M2)],
            "192.168.1.3".parse::<Ipv4Addr>().unwrap()
        );
        // The first batch replaces everything the store made, marked as the store's.
        let f = full(&d);
        assert!(f.replace);
        assert_eq!(f.peers_add.len(), 2);
        assert!(f
            .fdb_add
            .iter()
            .all(|e| e.origin.as_deref() == Some(ORIGIN_STORE)));
    }

    #[test]
    fn a_dead_host_takes_its_peers_and_macs_with_it() {
        let l = Layout::new("/vs");
        let mut v = View::from_list(&l, &cluster(&l), 9);
        let before = derive(&v, "h1", None);
        // Its lease expired: etcd deletes every key on it.
        let gone = vec![
            Event::Delete(l.host("h2"), 10),
            Event::Delete(l.member("ov", "h2"), 10),
            Event::Delete(l.endpoint("ov", "h2", &M1), 10),
        ];
        assert!(v.apply(&l, &gone, 10));
        assert_eq!(v.revision, 10);
        let after = derive(&v, "h1", None);
        let a = diff(&before, &after);
        assert_eq!(a.peers_rm.len(), 1);
        assert_eq!(a.peers_rm[0].vtep, "192.168.1.2");
        assert_eq!(a.fdb_rm.len(), 1);
        assert!(a.peers_add.is_empty() && a.fdb_add.is_empty() && a.networks.is_empty());
        // The host key alone going is enough: the rest is ignored until it goes too.
        let mut v2 = View::from_list(&l, &cluster(&l), 9);
        v2.apply(&l, &[Event::Delete(l.host("h3"), 11)], 11);
        assert_eq!(derive(&v2, "h1", None).peers.len(), 1);
        // Nothing changed: nothing to send.
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn a_moved_mac_is_removed_then_added_and_the_latest_publisher_wins() {
        let l = Layout::new("/vs");
        let mut v = View::from_list(&l, &cluster(&l), 9);
        let before = derive(&v, "h1", None);
        v.apply(
            &l,
            &[Event::Put(kv(&l.endpoint("ov", "h2", &M2), "{}", 12))],
            12,
        );
        let after = derive(&v, "h1", None);
        assert_eq!(
            after.fdb[&("ov".to_string(), M2)].to_string(),
            "192.168.1.2"
        );
        let a = diff(&before, &after);
        assert_eq!(a.fdb_rm.len(), 1);
        assert_eq!(a.fdb_add[0].vtep.as_deref(), Some("192.168.1.2"));
    }

    #[test]
    fn malformed_values_and_unknown_networks_are_skipped() {
        let l = Layout::new("/vs");
        let mut kvs = cluster(&l);
        kvs.push(kv(&l.host("h4"), "not json", 20));
        kvs.push(kv(&l.network("bad"), r#"{"name":"other","vni":5}"#, 21));
        kvs.push(kv(&l.network("novni"), r#"{"name":"novni"}"#, 21));
        kvs.push(kv(&l.host("h5"), r#"{"vtep":"192.168.1.5"}"#, 22));
        kvs.push(kv(&l.member("gone", "h5"), "", 23));
        kvs.push(kv(&l.endpoint("gone", "h5", &M1), "{}", 23));
        let v = View::from_list(&l, &kvs, 23);
        assert_eq!(v.malformed, 3);
        let d = derive(&v, "h1", None);
        assert_eq!(d.networks.len(), 1);
        assert!(d.peers.iter().all(|p| p.0 == "ov"));
        assert!(d.fdb.keys().all(|k| k.0 == "ov"));
    }

    #[test]
    fn own_keys_follow_local_changes() {
        let l = Layout::new("/vs/");
        let mut local = Local {
            vtep: Some("192.168.1.1".parse().unwrap()),
            ..Local::default()
        };
        let k0 = own_keys(&l, "h1", &local, 7);
        assert_eq!(k0.len(), 2, "the host and its key acknowledgement");
        local.members.insert("ov".into());
        local.endpoints.insert(("ov".into(), M1));
        let k1 = own_keys(&l, "h1", &local, 7);
        let (puts, dels) = publish_diff(&k0, &k1);
        assert_eq!(puts.len(), 2);
        assert!(dels.is_empty());
        assert!(puts
            .iter()
            .any(|p| p.0 == "/vs/endpoints/ov/h1/02:00:00:00:00:01"));
        let (puts, dels) = publish_diff(&k1, &k0);
        assert!(puts.is_empty());
        assert_eq!(dels.len(), 2);
        // What it publishes, another host reads back.
        let kvs: Vec<Kv> = k1
            .iter()
            .map(|(k, v)| Kv {
                key: k.clone(),
                value: v.clone(),
                mod_revision: 1,
                lease: 1,
            })
            .collect();
        let v = View::from_list(&l, &kvs, 1);
        assert_eq!(v.hosts["h1"].vtep, local.vtep);
        assert_eq!(v.endpoints_of("h1"), 1);
    }

    /// Every host acknowledges what the store says (installs every key, sends with the primary).
    fn all_ack(v: &mut View) {
        let ack = KeyAck {
            tags: v.keys.keys().copied().collect(),
            primary: v.primary,
        };
        for h in v.hosts.keys().cloned().collect::<Vec<_>>() {
            v.acks.insert(h, ack.clone());
        }
    }

    fn step(v: &mut View, s: KeyStep, now: u64) {
        match s {
            KeyStep::Add(t) => {
                v.keys.insert(
                    t,
                    KeyRec {
                        key: format!("k{t}"),
                        added: now,
                    },
                );
            }
            KeyStep::Primary(t) => v.primary = Some(t),
            KeyStep::Remove(t) => {
                v.keys.remove(&t);
            }
        }
    }

    #[test]
    fn the_leader_rotates_keys_one_acknowledged_step_at_a_time() {
        let l = Layout::new("/vs");
        let mut v = View::from_list(&l, &cluster(&l), 9);
        assert_eq!(
            leader_step(&v, 0, 100),
            None,
            "no encrypted network: no keys"
        );
        v.networks.get_mut("ov").unwrap().encrypted = true;
        let s = leader_step(&v, 0, 100).unwrap();
        assert_eq!(s, KeyStep::Add(1));
        step(&mut v, s, 0);
        // Not primary until every live host has it.
        assert_eq!(leader_step(&v, 1, 100), None);
        all_ack(&mut v);
        v.acks.get_mut("h2").unwrap().tags.clear();
        assert_eq!(leader_step(&v, 1, 100), None, "h2 has not installed key 1");
        all_ack(&mut v);
        let s = leader_step(&v, 1, 100).unwrap();
        assert_eq!(s, KeyStep::Primary(1));
        step(&mut v, s, 1);
        assert_eq!(leader_step(&v, 50, 100), None, "not yet time to rotate");
        all_ack(&mut v);
        assert_eq!(leader_step(&v, 50, 100), None);
        // Rotation: add, wait for all, primary, wait for all to send with it, remove the old.
        let s = leader_step(&v, 100, 100).unwrap();
        assert_eq!(s, KeyStep::Add(2));
        step(&mut v, s, 100);
        assert_eq!(leader_step(&v, 101, 100), None);
        all_ack(&mut v);
        let s = leader_step(&v, 101, 100).unwrap();
        assert_eq!(s, KeyStep::Primary(2));
        step(&mut v, s, 101);
        // Some hosts still send with key 1: it stays.
        let mut part = v.clone();
        all_ack(&mut part);
        part.acks.get_mut("h3").unwrap().primary = Some(1);
        assert_eq!(leader_step(&part, 102, 100), None);
        all_ack(&mut v);
        assert_eq!(leader_step(&v, 102, 100), Some(KeyStep::Remove(1)));
        step(&mut v, KeyStep::Remove(1), 102);
        all_ack(&mut v);
        assert_eq!(leader_step(&v, 103, 100), None);
        // A dead host does not hold the cluster back; a new one does until it acknowledges.
        v.hosts.remove("h3");
        v.hosts.insert(
            "h9".into(),
            HostRec {
                vtep: None,
                since: 0,
            },
        );
        assert_eq!(leader_step(&v, 300, 100), None);
        all_ack(&mut v);
        assert_eq!(leader_step(&v, 300, 100), Some(KeyStep::Add(3)));
        // What hosts install: the store's keys with the primary marked.
        let d = derive(&v, "h1", None);
        assert_eq!(d.keys, Some(vec![(2, "k2".to_string(), true)]));
    }

    #[test]
    fn the_incremental_batches_equal_a_full_derivation() {
        let l = Layout::new("/vs");
        let mut v = View::from_list(&l, &cluster(&l), 9);
        let me = "h1";
        let mut sent = Derived::default();
        let first = derive_delta(&mut v, me, None, &mut sent);
        assert_eq!(sent, derive(&v, me, None));
        assert_eq!(first.fdb_add.len(), 2);
        // A pseudo-random walk of puts and deletes of every kind of key.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for rev in 10..2000i64 {
            let r = next();
            let h = format!("h{}", r % 5);
            let n = if (r >> 8) % 4 == 0 { "ov2" } else { "ov" };
            let mac = [2, 0, 0, 0, 0, ((r >> 16) % 6) as u8];
            let put = (r >> 24) % 3 != 0;
            let key = match (r >> 32) % 7 {
                0 => l.host(&h),
                1 => l.member(n, &h),
                2 if (r >> 40) % 8 == 0 => l.network(n),
                _ => l.endpoint(n, &h, &mac),
            };
            let value = if key.contains("/hosts/") {
                format!(r#"{{"vtep":"192.168.1.{}"}}"#, (r >> 44) % 6)
            } else if key.contains("/networks/") {
                net(n, 100 + (n.len() as u32))
            } else {
                "{}".to_string()
            };
            let ev = if put {
                Event::Put(kv(&key, &value, rev))
            } else {
                Event::Delete(key, rev)
            };
            let my_vtep = Some("192.168.1.1".parse().unwrap());
            v.apply(&l, &[ev], rev);
            let before = sent.clone();
            let batch = derive_delta(&mut v, me, my_vtep, &mut sent);
            let full_new = derive(&v, me, my_vtep);
            assert_eq!(sent, full_new, "at revision {rev}");
            // The batch takes the daemon from before to after, as `diff` would.
            let want = diff(&before, &full_new);
            let set = |a: &ClusterApply| {
                let mut p: Vec<String> = a
                    .peers_rm
                    .iter()
                    .map(|p| format!("-{}{}", p.network, p.vtep))
                    .collect();
                p.extend(
                    a.peers_add
                        .iter()
                        .map(|p| format!("+{}{}", p.network, p.vtep)),
                );
                p.extend(a.fdb_rm.iter().map(|f| format!("-{}{}", f.network, f.mac)));
                p.extend(
                    a.fdb_add
                        .iter()
                        .map(|f| format!("+{}{}{:?}", f.network, f.mac, f.vtep)),
                );
                p.sort();
                p
            };
            assert_eq!(set(&batch), set(&want), "at revision {rev}");
        }
    }

    #[test]
    fn subnets_are_allocated_first_free() {
        let mut taken = BTreeSet::new();
        let pool: Ipv4Addr = "10.210.0.0".parse().unwrap();
        assert_eq!(free_subnet(pool, &taken).unwrap(), "10.210.0.0/24");
        taken.insert("10.210.0.0_24".to_string());
        taken.insert("10.210.1.0_24".to_string());
        assert_eq!(free_subnet(pool, &taken).unwrap(), "10.210.2.0/24");
        let mut spec: NetworkSpec = serde_json::from_str(r#"{"name":"x","vni":1}"#).unwrap();
        assert!(check_global(&spec).is_err());
        spec.scope = Some(Scope::Global);
        assert!(check_global(&spec).is_ok());
    }
}
