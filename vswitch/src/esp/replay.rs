//! The anti-replay window (RFC 4303 section 3.4.3 and Appendix A), as a bitmap ring in the
//! manner of RFC 6479: [`WINDOW_WORDS`] 64-bit words, of which all but one are the window, so
//! sliding forward clears whole words and never shifts.
//!
//! The window is checked before decryption ([`Window::check`]) and advanced only after the ICV
//! verified ([`Window::accept`]): a forged, corrupted or replayed packet never moves it.
//!
//! Sender restarts: our senders number packets 1, 2, ... from a new start after a restart, but
//! their explicit IV ([`super::sa`]) keeps growing across restarts (it starts at the wall clock
//! in nanoseconds). A packet behind the window (or already seen) whose IV is above every IV the
//! window has accepted cannot be a replay (a replayed packet carries an IV the window saw, and
//! the IV is authenticated as the GCM nonce): [`Window::check`] says [`Verdict::Restart`], the
//! packet is decrypted, and if its ICV verifies the window starts again at its sequence number.
//! From then on the sender's new IV base (the restart packet's IV less its sequence number,
//! above every IV of its earlier life) is a floor: a packet from before the restart, whose
//! sequence number the fresh window would not remember, is refused by its IV
//! (`esp_outside_window`). This assumes counter IVs, as ours are (RFC 4106 recommends them).

/// Words of the bitmap ring.
pub const WINDOW_WORDS: usize = 32;
/// Packets the window covers: 1984 (the ring less one word, which is cleared ahead).
pub const WINDOW: u32 = ((WINDOW_WORDS - 1) * 64) as u32;
const RING_BITS: u32 = (WINDOW_WORDS * 64) as u32;

/// Why a packet fails the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Its sequence number was already accepted (or is 0, which no sender uses).
    Replay,
    /// Its sequence number is older than the window.
    OutsideWindow,
}

/// What the window says about a packet before decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// A sequence number not seen yet: decrypt, then [`Window::accept`].
    Fresh,
    /// Behind the window or seen, but with a new IV: a sender that restarted (see the module).
    Restart,
}

/// One SA's receive window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Highest sequence number accepted (0: none yet).
    top: u32,
    /// Highest explicit IV accepted.
    max_iv: u64,
    /// IVs below this belong to the sender's life before its last restart.
    floor_iv: u64,
    /// Whether any packet was accepted.
    used: bool,
    bits: [u64; WINDOW_WORDS],
}

impl Default for Window {
    fn default() -> Self {
        Window {
            top: 0,
            max_iv: 0,
            floor_iv: 0,
            used: false,
            bits: [0; WINDOW_WORDS],
        }
    }
}

#[inline]
fn word_bit(seq: u32) -> (usize, u64) {
    let pos = seq % RING_BITS;
    ((pos / 64) as usize, 1u64 << (pos % 64))
}

impl Window {
    /// Highest sequence number accepted so far (0 before the first).
    pub fn top(&self) -> u32 {
        self.top
    }

    /// Judges sequence number `seq` with explicit IV `iv`, before decryption. Changes nothing.
    #[inline]
    pub fn check(&self, seq: u32, iv: u64) -> Result<Verdict, Reject> {
        if iv < self.floor_iv {
            return Err(Reject::OutsideWindow);
        }
        let stale = if seq == 0 {
            Err(Reject::Replay)
        } else if seq > self.top {
            return Ok(Verdict::Fresh);
        } else if self.top - seq >= WINDOW {
            Err(Reject::OutsideWindow)
        } else {
            let (w, bit) = word_bit(seq);
            // `w` < WINDOW_WORDS by construction of `word_bit`.
            if self.bits.get(w).is_some_and(|x| x & bit != 0) {
                Err(Reject::Replay)
            } else {
                return Ok(Verdict::Fresh);
            }
        };
        if self.used && iv > self.max_iv && seq != 0 {
            Ok(Verdict::Restart)
        } else {
            stale
        }
    }

