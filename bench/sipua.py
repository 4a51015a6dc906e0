"""Minimal raw-SIP (UDP) user agents for the sipxfer bench: a trunk-side caller and any number of
rooms, all in one single-threaded loop. Enough SIP for INVITE/200/ACK, BYE, re-INVITE and stray
in-dialog requests; no auth, no TCP, no forking. Times are time.perf_counter() in seconds.
With tls=(addr, cafile) the caller can also place calls over one SIP/TLS connection with an
SDES-SRTP offer (RTP/SAVP, a=crypto AES_CM_128_HMAC_SHA1_80); the rooms stay UDP and plain.

Each caller call i uses From user "c<i>", which sipxferd copies into the room leg's From, so a
room INVITE is tied to its caller call; the room also records sipxferd's X-Session-Id.
"""
import base64
import os
import re
import selectors
import socket
import ssl
import struct
import threading
import time
import uuid

HOST = "127.0.0.1"
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type"}


def parse(data):
    text = data.decode("utf-8", "replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    hdrs = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and hdrs:
            hdrs[-1] = (hdrs[-1][0], hdrs[-1][1] + " " + line.strip())
            continue
        k, _, v = line.partition(":")
        k = k.strip().lower()
        hdrs.append((COMPACT.get(k, k), v.strip()))
    return lines[0], hdrs, body


def hget(hdrs, name, default=""):
    for k, v in hdrs:
        if k == name:
            return v
    return default


def hall(hdrs, name):
    return [v for k, v in hdrs if k == name]


def sdp(port, user="bench"):
    return (f"v=0\r\no={user} 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def sdp_savp(port, key, suite="AES_CM_128_HMAC_SHA1_80", user="bench"):
    """an SDES-SRTP offer (RFC 4568): key = the 30-byte master key + salt we encrypt with"""
    return (f"v=0\r\no={user} 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=crypto:1 {suite} inline:{base64.b64encode(key).decode()}\r\n")


def sdp_crypto(body):
    """(suite, 30-byte key) of the first a=crypto of an SDP, or None"""
    m = re.search(r"a=crypto:\d+ (AES_CM_128_HMAC_SHA1_(?:80|32)) inline:([A-Za-z0-9+/=]+)", body)
    if not m:
        return None
    key = base64.b64decode(m.group(2))
    return (m.group(1), key) if len(key) == 30 else None


def sdp_port(body):
    m = re.search(r"m=audio (\d+)", body)
    return int(m.group(1)) if m else None


def msg(first, headers, body=""):
    out = first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    if body:
        out += "Content-Type: application/sdp\r\n"
    out += f"Content-Length: {len(body.encode())}\r\n\r\n" + body
    return out.encode()


def uri_of(v):
    m = re.search(r"<([^>]*)>", v)
    return m.group(1) if m else v.split(";")[0].strip()


def hostport(uri):
    m = re.match(r"sips?:(?:[^@]*@)?([^;:>]+)(?::(\d+))?", uri)
    return (m.group(1), int(m.group(2) or 5060)) if m else None


class Call:
    def __init__(self, i):
        self.i = i
        self.cid = f"bench-{i}-{uuid.uuid4().hex[:8]}@{HOST}"
        self.ftag = uuid.uuid4().hex[:10]
        self.ttag = None
        self.contact = None
        self.pa = self.ra = self.pb = self.rb = None
        self.status = None
        self.t_invite = self.t_200 = None
        self.sid = None
        self.room = None
        self.tls = False
        self.tx_key = self.rx_key = None   # SRTP: our key (offer), the answerer's key (its a=crypto)
        self.suite = None


class TlsTx:
    """The caller's SIP/TLS connection, with the sendto()/getsockname() the UDP code uses
    (the address is ignored: everything goes over the one connection)."""

    def __init__(self, sock):
        self.sock = sock

    def sendto(self, data, _addr=None):
        self.sock.sendall(data)

    def getsockname(self):
        return self.sock.getsockname()


class RoomCall:
    def __init__(self, cid):
        self.cid, self.ttag = cid, uuid.uuid4().hex[:10]
        self.resp = None          # our 200, for INVITE retransmissions
        self.sid = self.caller_i = None
        self.t_200 = self.t_bye = None
        self.port = self.relay_port = None


class Agents:
    def __init__(self, sip_addr, caller_port, rooms, media_base=50000, room_media_base=None, tls=None):
        """rooms: {name: port}. Media ports: caller call i uses media_base+4i, room side +2.
        tls: ((host, port) of the daemon's sips: listen, CA file) for invite(..., srtp=True)."""
        self.sip = sip_addr
        self.sel = selectors.DefaultSelector()
        self.caller = self._sock(caller_port, "caller")
        self.rooms = {name: self._sock(p, name) for name, p in rooms.items()}
        self.room_port = dict(rooms)
        self.calls = {}           # cid -> Call
        self.by_i = {}
        self.room_calls = {}      # (room, cid) -> RoomCall
        self.media_base = media_base
        self.on_room_invite = None
        # media probes (transfer bench): a caller sends a small RTP packet every
        # PROBE_GAP s from its SDP port until its new room's media port hears one
        self.media = {}           # port -> socket
        self.media_rx = {}        # port -> first arrival (perf_counter) while probed
        self.probes = {}          # cid -> (Call, room port to listen on, deadline)
        self.probe_lock = threading.Lock()
        self.probe_seq = 0
        self.tls = self.tls_tx = None
        self.tls_buf = b""
        if tls:
            addr, cafile = tls
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.check_hostname = False   # the bench's certificate names 127.0.0.1 as CN only
            raw = socket.create_connection(addr, timeout=5)
            self.tls = ctx.wrap_socket(raw, server_hostname=addr[0])
            self.tls.settimeout(5)
            self.tls_addr = addr
            self.tls_tx = TlsTx(self.tls)
            self.sel.register(self.tls, selectors.EVENT_READ, "tls")

    def _sock(self, port, name):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((HOST, port))
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, name)
        return s

    def close(self):
        for s in [self.caller] + list(self.rooms.values()) + list(self.media.values()) + \
                ([self.tls] if self.tls else []):
            self.sel.unregister(s)
            s.close()

    def _tls_read(self, now):
        """read what the TLS connection has, hand each complete SIP message to the caller code"""
        try:
            data = self.tls.recv(65535)
            while self.tls.pending():
                data += self.tls.recv(self.tls.pending())
        except (ssl.SSLWantReadError, socket.timeout):
            return
        if not data:
            raise RuntimeError("sipxferd closed the SIP/TLS connection")
        self.tls_buf += data
        while True:
            end = self.tls_buf.find(b"\r\n\r\n")
            if end < 0:
                return
            m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", self.tls_buf[:end])
            size = end + 4 + (int(m.group(1)) if m else 0)
            if len(self.tls_buf) < size:
                return
            one, self.tls_buf = self.tls_buf[:size], self.tls_buf[size:]
            try:
                first, hdrs, body = parse(one)
            except Exception:
                continue
            self._caller_msg(self.tls_tx, self.tls_addr, first, hdrs, body, now)

    # ---- media probes
    PROBE_GAP = 0.001

    def media_sock(self, port):
        if port not in self.media:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((HOST, port))
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, ("media", port))
            self.media[port] = s
        return self.media[port]

    def probe(self, c, listen_port, secs=5.0):
        """From now on, c's caller sends RTP toward the relay every PROBE_GAP
        until listen_port (a room's media port) receives a packet. Both
        sockets must exist (media_sock, from the loop's thread) beforehand:
        this may be called from another thread."""
        with self.probe_lock:
            self.media_rx.pop(listen_port, None)
            self.probes[c.cid] = (c, listen_port, time.perf_counter() + secs)

    def _probe_tick(self):
        with self.probe_lock:
            items = list(self.probes.items())
        now = time.perf_counter()
        for cid, (c, port, deadline) in items:
            if port in self.media_rx or now > deadline:
                with self.probe_lock:
                    self.probes.pop(cid, None)
                continue
            self.probe_seq = (self.probe_seq + 1) & 0xffff
            pkt = struct.pack("!BBHII", 0x80, 0, self.probe_seq, 0, 0x5eed0000 + c.i) + b"\xff" * 160
            try:
                self.media[c.pa].sendto(pkt, (HOST, c.ra))
            except OSError:
                pass

    # ---- caller side
    def _tx(self, c):
        return self.tls_tx if c.tls else self.caller

    def _me(self, c):
        """(Via transport, our port, URI parameters) of c's caller side"""
        if c.tls:
            return "TLS", self.tls.getsockname()[1], ";transport=tls"
        return "UDP", self.caller.getsockname()[1], ""

    def invite(self, i, user="room-a", srtp=False):
        """srtp: over the TLS connection, offering RTP/SAVP with a fresh AES_CM_128_HMAC_SHA1_80 key"""
        c = Call(i)
        c.pa = self.media_base + 4 * i
        self.calls[c.cid] = c
        self.by_i[i] = c
        if srtp:
            if not self.tls:
                raise RuntimeError("invite(srtp=True) needs Agents(tls=...)")
            c.tls, c.suite, c.tx_key = True, "AES_CM_128_HMAC_SHA1_80", os.urandom(30)
        via, port, par = self._me(c)
        if c.tls:
            c.req_uri = f"sip:{user}@{self.tls_addr[0]}:{self.tls_addr[1]};transport=tls"
            body = sdp_savp(c.pa, c.tx_key, c.suite)
        else:
            c.req_uri = f"sip:{user}@{self.sip[0]}:{self.sip[1]}"
            body = sdp(c.pa)
        c.branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        c.t_invite = time.perf_counter()
        self._tx(c).sendto(msg(f"INVITE {c.req_uri} SIP/2.0", [
            ("Via", f"SIP/2.0/{via} {HOST}:{port};branch={c.branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:c{i}@{HOST}:{port}{par}>;tag={c.ftag}"),
            ("To", f"<{c.req_uri}>"), ("Call-ID", c.cid), ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:c{i}@{HOST}:{port}{par}>")], body), self.sip)
        return c

    def _dialog_req(self, c, method, cseq):
        via, port, par = self._me(c)
        target = c.contact or c.req_uri
        hp = hostport(target) or self.sip
        return hp, msg(f"{method} {target} SIP/2.0", [
            ("Via", f"SIP/2.0/{via} {HOST}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:c{c.i}@{HOST}:{port}{par}>;tag={c.ftag}"),
            ("To", f"<{c.req_uri}>;tag={c.ttag}"), ("Call-ID", c.cid), ("CSeq", f"{cseq} {method}")])

    def bye(self, c):
        hp, data = self._dialog_req(c, "BYE", 2)
        self._tx(c).sendto(data, hp)

    # ---- loop
    def pump(self, timeout=0.05):
        if self.probes:
            timeout = min(timeout, self.PROBE_GAP)
            self._probe_tick()
        for key, _ in self.sel.select(timeout):
            s = key.fileobj
            if key.data == "tls":
                self._tls_read(time.perf_counter())
                continue
            while True:
                try:
                    data, src = s.recvfrom(65535)
                except BlockingIOError:
                    break
                now = time.perf_counter()
                if isinstance(key.data, tuple):   # media
                    port = key.data[1]
                    if port not in self.media_rx:
                        self.media_rx[port] = now
                    continue
                try:
                    first, hdrs, body = parse(data)
                except Exception:
                    continue
                if key.data == "caller":
                    self._caller_msg(s, src, first, hdrs, body, now)
                else:
                    self._room_msg(key.data, s, src, first, hdrs, body, now)

    def run_until(self, cond, timeout):
        end = time.perf_counter() + timeout
        while not cond():
            if time.perf_counter() > end:
                return False
            self.pump(0.01)
        return True

    def media_port_in(self, c, room):
        """The media port the agent answers with for c in room (see _room_msg)."""
        return c.pa + 2 + (0 if room == next(iter(self.rooms)) else 1)

    def _reply(self, s, src, hdrs, code, reason, ttag=None, body="", contact=None):
        to = hget(hdrs, "to")
        if ttag and ";tag=" not in to:
            to += f";tag={ttag}"
        h = [("Via", v) for v in hall(hdrs, "via")]
        h += [("From", hget(hdrs, "from")), ("To", to), ("Call-ID", hget(hdrs, "call-id")),
              ("CSeq", hget(hdrs, "cseq"))]
        if contact:
            h.append(("Contact", contact))
        data = msg(f"SIP/2.0 {code} {reason}", h, body)
        s.sendto(data, src)
        return data

    def _caller_msg(self, s, src, first, hdrs, body, now):
        cid = hget(hdrs, "call-id")
        c = self.calls.get(cid)
        port = s.getsockname()[1]
        if first.startswith("SIP/2.0"):
            code = int(first.split()[1])
            cseq = hget(hdrs, "cseq")
            if not c or "INVITE" not in cseq or code < 200:
                return
            if code >= 300:
                c.status = code   # sofia ACKs non-2xx hop-by-hop itself? no: we must
                via = hall(hdrs, "via")[0]
                s.sendto(msg(f"ACK {c.req_uri} SIP/2.0", [
                    ("Via", via), ("Max-Forwards", "70"), ("From", hget(hdrs, "from")),
                    ("To", hget(hdrs, "to")), ("Call-ID", cid), ("CSeq", cseq.split()[0] + " ACK")]), src)
                return
            if c.status is None:
                c.status = code
                c.t_200 = now
                m = re.search(r";tag=([^;>\s]+)", hget(hdrs, "to"))
                c.ttag = m.group(1) if m else ""
                c.contact = uri_of(hget(hdrs, "contact")) or None
                c.ra = sdp_port(body)
                if c.tls:
                    cr = sdp_crypto(body)
                    if cr and cr[0] == c.suite and "RTP/SAVP" in body:
                        c.rx_key = cr[1]
            if cseq.split()[0] == "1":
                hp, data = self._dialog_req(c, "ACK", 1)
                s.sendto(data, hp)
            return
        method = first.split()[0]
        if method == "ACK":
            return
        if method == "INVITE" and c:   # re-INVITE toward the caller (e.g. after a transfer)
            nra = sdp_port(body)
            if nra:
                c.ra = nra
            par = ";transport=tls" if c.tls else ""
            self._reply(s, src, hdrs, 200, "OK", body=sdp_savp(c.pa, c.tx_key, c.suite) if c.tls else sdp(c.pa),
                        contact=f"<sip:c{c.i}@{HOST}:{port}{par}>")
            return
        if method == "BYE" and c:
            c.status = "bye-in"
        self._reply(s, src, hdrs, 200 if c or method == "OPTIONS" else 481, "OK" if c else "No call")

    def _room_msg(self, room, s, src, first, hdrs, body, now):
        if first.startswith("SIP/2.0"):
            return
        method = first.split()[0]
        cid = hget(hdrs, "call-id")
        rc = self.room_calls.get((room, cid))
        port = s.getsockname()[1]
        contact = f"<sip:{room}@{HOST}:{port}>"
        if method == "INVITE":
            if rc and rc.resp and ";tag=" not in hget(hdrs, "to"):
                s.sendto(rc.resp, src)   # retransmitted initial INVITE
                return
            if not rc:
                rc = RoomCall(cid)
                self.room_calls[(room, cid)] = rc
                rc.sid = hget(hdrs, "x-session-id")
                m = re.search(r"sip:c(\d+)@", hget(hdrs, "from"))
                rc.caller_i = int(m.group(1)) if m else None
                rc.relay_port = sdp_port(body)
                c = self.by_i.get(rc.caller_i)
                base = c.pa if c else self.media_base
                rc.port = base + 2 + (0 if room == next(iter(self.rooms)) else 1)
                if c:
                    if c.room is None:    # the first room of the call carries its media ports
                        c.pb, c.rb, c.room = rc.port, rc.relay_port, room
                    c.sid = rc.sid
                rc.t_200 = time.perf_counter()
            elif body:
                rc.relay_port = sdp_port(body) or rc.relay_port
            rc.resp = self._reply(s, src, hdrs, 200, "OK", ttag=rc.ttag, body=sdp(rc.port), contact=contact)
            if self.on_room_invite:
                self.on_room_invite(room, rc)
            return
        if method == "ACK":
            return
        if method == "BYE" and rc:
            rc.t_bye = now
        self._reply(s, src, hdrs, 200 if rc else 481, "OK" if rc else "No call")


def setup_calls(agents, n, room="room-a", window=20, timeout=60, srtp=False):
    """Place n calls (window outstanding at a time); return the Call objects that got a 2xx
    (with srtp: over TLS with an SDES offer, and only those whose answer carried a key)."""
    placed = 0
    pending = set()
    end = time.perf_counter() + timeout
    calls = []
    while (placed < n or pending) and time.perf_counter() < end:
        while placed < n and len(pending) < window:
            c = agents.invite(placed, room, srtp=srtp)
            calls.append(c)
            pending.add(c.cid)
            placed += 1
        agents.pump(0.01)
        for cid in list(pending):
            c = agents.calls[cid]
            if c.status is not None and (c.status != 200 or c.rb is not None):
                pending.discard(cid)
    return [c for c in calls if c.status == 200 and c.ra and c.rb and (not srtp or c.rx_key)]
