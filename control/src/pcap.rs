//! Writes the classic pcap file format with nanosecond timestamps (magic `0xa1b23c4d`,
//! `LINKTYPE_ETHERNET`), which tcpdump, tshark and Wireshark read. Fields are little-endian;
//! readers tell the byte order from the magic.

use std::io::{self, Write};

/// The magic number of a pcap file whose timestamps are in nanoseconds.
pub const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// `LINKTYPE_ETHERNET`: every record is an Ethernet frame.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Length of the global header.
pub const HEADER_LEN: usize = 24;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// A pcap stream over `W`.
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header for records of at most `snaplen` bytes.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC_NS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs (8..16) stay 0: timestamps are UTC.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one record: `data` (cut to the snapshot length) taken at `ts_ns` nanoseconds since
    /// the Unix epoch from a frame of `orig_len` bytes.
    pub fn record(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let n = data.len().min(self.snaplen as usize);
        let data = data.get(..n).unwrap_or(data);
        let secs = u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX);
        // Below 10^9, so it fits.
        let nanos = (ts_ns % 1_000_000_000) as u32;
        let incl = n as u32;
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&nanos.to_le_bytes());
        h[8..12].copy_from_slice(&incl.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(incl).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    /// Flushes what was written to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_header_and_one_record_are_the_golden_bytes() {
        let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
        w.record(1_700_000_000_123_456_789, 60, &[0xaa, 0xbb, 0xcc])
            .unwrap();
        let bytes = w.into_inner();
        let golden: &[u8] = &[
            // magic 0xa1b23c4d, version 2.4, thiszone 0, sigfigs 0
            0x4d, 0x3c, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
            // snaplen 65535, LINKTYPE_ETHERNET
            0xff, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
            // ts_sec 1700000000 = 0x6553f100, ts_nsec 123456789 = 0x075bcd15
            0x00, 0xf1, 0x53, 0x65, 0x15, 0xcd, 0x5b, 0x07,
            // incl_len 3, orig_len 60, then the data
            0x03, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0xaa, 0xbb, 0xcc,
        ];
        assert_eq!(bytes, golden);
    }

    #[test]
    fn records_are_cut_to_the_snapshot_length() {
        let mut w = PcapWriter::new(Vec::new(), 2).unwrap();
        w.record(5, 0, &[1, 2, 3, 4]).unwrap();
        let bytes = w.into_inner();
        let rec = &bytes[HEADER_LEN..];
        assert_eq!(rec[8..12], 2u32.to_le_bytes(), "incl_len");
        assert_eq!(
            rec[12..16],
            2u32.to_le_bytes(),
            "orig_len never below incl_len"
        );
        assert_eq!(rec[16..], [1, 2]);
    }
}
