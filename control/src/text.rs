//! Parsing and printing of the values users type: MAC addresses and object names.

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators) into six bytes.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || {
        format!("'{s}' is not a MAC address; write six hex bytes separated by colons, e.g. 02:42:ac:11:00:02")
    };
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in out.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// Formats six bytes as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Checks an object name: 1..=max characters of `[A-Za-z0-9_.-]`, not starting with `-` or `.`.
pub fn check_name(what: &str, s: &str, max: usize) -> Result<(), String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if s.is_empty() || s.len() > max || !ok_chars || s.starts_with(['-', '.']) {
        return Err(format!(
            "'{s}' is not a valid {what} name; use 1 to {max} characters of letters, digits, '_', '-' or '.', not starting with '-' or '.'"
        ));
    }
    Ok(())
}

/// Checks a DNS name as `endpoint add` takes it: labels of 1 to 63 letters, digits, '-' or '_'
/// (container names have underscores), joined by single dots, 253 characters at most.
pub fn check_dns_name(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.is_empty() || s.len() > 253 || !s.split('.').all(label_ok) {
        return Err(format!(
            "'{s}' is not a valid DNS name; use labels of 1 to 63 letters, digits, '-' or '_' (not starting or ending with '-') joined by dots, 253 characters at most"
        ));
    }
    Ok(())
}

/// Parses an IPv4 subnet or host address with its prefix, `a.b.c.d/len` (len 0 to 32).
pub fn parse_cidr(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let bad = || format!("'{s}' is not an IPv4 subnet; write address/prefix, e.g. 10.1.0.0/24");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    Ok((addr, len))
}

/// The netmask of prefix length `len` (values over 32 count as 32), as a number.
pub const fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        let len = if len > 32 { 32 } else { len };
        u32::MAX << (32 - len as u32)
    }
}

/// Whether `a` and `b` lie in the same `/len` prefix.
pub const fn same_prefix(a: std::net::Ipv4Addr, b: std::net::Ipv4Addr, len: u8) -> bool {
    let m = prefix_mask(len);
    a.to_bits() & m == b.to_bits() & m
}

/// The parent and VID of a subinterface name `PARENT.VID`, if the name has that shape (the VID
/// is not range-checked here).
pub fn vlan_subinterface(name: &str) -> Option<(&str, u16)> {
    let (parent, vid) = name.rsplit_once('.')?;
    let vid: u16 = vid.parse().ok()?;
    (!parent.is_empty()).then_some((parent, vid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_macs() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:02").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert_eq!(
            parse_mac("2-42-ac-11-0-2").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert_eq!(
            format_mac(&[2, 0x42, 0xac, 0x11, 0, 2]),
            "02:42:ac:11:00:02"
        );
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "002:42:ac:11:00:02",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_names() {
        assert!(check_name("network", "blue-net_1.a", 64).is_ok());
        assert!(check_name("network", "", 64).is_err());
        assert!(check_name("port", "averyveryverylongname", 15).is_err());
        assert!(check_name("port", "a b", 15).is_err());
        assert!(check_name("port", "-x", 15).is_err());
    }
}

/// Bytes as lower-case hex (captured frames in `capture.read`).
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Hex (either case) back to bytes; `None` for an odd length or a non-hex digit.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|p| match p {
            [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod hex_tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(encode_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(decode_hex("00AB7f"), Some(vec![0x00, 0xab, 0x7f]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(""), Some(vec![]));
    }
}
