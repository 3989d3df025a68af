//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016), a protocol core: no I/O.
//!
//! Each backend has a permutation of the table's `M` slots, fixed by its own identity (its
//! address): `offset = h1 mod M`, `skip = h2 mod (M - 1) + 1`, slot `j` of the permutation is
//! `(offset + j * skip) mod M` (a full permutation because `M` is prime). The table is filled
//! in rounds: in each round every backend earns credit in proportion to its weight and, for
//! each whole unit, claims the next slot of its permutation that nobody holds yet. A flow goes
//! to the backend of slot `hash(flow) mod M`.
//!
//! Why Maglev: a lookup is one array read (no ring walk, no per-backend hash), the shares
//! follow the weights to within about `N / M`, and because every backend's preferences depend
//! on it alone, adding or removing one backend moves about `1/N` of the slots plus a small
//! disruption (measured in the tests below: see [`moved`]). Rendezvous hashing moves exactly
//! `1/N` but costs `N` hashes per new flow (1000 backends: 1000 hashes); a hash ring needs
//! hundreds of virtual nodes per backend for even shares and a binary search per flow.
//!
//! Table size: a prime at least 100 times the number of backends (the paper's rule for shares
//! within about 1 %), from [`PRIMES`], at least 1021 (2 KiB of `u16`) and at most 65521
//! (128 KiB): many small services stay small; a service with 656 or more backends gets the
//! largest table and shares within `N / 65521`. The size only grows while a service lives
//! (the daemon keeps it), since a new size reshuffles every slot.

use crate::nat::table::mix;

/// No backend (a table of a service without one that takes new connections).
pub const NONE: u16 = u16::MAX;

/// Table sizes (primes).
pub const PRIMES: &[u32] = &[1021, 2039, 4093, 8191, 16381, 32749, 65521];

/// Most backends a service may have (a table entry is a `u16`, [`NONE`] excluded).
pub const MAX_BACKENDS: usize = 4096;

/// The table size for `n` backends: the smallest of [`PRIMES`] at least `100 n`.
pub fn size_for(n: usize) -> u32 {
    let want = (n as u64).saturating_mul(100);
    PRIMES
        .iter()
        .copied()
        .find(|&p| u64::from(p) >= want)
        .unwrap_or(PRIMES[PRIMES.len() - 1])
}

/// A backend as the table builder sees it: its identity (any stable number, e.g. its IPv4
/// address) and its weight (0: takes no new flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Identity: the permutation depends on it alone.
    pub key: u64,
    /// Relative weight (0: no slots).
    pub weight: u32,
}

