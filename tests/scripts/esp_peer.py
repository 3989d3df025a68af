#!/usr/bin/python3
"""An ESP peer that is not ours, for tests/tests/esp_system.rs: derives SPIs and SA keys as
README's "Encrypted overlays" section documents (hashlib/hmac, not our code), builds ESP
packets with scapy's RFC 4106 implementation, and checks captured packets' ICVs with
python3-cryptography.

  esp_peer.py derive SRC DST TAG KEYHEX          -> "SPI_HEX SA_KEY_HEX"
  esp_peer.py inject IFACE DST_MAC SRC DST TAG KEYHEX VNI INNER_DST_MAC INNER_SRC INNER_DST
              UDP_PORT PAYLOAD [replay|wrongkey|clear]
  esp_peer.py verify PCAP SRC DST TAG KEYHEX     -> "N" packets whose ICV verified (exit 1 if any failed)
"""
import hashlib
import hmac
import ipaddress
import struct
import sys


def spi(src, dst, tag):
    d = hashlib.sha256(b"vswitch-esp-spi-v1" + ipaddress.IPv4Address(src).packed
                       + ipaddress.IPv4Address(dst).packed + struct.pack(">I", tag)).digest()
    v = struct.unpack(">I", d[:4])[0]
    return v | 0x100 if v < 256 else v


def sa_key(master, src, dst, tag):
    prk = hmac.new(b"vswitch-esp-v1", master, hashlib.sha256).digest()
    info = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack(">I", tag)
    out, t, i = b"", b"", 1
    while len(out) < len(master):
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:len(master)]


def main():
    cmd = sys.argv[1]
    if cmd == "derive":
        src, dst, tag, key = sys.argv[2], sys.argv[3], int(sys.argv[4]), bytes.fromhex(sys.argv[5])
        print("%08x %s" % (spi(src, dst, tag), sa_key(key, src, dst, tag).hex()))
    elif cmd == "inject":
        from scapy.all import Ether, IP, UDP, Raw, sendp
        from scapy.layers.vxlan import VXLAN
        from scapy.layers.ipsec import SecurityAssociation, ESP
        (iface, dst_mac, src, dst, tag, key, vni, idst_mac, isrc, idst, port, payload) = sys.argv[2:14]
        mode = sys.argv[14] if len(sys.argv) > 14 else ""
        tag, vni, port, key = int(tag), int(vni), int(port), bytes.fromhex(key)
        inner = (Ether(dst=idst_mac, src="02:00:00:00:77:77") / IP(src=isrc, dst=idst)
                 / UDP(sport=40000, dport=port) / Raw(payload.encode()))
        pkt = IP(src=src, dst=dst, flags="DF") / UDP(sport=50000, dport=4789, chksum=0) / VXLAN(vni=vni, flags=0x08) / inner
        if mode == "clear":
            frame = Ether(dst=dst_mac, src="02:00:00:00:80:02") / pkt
            sendp(frame, iface=iface, verbose=False)
            return
        k = sa_key(key, src, dst, tag)
        if mode == "wrongkey":
            k = bytes([k[0] ^ 0xff]) + k[1:]
        # "udp", "udp-replay": ESP in UDP port 4500 (RFC 3948). (Built here around scapy's ESP:
        # its own nat_t_header writes a wrong UDP length and a non-ESP marker.)
        udp = mode.startswith("udp")
        if udp:
            mode = mode[4:]
        sa = SecurityAssociation(ESP, spi=spi(src, dst, tag), crypt_algo="AES-GCM", crypt_key=k)
        enc = sa.encrypt(IP(bytes(pkt)), seq_num=2 if mode == "wrongkey" else 1, iv=b"\x00\x00\x00\x00\x00\x00\x00\x07")
        if udp:
            enc = (IP(src=src, dst=dst, flags="DF") / UDP(sport=4500, dport=4500, chksum=0)
                   / Raw(bytes(enc[ESP])))
        frame = Ether(dst=dst_mac, src="02:00:00:00:80:02") / enc
        sendp(frame, iface=iface, verbose=False)
        if mode == "replay":
            sendp(frame, iface=iface, verbose=False)
    elif cmd == "verify":
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.exceptions import InvalidTag
        path, src, dst, tag, key = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), bytes.fromhex(sys.argv[6])
        want_spi, k = spi(src, dst, tag), sa_key(key, src, dst, tag)
        aead = AESGCM(k[:-4])
        data = open(path, "rb").read()
        magic = struct.unpack("<I", data[:4])[0]
        off, good, bad = 24, 0, 0
        while off + 16 <= len(data):
            _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
            f = data[off + 16:off + 16 + incl]
            off += 16 + incl
            if len(f) < 34 or f[12:14] != b"\x08\x00" or f[23] not in (50, 17):
                continue
            ihl = (f[14] & 0x0F) * 4
            total = struct.unpack(">H", f[16:18])[0]
            if f[26:30] != ipaddress.IPv4Address(src).packed or f[30:34] != ipaddress.IPv4Address(dst).packed:
                continue
            e = f[14 + ihl:14 + total]
            if f[23] == 17:
                # ESP in UDP (RFC 3948): port 4500, then the ESP packet.
                if len(e) < 8 or struct.unpack(">H", e[2:4])[0] != 4500:
                    continue
                e = e[8:]
            if struct.unpack(">I", e[:4])[0] != want_spi:
                continue
            try:
                aead.decrypt(k[-4:] + e[8:16], e[16:], e[:8])
                good += 1
            except InvalidTag:
                bad += 1
        del magic
        print(good)
        sys.exit(1 if bad else 0)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
