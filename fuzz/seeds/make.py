#!/usr/bin/python3
"""Writes the seed corpus: real frames (built with scapy, an implementation that is not ours) in
the input format of each fuzz target. Run from this directory: /usr/bin/python3 make.py.
`tests/tests/fuzz_replay.rs` replays these and their mutations on stable in CI."""
import json, os, struct
from scapy.all import (ARP, ICMP, IP, IPv6, TCP, UDP, Dot1Q, Ether, Raw, VXLAN, raw)
from scapy.layers.l2 import Dot1AD
from scapy.layers.dns import DNS, DNSQR, DNSRROPT

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
frames = {
    "ipv4_tcp_syn": Ether(src=A, dst=B) / IP(src="10.1.0.2", dst="10.1.0.3") / TCP(sport=40000, dport=80, flags="S"),
    "ipv4_tcp_data": Ether(src=A, dst=B) / IP(src="10.1.0.2", dst="93.184.216.34", flags="DF") / TCP(sport=40001, dport=443, flags="PA") / Raw(b"x" * 200),
    "ipv4_udp_dns": Ether(src=A, dst=B) / IP(src="10.1.0.2", dst="8.8.8.8") / UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6),
    "ipv4_icmp_echo": Ether(src=A, dst=B) / IP(src="10.1.0.2", dst="10.1.0.1") / ICMP(type=8, id=7, seq=1) / Raw(b"ping" * 8),
    "icmp_unreach_embedded": Ether(src=B, dst=A) / IP(src="8.8.8.8", dst="192.168.1.10") / ICMP(type=3, code=3) / IP(src="192.168.1.10", dst="8.8.8.8") / UDP(sport=51234, dport=53),
    "ipv4_fragment": Ether(src=A, dst=B) / IP(src="10.1.0.2", dst="10.9.9.9", flags="MF", frag=0) / UDP(sport=1, dport=2) / Raw(b"f" * 64),
    "ipv4_ttl1_ihl_options": Ether(src=A, dst=B) / IP(src="10.1.0.2", dst="10.9.9.9", ttl=1, options=b"\x01\x01\x01\x00") / UDP(sport=1, dport=2),
    "arp_who_has": Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=A, psrc="10.1.0.2", pdst="10.1.0.1"),
    "arp_reply": Ether(src=B, dst=A) / ARP(op=2, hwsrc=B, psrc="10.1.0.3", hwdst=A, pdst="10.1.0.2"),
    "vlan_tagged": Ether(src=A, dst=B) / Dot1Q(vlan=10, prio=5) / IP(src="10.1.0.2", dst="10.1.0.3") / UDP(sport=1, dport=2),
    "qinq": Ether(src=A, dst=B) / Dot1AD(vlan=100) / Dot1Q(vlan=10) / IP() / UDP(),
    "vxlan": Ether(src=A, dst=B) / IP(src="192.168.1.11", dst="192.168.1.10") / UDP(sport=49152, dport=4789) / VXLAN(vni=100) / Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(src="10.5.0.1", dst="10.5.0.2") / ICMP(),
    "esp": Ether(src=A, dst=B) / IP(src="192.168.1.11", dst="192.168.1.10", proto=50) / Raw(struct.pack(">II", 0x1234, 1) + b"\x00" * 8 + b"\xaa" * 64 + b"\x00" * 16),
    "ipv6_tcp": Ether(src=A, dst=B) / IPv6(src="fd00::2", dst="fd00::3") / TCP(sport=40000, dport=80, flags="S"),
    "lldp": Ether(src=A, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + b"\x00" * 40),
    "broadcast_padding": Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.1.0.2", dst="10.1.0.255") / UDP(sport=1, dport=2) / Raw(b"\x00" * 255),
}
frames = {k: raw(v) for k, v in frames.items()}
frames["runt"] = frames["ipv4_tcp_syn"][:10]


def write(target, name, data):
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, name), "wb") as f:
        f.write(data)


for k, f in frames.items():
    write("wire_views", k, f)
    write("esp", k, f)
    for sel in (0, 1, 2, 3):
        write("nat", f"{k}_{sel}", bytes([sel]) + f)
    # pipeline: records of [port, time step, length, bytes]
    write("pipeline", k, bytes([0, 1, min(len(f), 255)]) + f[:255] + bytes([1, 0, min(len(f), 255)]) + f[:255])
    # offload: a 12-byte virtio-net header (NEEDS_CSUM at the L4 header), the max frame, the frame
    hdr = struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 16, 0)
    write("offload", k, hdr + struct.pack("<H", 1514) + f)
    write("checksum_update", k, f)
# esp: a cleartext VXLAN datagram (what an opened ESP-in-UDP packet holds) carrying one TCP
# segment, as `underlay-in` gathers into a run.
write("esp", "vxlan_tcp_cleartext", raw(UDP(sport=49152, dport=4789, chksum=0) / VXLAN(vni=100) / Ether(src=A, dst=B) / IP(src="10.5.0.1", dst="10.5.0.2", flags="DF") / TCP(sport=40000, dport=5201, flags="A", seq=1000) / Raw(b"y" * 200)))
for i, req in enumerate([
    {"id": 1, "cmd": "status"},
    {"id": 2, "cmd": "network.create", "args": {"name": "blue", "subnet": "10.1.0.0/24", "vni": 100}},
    {"id": 3, "cmd": "port.add", "args": {"name": "c1", "type": "tap", "network": "blue", "netns": "c1"}},
    {"id": 4, "cmd": "fdb.ls", "args": {"limit": 1024, "after": {"network": "blue", "mac": "02:00:00:00:00:01"}}},
    {"id": 5, "cmd": "config.import", "args": {"version": 1, "networks": [{"name": "o", "vni": 7}], "peers": [{"network": "o", "vtep": "10.9.0.1"}]}},
    {"id": 6, "cmd": "key.add", "args": {"tag": 1, "key": "00" * 20}},
    {"id": 7, "cmd": "nat.set", "args": {"tcp_established": 7440}},
]):
    write("control_protocol", f"req{i}", json.dumps(req).encode())

# dns: one byte (IPv4 options: 0-3 words), then a DNS message as a resolver sends it.
queries = {
    "a_web": DNS(id=0x1234, rd=1, qd=DNSQR(qname="web", qtype="A")),
    "a_web_domain": DNS(id=2, rd=1, qd=DNSQR(qname="Web.Blue.", qtype="A")),
    "a_tasks": DNS(id=3, rd=1, qd=DNSQR(qname="tasks.web", qtype="A")),
    "aaaa_web": DNS(id=4, rd=1, qd=DNSQR(qname="web", qtype="AAAA")),
    "a_nosuch": DNS(id=5, rd=1, qd=DNSQR(qname="nosuch", qtype="A")),
    "a_internet": DNS(id=6, rd=1, qd=DNSQR(qname="example.com", qtype="A")),
    "edns": DNS(id=7, rd=1, qd=DNSQR(qname="web", qtype="A"), ar=DNSRROPT(rclass=4096)),
    "status_opcode": DNS(id=8, opcode=2, qd=DNSQR(qname="web")),
    "response": DNS(id=9, qr=1, qd=DNSQR(qname="web")),
    "any_chaos": DNS(id=10, qd=DNSQR(qname="web", qtype="ANY", qclass="CH")),
}
for k, q in queries.items():
    for sel in (0, 1):
        write("dns", f"{k}_{sel}", bytes([sel]) + raw(q))
