//! Checks the RFC 1624 incremental updates in `dataplane::checksum` against full recomputation
//! on arbitrary data: `[checksum word index, field word index, new value (2 or 4 bytes)...,
//! data...]`.

use dataplane::checksum::{checksum, fold, sum16, update16, update32, update_bytes};

/// One input: must not panic; the checks above hold.
pub fn run(input: &[u8]) {
    let [at, field, n0, n1, n2, n3, rest @ ..] = input else {
        return;
    };
    let mut data = rest.to_vec();
    if data.len() % 2 == 1 {
        data.push(0);
    }

    // Sums compose across any even split point.
    let cut = (usize::from(*at) * 2).min(data.len());
    assert_eq!(
        fold(sum16(&data[cut..], sum16(&data[..cut], 0))),
        fold(sum16(&data, 0))
    );

    let words = data.len() / 2;
    if words < 3 {
        return;
    }
    let at = 2 * (usize::from(*at) % words);
    let field = 2 * (usize::from(*field) % (words - 1));
    // A 4-byte field at `field`, clear of the checksum at `at`.
    if field + 4 > data.len() || (at + 2 > field && at < field + 4) {
        return;
    }

    data[at..at + 2].fill(0);
    let old_csum = checksum(&data);
    data[at..at + 2].copy_from_slice(&old_csum.to_be_bytes());
    assert_eq!(
        fold(sum16(&data, 0)),
        0xFFFF,
        "a computed checksum verifies"
    );

    let old = [
        data[field],
        data[field + 1],
        data[field + 2],
        data[field + 3],
    ];
    let new = [*n0, *n1, *n2, *n3];
    data[field..field + 4].copy_from_slice(&new);
    data[at..at + 2].fill(0);
    // Eqn. 3 matches full computation except for all-zero data (documented in update16).
    if data.iter().all(|&b| b == 0) {
        return;
    }
    let expect = checksum(&data);

    assert_eq!(update_bytes(old_csum, &old, &new), expect);
    assert_eq!(
        update32(old_csum, u32::from_be_bytes(old), u32::from_be_bytes(new)),
        expect
    );
    // Two 16-bit steps: exact as long as the intermediate data is not all zero either.
    let mid = update16(
        old_csum,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    let mut half = data.clone();
    half[field + 2..field + 4].copy_from_slice(&old[2..]);
    if half.iter().any(|&b| b != 0) {
        assert_eq!(mid, checksum(&half));
        let last = update16(
            mid,
            u16::from_be_bytes([old[2], old[3]]),
            u16::from_be_bytes([new[2], new[3]]),
        );
        assert_eq!(last, expect);
    }
}
