//! Feeds arbitrary frames to NAT (`vswitch::nat`): parsing, outbound and inbound translation,
//! ICMP errors, partial checksums. Nothing may panic, and a frame whose IPv4 header checksum
//! verified before translation must verify after it (incremental updates keep a correct
//! checksum correct).

use dataplane::checksum::{fold, sum16};
use std::cell::RefCell;
use vswitch::nat::translate::{self, Way};
use vswitch::nat::Nat;

thread_local! {
    /// One small table reused across inputs (sessions from earlier inputs make inbound
    /// lookups hit).
    static NAT: RefCell<Nat> = RefCell::new(Nat::new(64, 1));
}

fn header_ok(f: &[u8]) -> Option<bool> {
    let ihl = usize::from(f.get(14)? & 0x0f) * 4;
    Some(fold(sum16(f.get(14..14 + ihl)?, 0)) == 0xffff)
}

/// One input: must not panic; the checks above hold.
pub fn run(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let mut frame = frame.to_vec();
    let way = if sel & 1 == 0 { Way::Out } else { Way::In };
    let partial = (sel & 2 != 0).then_some((34usize, usize::from(sel >> 2)));
    let Ok(f) = translate::parse(&frame, 14, way, partial) else {
        return;
    };
    let before = header_ok(&frame);
    let now = u64::from(sel >> 4);
    NAT.with(|n| {
        let mut n = n.borrow_mut();
        let r = match way {
            Way::Out => {
                let h = n.table.hash_in(&Nat::inside_key(&f, 1));
                n.outbound(&mut frame, &f, 1, h, 0xc0a8_0102, now)
            }
            Way::In => {
                let h = n.table.hash_out(&Nat::outside_key(&f));
                n.inbound(&mut frame, &f, h, now)
            }
        };
        if r.is_ok() && before == Some(true) {
            assert_eq!(header_ok(&frame), Some(true), "header checksum broken");
        }
        assert!(n.table.len() <= n.table.capacity());
    });
}
