"""Hardening item 1: the RFC 4475 / RFC 5118 torture messages.

Every file of SHARED/torture/rfc4475/*.dat and SHARED/torture/rfc5118/* is
sent byte-exact to one sipxferd (one UDP datagram each; the files whose top
Via says TCP/TLS also over a TCP connection), the answer is compared with the
EXPECTED table below, and after every file the daemon must still answer an
OPTIONS probe with 200.

Most torture messages carry Vias without rport, so the daemon answers to the
Via port (5060, a few others) on the source address: this test binds
127.0.0.1:5060 (UDP and TCP) itself, sends the UDP datagrams from that
socket, and also binds the other Via ports named by the files when it can.
Replies are matched to the file by Call-ID so retransmissions of earlier
answers (or other tests' traffic) never count. Non-2xx finals to INVITEs are
ACKed so the daemon stops retransmitting.

The table holds what RFC 4475/5118 (via shared/torture/README.md and
shared/notes/robustness-and-security.md) want, which is also what the daemon
does wherever that is compliant. A value is a status code, None ("no reply
at all": dropped), or a frozenset of acceptable outcomes.
"""
import glob
import os
import re
import socket
import time

import harness
from harness import HOST, SHARED, Skip, case, check, parse_response

TORTURE = os.path.join(SHARED, "torture")

# Files whose top Via names TCP (bext01: TLS). Sent over TCP as well.
TCP_FILES = {"esc02.dat", "intmeth.dat", "longreq.dat", "novelsc.dat", "regaut01.dat",
             "scalar02.dat", "scalarlg.dat", "trws.dat", "unkscm.dat", "bext01.dat"}

ANY4XX = frozenset(range(400, 500))


def _any(*codes):
    return frozenset(codes)