/// Builds a table of `m` slots (`m` prime, at least 2) for `members` (index = backend index,
/// at most [`MAX_BACKENDS`]). Slots hold a member index, or [`NONE`] everywhere when no member
/// has a weight.
pub fn build(members: &[Member], m: u32) -> Vec<u16> {
    let m = u64::from(m.max(2));
    let mut table = vec![NONE; m as usize];
    let members = &members[..members.len().min(MAX_BACKENDS)];
    let max_w = members.iter().map(|b| b.weight).max().unwrap_or(0);
    if max_w == 0 {
        return table;
    }
    // (offset, skip, next, credit) per member.
    let mut perm: Vec<(u64, u64, u64, u64)> = members
        .iter()
        .map(|b| {
            let h1 = mix(b.key ^ 0x6d61_676c_6576_0001);
            let h2 = mix(b.key ^ 0x6d61_676c_6576_0002);
            (h1 % m, h2 % (m - 1) + 1, 0, 0)
        })
        .collect();
    let mut filled = 0u64;
    while filled < m {
        for (i, b) in members.iter().enumerate() {
            if b.weight == 0 {
                continue;
            }
            let p = &mut perm[i];
            p.3 += u64::from(b.weight);
            while p.3 >= u64::from(max_w) {
                p.3 -= u64::from(max_w);
                // The next slot of this member's permutation that is free: every member's
                // permutation covers all `m` slots, and one is free, so this ends.
                loop {
                    let c = ((p.0 + p.2 * p.1) % m) as usize;
                    p.2 += 1;
                    if table[c] == NONE {
                        // `i` < MAX_BACKENDS < u16::MAX.
                        table[c] = i as u16;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return table;
                }
            }
        }
    }
    table
}

/// The hash of a flow for the table: the same on every worker and every host (no random
/// seed), so that whoever sees a flow first picks the same backend.
#[inline]
pub fn flow_hash(proto: u8, src: u32, sport: u16, dst: u32, dport: u16) -> u64 {
    let a = (u64::from(src) << 32) | (u64::from(sport) << 16) | u64::from(proto);
    let b = (u64::from(dst) << 32) | u64::from(dport);
    mix(a ^ mix(b ^ 0x5eed_1b0a_d0ba_1a7c))
}

/// The slot of `hash` in a table of `len` slots.
#[inline]
pub fn slot(hash: u64, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (hash % len as u64) as usize
}

/// The share of slots whose backend changed between `a` and `b` (same size), leaving out the
/// slots that `a` gave to `gone` (those had to move): the disruption beyond the minimum.
pub fn moved(a: &[u16], b: &[u16], gone: Option<u16>) -> (usize, usize) {
    let mut must = 0;
    let mut extra = 0;
    for (x, y) in a.iter().zip(b) {
        if Some(*x) == gone {
            must += 1;
        } else if x != y {
            extra += 1;
        }
    }
    (must, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u32, weight: u32) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                key: u64::from(0x0a01_0000 + i),
                weight,
            })
            .collect()
    }

    fn shares(t: &[u16], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in t {
            c[usize::from(s)] += 1;
        }
        c
    }

    #[test]
    fn sizes_are_prime_and_grow_with_backends() {
        for &p in PRIMES {
            assert!((2..p).take_while(|d| d * d <= p).all(|d| p % d != 0), "{p}");
        }
        assert_eq!(size_for(1), 1021);
        assert_eq!(size_for(3), 1021);
        assert_eq!(size_for(100), 16381);
        assert_eq!(size_for(1000), 65521);
    }

    #[test]
    fn every_slot_is_filled_and_shares_follow_weights() {
        let mut m = members(3, 1);
        m[0].weight = 3;
        m[1].weight = 2;
        m[2].weight = 1;
        let t = build(&m, 1021);
        assert!(t.iter().all(|&s| s != NONE));
        let c = shares(&t, 3);
        // 3 : 2 : 1 of 1021, each within 1 %.
        for (got, want) in c.iter().zip([510.5, 340.3, 170.2]) {
            assert!((*got as f64 - want).abs() < 10.3, "{c:?}");
        }
        // Weight 0 (draining) and no weights at all.
        m[1].weight = 0;
        let c = shares(&build(&m, 1021), 3);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], 1021);
        assert!(build(&members(3, 0), 1021).iter().all(|&s| s == NONE));
        assert!(build(&[], 1021).iter().all(|&s| s == NONE));
    }

    #[test]
    fn removing_one_of_100_moves_about_one_percent() {
        let all = members(100, 1);
        let m = size_for(100);
        let a = build(&all, m);
        // Backend 37 goes: the others keep their indexes by keeping their order.
        let mut rest = all.clone();
        rest[37].weight = 0;
        let b = build(&rest, m);
        let (must, extra) = moved(&a, &b, Some(37));
        let total = m as usize;
        let share = (must + extra) as f64 / total as f64;
        // Maglev promises about 1/N plus a small disruption.
        assert!(
            (0.005..0.02).contains(&(must as f64 / total as f64)),
            "{must}"
        );
        assert!(share < 0.03, "moved {must} + {extra} of {total}");
        eprintln!(
            "1 of 100 backends removed: {:.2} % of slots moved ({:.2} % had to, {:.2} % extra)",
            share * 100.0,
            must as f64 * 100.0 / total as f64,
            extra as f64 * 100.0 / total as f64
        );
        // Adding it back restores the table exactly (the permutations are fixed).
        assert_eq!(build(&all, m), a);
    }

    #[test]
    fn flow_hash_spreads_flows_evenly() {
        let t = build(&members(3, 1), 1021);
        let mut c = [0u32; 3];
        for port in 0..30_000u16 {
            let h = flow_hash(6, 0xc0a8_0001, port, 0xc0a8_0002, 8080);
            c[usize::from(t[slot(h, t.len())])] += 1;
        }
        for x in c {
            assert!((9_000..11_000).contains(&x), "{c:?}");
        }
    }
}