    /// Records `seq` (with `iv`) as received; call only after the ICV verified.
    #[inline]
    pub fn accept(&mut self, seq: u32, iv: u64, verdict: Verdict) {
        if verdict == Verdict::Restart {
            self.bits = [0; WINDOW_WORDS];
            self.top = seq;
            self.floor_iv = iv.saturating_sub(u64::from(seq));
        } else if seq > self.top {
            let (old, new) = (self.top / 64, seq / 64);
            // Clear the words the window slides over (all of them after a long jump).
            let n = (new - old).min(WINDOW_WORDS as u32);
            for i in 1..=n {
                let w = ((old + i) % (WINDOW_WORDS as u32)) as usize;
                if let Some(x) = self.bits.get_mut(w) {
                    *x = 0;
                }
            }
            self.top = seq;
        }
        let (w, bit) = word_bit(seq);
        if let Some(x) = self.bits.get_mut(w) {
            *x |= bit;
        }
        self.max_iv = self.max_iv.max(iv);
        self.used = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(w: &mut Window, seq: u32) -> Result<Verdict, Reject> {
        let v = w.check(seq, u64::from(seq))?;
        w.accept(seq, u64::from(seq), v);
        Ok(v)
    }

    #[test]
    fn window_is_at_least_1024() {
        const { assert!(WINDOW >= 1024) };
    }

    #[test]
    fn in_order_and_reordered_within_window() {
        let mut w = Window::default();
        for s in [1, 2, 3, 10, 5, 4, 9] {
            assert_eq!(take(&mut w, s), Ok(Verdict::Fresh), "seq {s}");
        }
        assert_eq!(w.top(), 10);
        for s in [1, 5, 10] {
            assert_eq!(w.check(s, 0), Err(Reject::Replay), "seq {s}");
        }
        assert_eq!(w.check(0, 0), Err(Reject::Replay));
        assert_eq!(w.check(6, 0), Ok(Verdict::Fresh));
    }

    #[test]
    fn old_packets_fall_outside() {
        let mut w = Window::default();
        assert_eq!(take(&mut w, 5000), Ok(Verdict::Fresh));
        assert_eq!(w.check(5000 - WINDOW, 0), Err(Reject::OutsideWindow));
        assert_eq!(w.check(5000 - WINDOW + 1, 0), Ok(Verdict::Fresh));
        // Sliding clears what the ring reuses: a number one lap later is fresh.
        let mut w = Window::default();
        for s in 1..=3 * RING_BITS {
            assert_eq!(take(&mut w, s), Ok(Verdict::Fresh), "seq {s}");
        }
        assert_eq!(take(&mut w, 1_000_000), Ok(Verdict::Fresh));
        assert_eq!(w.check(1_000_000 - 1, 0), Ok(Verdict::Fresh));
        assert_eq!(
            w.check(1_000_000 - RING_BITS, 0),
            Err(Reject::OutsideWindow)
        );
    }

    #[test]
    fn check_changes_nothing() {
        let mut w = Window::default();
        assert_eq!(take(&mut w, 7), Ok(Verdict::Fresh));
        let before = w.clone();
        let _ = w.check(100, 100);
        let _ = w.check(7, 7);
        assert_eq!(w.top, before.top);
        assert_eq!(w.bits, before.bits);
        assert_eq!(w.max_iv, before.max_iv);
    }

    #[test]
    fn restarted_sender_with_new_iv_restarts_the_window() {
        let mut w = Window::default();
        for s in 1..=5000u32 {
            w.accept(s, 1000 + u64::from(s), Verdict::Fresh);
        }
        // Old IV: a replay, whether inside or behind the window.
        assert_eq!(w.check(4990, 1000 + 4990), Err(Reject::Replay));
        assert_eq!(w.check(1, 1001), Err(Reject::OutsideWindow));
        // A new IV with a small sequence number: the sender started again.
        let v = w.check(1, 1_000_000);
        assert_eq!(v, Ok(Verdict::Restart));
        w.accept(1, 1_000_000, Verdict::Restart);
        assert_eq!(w.top(), 1);
        assert_eq!(w.check(1, 1_000_000), Err(Reject::Replay));
        assert_eq!(w.check(2, 1_000_001), Ok(Verdict::Fresh));
        // A packet from before the restart, ahead of the fresh window, is refused by its IV.
        assert_eq!(w.check(4000, 1000 + 4000), Err(Reject::OutsideWindow));
        assert_eq!(w.check(4999, 1000 + 4999), Err(Reject::OutsideWindow));
        // The new life's packets, reordered, still pass.
        w.accept(3, 1_000_002, Verdict::Fresh);
        assert_eq!(w.check(2, 1_000_001), Ok(Verdict::Fresh));
    }
}