# filename (UDP datagram) or filename + "/tcp" (over a TCP connection) ->
# expected final status, None = no packet at all, or a frozenset of both.
EXPECTED = {
    # ---- RFC 4475 3.1.1: valid messages
    # valid in-dialog-looking INVITE (To has a tag, no such dialog): 481; a
    # media anchor may also 488 (SDP `a=rtpmap:31 LPC`), or 404 (no room); never 400
    "wsinv.dat": _any(481, 488, 404),
    # unknown method; sofia's parser refuses it (known deviation, README).
    # Over UDP the top Via says TCP: nta drops it silently.
    "intmeth.dat": None,
    "intmeth.dat/tcp": _any(501, 400, None),
    "esc01.dat": _any(404, 488),          # valid INVITE to an unknown user
    "escnull.dat": 405,                   # REGISTER: not a registrar -> 405
    "esc02.dat": None,                    # Via TCP over UDP: dropped
    "esc02.dat/tcp": 501,                 # unknown method RE%47IST%45R
    "lwsdisp.dat": 200,                   # OPTIONS
    "longreq.dat": None,                  # Via TCP over UDP: dropped
    "longreq.dat/tcp": _any(404, 488),    # valid INVITE to an unknown user
    "dblreq.dat": 405,                    # the REGISTER; trailing INVITE ignored
    "semiuri.dat": 200,                   # OPTIONS
    "transports.dat": 200,                # OPTIONS
    "mpart01.dat": _any(405, 415),        # MESSAGE: may 405/415
    "unreason.dat": None,                 # stray response: silence
    "noreason.dat": None,                 # stray response: silence
    # ---- RFC 4475 3.1.2: invalid messages
    "badinv01.dat": 400,                  # "Bad Contact Header": sip_guard_mclass reads the Via past ";;,;,,"
    "clerr.dat": 400,
    "ncl.dat": 400,
    # over UDP the top Via says TCP; the README expects nta's 400 anyway, but
    # dropping a transport mismatch is compliant (the TCP run must get 400)
    "scalar02.dat": _any(400, None),
    "scalar02.dat/tcp": 400,
    "scalarlg.dat": None,                 # invalid response: discard
    "scalarlg.dat/tcp": None,
    "quotbal.dat": 400,
    "ltgtruri.dat": 400,
    "lwsruri.dat": None,                  # GAP: RFC wants 400; sofia's parser refuses the request line
    "lwsstart.dat": _any(400, 404, 488),  # reject, or accept (unknown user)
    "trws.dat": None,                     # Via TCP over UDP: dropped
    "trws.dat/tcp": _any(400, 200),       # reject, or accept the OPTIONS
    "escruri.dat": _any(400, 404, 488),   # 400, or accept without the escaped header
    "baddate.dat": _any(400, 404, 488),   # Date does not matter here
    "regbadct.dat": _any(400, 405),
    "badaspec.dat": _any(400, 200),
    "baddn.dat": _any(400, 200),
    "badvers.dat": None,                  # 505 addressed to the Via's c.example.com: never resolved, dropped (test_core.test_unknown_sip_version_505, test_dns)
    "mismatch01.dat": 400,
    "mismatch02.dat": _any(501, 400),
    "bigcode.dat": None,                  # invalid response: drop
    # ---- RFC 4475 3.2 / 3.3
    "badbranch.dat": _any(400, 200),      # 400 or RFC 2543 matching
    "insuf.dat": 400,
    "unkscm.dat": None,                   # Via TCP over UDP: dropped
    "unkscm.dat/tcp": 416,
    "novelsc.dat": None,                  # Via TCP over UDP: dropped
    "novelsc.dat/tcp": _any(416, 404),
    "unksm2.dat": ANY4XX,                 # any 4xx, no crash
    "bext01.dat": None,                   # Via TLS: silent without TLS
    "bext01.dat/tcp": _any(None, 420),    # record; silence or 420
    # 415 with Accept (RFC 4475 3.3.6); RFC 3261 8.2.2.1 checks the Request-URI
    # before content (8.2.3), so 404 for this unknown user is compliant too
    "invut.dat": _any(415, 404),
    "regaut01.dat": None,                 # Via TCP over UDP: dropped
    "regaut01.dat/tcp": _any(405, 401),   # not a registrar
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "bcast.dat": None,                    # response: drop
    "zeromf.dat": 200,                    # OPTIONS with Max-Forwards 0: answer it
    "cparam01.dat": 405,
    "cparam02.dat": 405,
    "regescrt.dat": 405,
    "sdp01.dat": _any(406, 400, 404, 488),
    "inv2543.dat": _any(400, 404, 488),   # accept or reject cleanly
    # ---- RFC 5118
    "ipv6-good": 405,                     # REGISTER
    "ipv6-bad": None,                     # GAP: RFC wants 400; sofia's parser refuses the request line
    "port-ambiguous": 405,
    "port-unambiguous": 405,
    "via-received-param-with-delim": 481,  # BYE outside a dialog
    "via-received-param-no-delim": 200,   # OPTIONS
    "ipv6-in-sdp": _any(400, 404, 488),   # truncated SDP (Content-Length note)
    "mult-ip-in-header": 481,             # BYE outside a dialog
    "mult-ip-in-sdp": _any(400, 404, 488),
    "ipv4-mapped-ipv6": _any(400, 404, 488),
    "ipv6-bug-abnf-3-colons": _any(200, 400, 404, 416),
    "ipv6-correct-abnf-2-colons": 200,
}

_CALLID_RE = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
_VIA_RE = re.compile(rb"^(?:via|v)[ \t]*:([^\r\n]*)", re.I | re.M)


def via_port(data):
    """The port of the top Via's sent-by (5060 when absent)."""
    m = _VIA_RE.search(data)
    if not m:
        return 5060
    line = re.sub(rb"\[[^\]]*\]", b"h", m.group(1)).split(b";")[0].split(b",")[0]
    p = re.search(rb"/\s*\w+\s+[^\s:]+:(\d+)", line)
    return int(p.group(1)) if p else 5060


def torture_files():
    if not os.path.isdir(TORTURE):
        raise Skip("torture folder absent: %s (see shared/torture/README.md)" % TORTURE)
    files = sorted(glob.glob(os.path.join(TORTURE, "rfc4475", "*.dat"))) + \
        sorted(f for f in glob.glob(os.path.join(TORTURE, "rfc5118", "*")) if os.path.isfile(f))
    if not files:
        raise Skip("torture folder absent: no files under %s" % TORTURE)
    return files


def _fmt(v):
    if isinstance(v, frozenset):
        return "one of {%s}" % ", ".join(sorted("none" if x is None else str(x) for x in v))
    return "none" if v is None else str(v)


