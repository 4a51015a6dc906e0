#!/usr/bin/env python3
"""A DNS server that reads every query and never answers.

Listens on UDP and TCP port 53 of one loopback address (resolv.conf cannot
name a port, so parallel tests each take their own 127.x.y.z). Prints
"listening ADDRESS" once bound, then one line "query PROTO NAME TYPE" per
query, flushed, so a test can count what reached DNS and from whom.

  blackhole_dns.py --address 127.53.1.2
"""
import argparse
import select
import socket
import sys


def qname(pkt):
    """(name, qtype) of the first question, or ("?", 0)."""
    try:
        i, labels = 12, []
        while pkt[i]:
            n = pkt[i]
            labels.append(pkt[i + 1:i + 1 + n].decode(errors="replace"))
            i += 1 + n
        return ".".join(labels), int.from_bytes(pkt[i + 1:i + 3], "big")
    except IndexError:
        return "?", 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--port", type=int, default=53)
    a = ap.parse_args()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((a.address, a.port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((a.address, a.port))
    tcp.listen(64)
    print("listening %s" % a.address, flush=True)
    conns = {}  # open TCP connections are kept open, silent, until the peer leaves
    while True:
        r, _, _ = select.select([udp, tcp] + list(conns), [], [])
        for s in r:
            if s is udp:
                pkt, _ = udp.recvfrom(65535)
                name, typ = qname(pkt)
                print("query udp %s %d" % (name, typ), flush=True)
            elif s is tcp:
                c, _ = tcp.accept()
                conns[c] = b""
            else:
                data = b""
                try:
                    data = s.recv(65535)
                except OSError:
                    pass
                if not data:
                    del conns[s]
                    s.close()
                    continue
                buf = conns[s] + data
                while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    n = int.from_bytes(buf[:2], "big")
                    name, typ = qname(buf[2:2 + n])
                    print("query tcp %s %d" % (name, typ), flush=True)
                    buf = buf[2 + n:]
                conns[s] = buf


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