def _ok(expected, got):
    if isinstance(expected, frozenset):
        return got in expected
    return got == expected


class _Frames:
    """A SIP byte stream cut into messages by Content-Length."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            msg, self.buf = harness.next_sip_message(self.buf)
            if msg is None:
                return out
            out.append(msg)


class Collector:
    """Our side of the wire: UDP sockets on 5060 (+ the other Via ports the
    files name), a TCP listener on 5060, and any TCP connection we open."""

    def __init__(self, extra_ports, wait_5060=8.0):
        self.udp = {}
        self.listener = None
        # another tool (svmap, sipp, a second run) may hold 5060 for a moment
        deadline = time.time() + wait_5060
        while True:
            try:
                self._bind_5060()
                break
            except OSError as e:
                self.close()
                self.udp, self.listener = {}, None
                if time.time() > deadline:
                    raise Skip("127.0.0.1:5060 is busy (%s): the torture replies go to the "
                               "Via port 5060, so this test needs it" % e)
                time.sleep(0.2)
        self.unbound = set()
        for p in sorted(extra_ports - {5060}):
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((HOST, p))
                self.udp[p] = s
            except OSError:
                s.close()
                self.unbound.add(p)
        self.streams = {}   # socket -> _Frames
        self.peer_port = None   # UDP replies count only from the daemon's port

    def _bind_5060(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp[5060] = s
        s.bind((HOST, 5060))
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 5060))
        self.listener.listen(16)

    def open_tcp(self, remote):
        c = socket.create_connection(remote, timeout=5)
        self.streams[c] = _Frames()
        return c

    def close_tcp(self, c):
        self.streams.pop(c, None)
        c.close()

    def poll(self, timeout):
        """Messages (bytes, reply_fn) arriving within timeout (returns early
        on the first batch)."""
        socks = list(self.udp.values()) + [self.listener] + list(self.streams)
        try:
            r = harness.readable(socks, timeout)
        except (OSError, ValueError):
            return []
        out = []
        for s in r:
            if s is self.listener:
                try:
                    c, _ = s.accept()
                    self.streams[c] = _Frames()
                except OSError:
                    pass
            elif s.type == socket.SOCK_DGRAM:
                try:
                    data, addr = s.recvfrom(70000)
                except OSError:
                    continue
                if self.peer_port and addr != (HOST, self.peer_port):
                    continue            # another test's daemon, not ours
                out.append((data, (lambda m, s=s, a=addr: s.sendto(m, a))))
            else:
                try:
                    data = s.recv(70000)
                except OSError:
                    data = b""
                if not data:
                    self.close_tcp(s)
                    continue
                for m in self.streams[s].feed(data):
                    out.append((m, (lambda m2, s=s: s.sendall(m2))))
        return out

    def close(self):
        for s in list(getattr(self, "udp", {}).values()):
            s.close()
        if getattr(self, "listener", None):
            self.listener.close()
        for c in list(getattr(self, "streams", {})):
            c.close()


def _ack_for(resp_bytes, r):
    """ACK for a non-2xx final response to an INVITE (stops retransmission)."""
    st, _, hdrs, _ = r
    if st < 300 or "INVITE" not in hdrs.get("cseq", [""])[0]:
        return None
    via = hdrs.get("via") or hdrs.get("v")
    to = hdrs.get("to") or hdrs.get("t")
    frm = hdrs.get("from") or hdrs.get("f")
    cid = hdrs.get("call-id") or hdrs.get("i")
    if not (via and to and frm and cid):
        return None
    m = re.search(r"<([^>]*)>", to[0]) or re.match(r"\s*([^;\s]+)", to[0])
    ruri = m.group(1) if m else "sip:invalid"
    num = hdrs["cseq"][0].split()[0]
    lines = ["ACK %s SIP/2.0" % ruri, "Via: %s" % via[0].split(",")[0], "Max-Forwards: 70",
             "From: %s" % frm[0], "To: %s" % to[0], "Call-ID: %s" % cid[0],
             "CSeq: %s ACK" % num, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _send_ack(msg, r, reply):
    ack = _ack_for(msg, r)
    if ack:
        try:
            reply(ack)
        except OSError:
            pass


def _callid(hdrs):
    v = hdrs.get("call-id") or hdrs.get("i")
    return v[0].encode(errors="replace") if v else None


def exchange(col, data, send, wait_final, wait_silence):
    """send(data); gather matching replies. Returns (outcome, first lines)
    where outcome is the first final status, 'provisional only', or None."""
    cids = set(_CALLID_RE.findall(data))
    send(data)
    finals, seen = [], []
    expect_reply = wait_final > 0
    deadline = time.time() + (wait_final if expect_reply else wait_silence)
    while time.time() < deadline:
        for msg, reply in col.poll(deadline - time.time()):
            r = parse_response(msg)
            if r is None:
                continue
            _send_ack(msg, r, reply)
            cid = _callid(r[2])
            if not ((cid in cids) if cids else cid is None):
                continue                    # a retransmission for an earlier file
            seen.append("%d %s" % (r[0], r[1]))
            if r[0] >= 200:
                finals.append(r[0])
        if finals and expect_reply:
            break
    if finals:
        return finals[0], seen
    if seen:
        return "provisional only", seen
    return None, seen


def drain(col):
    """Swallow (and ACK) whatever is left from earlier files."""
    end = time.time() + 0.02
    while time.time() < end:
        got = col.poll(0.0)
        if not got:
            return
        for msg, reply in got:
            r = parse_response(msg)
            if r:
                _send_ack(msg, r, reply)


def run_torture(t, files):
    """Send everything; returns ({key: outcome}, {key: replies}, notes)."""
    extra_ports = set()
    for f in files:
        with open(f, "rb") as fh:
            extra_ports.add(via_port(fh.read()))
    col = Collector(extra_ports)
    observed, replies, notes = {}, {}, []
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:9" % HOST})
    try:
        d.start()
        col.peer_port = d.sip_port
        check(d.options() == 200, "OPTIONS before the torture run")
        for f in files:
            name = os.path.basename(f)
            with open(f, "rb") as fh:
                data = fh.read()
            port = via_port(data)
            runs = [(name, "udp")]
            if name in TCP_FILES:
                runs.append((name + "/tcp", "tcp"))
            for key, tp in runs:
                exp = EXPECTED.get(key, "missing")
                want_reply = exp is not None and not (isinstance(exp, frozenset) and None in exp)
                drain(col)
                if tp == "udp":
                    out, seen = exchange(col, data,
                                         lambda b: col.udp[5060].sendto(b, (HOST, d.sip_port)),
                                         1.5 if want_reply else 0, 0.4)
                    if port in col.unbound:
                        notes.append("%s: Via port %d busy, reply not observable" % (key, port))
                        out = "unobservable"
                else:
                    c = col.open_tcp((HOST, d.sip_port))
                    try:
                        out, seen = exchange(col, data, c.sendall,
                                             1.5 if want_reply else 0, 0.6)
                    finally:
                        if c in col.streams:
                            col.close_tcp(c)
                observed[key] = out
                replies[key] = seen
                st = d.options()
                if st != 200:
                    raise harness.TestFailure(
                        "after %s the daemon %s (OPTIONS -> %s)" % (
                            key, "is alive" if d.alive() else "DIED", st))
        drain(col)
        check(d.alive(), "sipxferd died during the torture run")
        d.wait_idle()
        calls = d.metric("sipxfer_calls_total")
        check(calls == 0, "a torture message created a call (calls_total=%s)" % calls)
        d.check_clean_exit()
    finally:
        col.close()
    return observed, replies, notes


@case
def test_torture_rfc4475_rfc5118(t):
    files = torture_files()
    observed, replies, notes = run_torture(t, files)
    for n in notes:
        t.note(n)
    bad = []
    for key in sorted(observed):
        got = observed[key]
        if got == "unobservable":
            continue
        if key not in EXPECTED:
            bad.append("%s: not in the EXPECTED table, got %s" % (key, _fmt(got)))
            continue
        if not _ok(EXPECTED[key], got):
            bad.append("%s: expected %s, got %s (replies: %s)" % (
                key, _fmt(EXPECTED[key]), _fmt(got), "; ".join(replies[key]) or "none"))
    missing = sorted(set(EXPECTED) - set(observed))
    for key in missing:
        bad.append("%s: in the EXPECTED table but not sent (file missing?)" % key)
    check(not bad, "%d torture mismatch(es):\n  %s" % (len(bad), "\n  ".join(bad)))
