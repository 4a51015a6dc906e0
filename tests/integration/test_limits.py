"""Issue 17 items 4 and 6: SDP size and shape limits on every path an SDP
enters, per-source accounting of large INVITEs, and transfer.allow matched
part by part (the sipRefer allow-list bypass)."""
import re
import socket
import threading
import time

from harness import (HOST, RawCall, SipSocket, build_request, case, check, free_port,
                     parse_response, wait_for)
from test_core import caller, room_daemon
from test_transfer import connected_caller, session, setup, transfer

ATTACK = "sip:pstn-premium@127.0.0.1:%d;x=@pbx.example.com"


def sdp_head(port=4000):
    return ("v=0\r\no=big 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" % (HOST, HOST, port))


def big_sdp(size=59 * 1024, port=4000):
    """The issue's offer: thousands of ICE candidate lines, `size` bytes."""
    body = sdp_head(port)
    i = 0
    while len(body) < size:
        body += "a=candidate:%d 1 UDP 2130706431 %s %d typ host\r\n" % (i, HOST, 5000 + i % 60000)
        i += 1
    return body.encode()


def many_attributes(n=300, port=4000):
    """Small (a few KB) but over SDPX_MAX_ATTRIBUTES."""
    return (sdp_head(port) + "a=x-n\r\n" * n).encode()


def final_for(s, call_id, timeout=5):
    """The final response to the request with call_id (retransmitted finals
    of earlier requests are skipped)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = s.recv(max(0.01, deadline - time.time()))
        if data is None:
            return None
        r = parse_response(data)
        if r and r[0] >= 200 and call_id in r[2].get("call-id", [""])[0]:
            return r
    return None


def invite(s, d, body, user="room-a"):
    call_id = "lim%d.%f@test" % (id(s), time.time())
    msg = build_request("INVITE", "sip:%s@%s" % (user, d.uri_host), d.uri_host, body=body,
                        ctype="application/sdp", local=s.local, call_id=call_id, to_user=user)
    s.send(msg, (HOST, d.sip_port))
    return final_for(s, call_id)


@case
def test_invite_59k_sdp_413_and_many_attributes_488(t):
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, free_port())}).start()
    s = SipSocket("udp")
    r = invite(s, d, big_sdp())
    check(r is not None, "no answer to a 59 KB SDP")
    check((r[0], r[1]) == (413, "SDP Too Large"), "59 KB SDP: %s" % (r and r[:2],))
    r = invite(s, d, many_attributes())
    check(r and (r[0], r[1]) == (488, "SDP Too Complex"), "300 attributes: %s" % (r and r[:2],))
    # refused before any call, leg or relay port was made
    check(d.metric("sipxfer_calls_total") == 0, "a call was created")
    check(d.metric('sipxfer_calls_rejected_total{reason="sdp_limit"}') == 2, "sdp_limit metric")
    d.wait_log(r"SECURITY sdp-limit src=127\.0\.0\.1:\d+ .*INVITE refused 413: SDP of \d+ bytes")
    d.wait_log(r"SECURITY sdp-limit src=127\.0\.0\.1:\d+ .*INVITE refused 488: SDP has more")
    s.close()
    d.check_clean_exit()


class Flood(threading.Thread):
    """INVITEs with a 59 KB SDP from 127.0.0.2, one after the other, until
    stopped; records each final response."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.stop = threading.Event()
        self.codes = []
        self.started = self.ended = None

    def run(self):
        s = SipSocket.__new__(SipSocket)
        s.transport, s.remote, s.sock, s.buf = "udp", None, self.sock, b""
        s.local = self.sock.getsockname()
        body = big_sdp()
        self.started = time.time()
        while not self.stop.is_set():
            r = invite(s, self.d, body)
            self.codes.append(r and (r[0], r[1], r[2].get("retry-after", [None])[0]))
        self.ended = time.time()


@case
def test_large_sdp_flood_rate_limited_other_source_completes(t):
    rate = 2  # burst 4; a 59 KB INVITE costs 30 tokens, charged as the burst
    d, room = room_daemon(t, **{"sip.rate_limit": rate})
    flood = Flood(d)
    flood.start()
    wait_for(lambda: len(flood.codes) >= 3, 20, "the flood under way")
    c = caller(t, d, duration=200).start()  # from 127.0.0.1, while the flood goes on
    c.check_ok(30, "a normal call from another address during the flood")
    room.check_ok(30)
    flood.stop.set()
    flood.join(30)
    codes = flood.codes
    check(None not in codes, "unanswered flood INVITE: %s" % codes)
    too_large = [x for x in codes if x[0] == 413]
    limited = [x for x in codes if x[0] == 503]
    check(len(too_large) + len(limited) == len(codes), "flood answers: %s" % codes)
    check(all(x[1] == "Rate Limited" and x[2] for x in limited), "503s: %s" % limited)
    # every pass empties the bucket: one to start, then one per burst/rate
    # = 2 s (plus one for a refill landing at the end). Charged one token
    # each, 4 would pass at once and 2 more every second.
    elapsed = flood.ended - flood.started
    most = 1 + int(elapsed / 2.0) + 1
    t.note("flood: %d INVITEs in %.1f s, %d passed the limit (413), %d got 503" % (
        len(codes), elapsed, len(too_large), len(limited)))
    check(1 <= len(too_large) <= most, "%d of %d large INVITEs passed the limit in %.1f s (at most "
          "%d)" % (len(too_large), len(codes), elapsed, most))
    d.wait_log(r"SECURITY rate-limit src=127\.0\.0\.2:\d+")
    check(d.metric('sipxfer_calls_rejected_total{reason="rate_limit"}') == len(limited),
          "rate_limit metric")
    check(d.metric("sipxfer_calls_answered_total") == 1, "the normal call was not answered")
    d.wait_idle()
    d.check_clean_exit()


def reinvite(call, body, method="INVITE"):
    call.cseq += 1
    call._send_in_dialog(method, body=body, ctype="application/sdp")
    deadline = time.time() + 10
    while time.time() < deadline:
        data = call.s.recv(max(0.01, deadline - time.time()))
        if data is None:
            return None
        r = parse_response(data)
        if r is None:
            call._answer(data)
        elif r[0] >= 200 and method in r[2].get("cseq", [""])[0]:
            if method == "INVITE":
                call._send_in_dialog("ACK")
            return r
    return None


@case
def test_reinvite_and_update_with_huge_sdp_refused_call_survives(t):
    d, room = room_daemon(t)
    call = RawCall(d)
    check(call.invite() == 200, "call not answered")
    sid = d.wait_session()[0]
    wait_for(lambda: (session(d, sid) or {}).get("state") == "connected", 10, "connected")
    port = call.rtp.getsockname()[1]
    r = reinvite(call, big_sdp(port=port))
    check(r and (r[0], r[1]) == (413, "SDP Too Large"), "re-INVITE 59 KB: %s" % (r and r[:2],))
    r = reinvite(call, many_attributes(port=port))
    check(r and (r[0], r[1]) == (488, "SDP Too Complex"), "re-INVITE 300 a=: %s" % (r and r[:2],))
    r = reinvite(call, big_sdp(port=port), method="UPDATE")
    check(r and (r[0], r[1]) == (413, "SDP Too Large"), "UPDATE 59 KB: %s" % (r and r[:2],))
    # the call is untouched: still bridged, media still flows
    check(session(d, sid)["state"] == "connected", "call dropped")
    check(not room.done(), "room leg ended")
    call.send_rtp(5)
    check(call.bye() == 200, "BYE")
    room.check_ok(20)
    d.wait_idle()
    call.close()
    d.check_clean_exit()


class BigEarlyRoom(threading.Thread):
    """A room that answers sipxferd's INVITE with a 183 carrying a 59 KB SDP,
    then takes the CANCEL (200 + 487) and any BYE."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.seen = []

    def reply(self, req, addr, status, reason, body=b"", tag="bigroom1"):
        head = req.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
        keep = []
        for h in head[1:]:
            name = h.split(":")[0].strip().lower()
            if name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                keep.append(h)
            elif name in ("to", "t"):
                keep.append(h if ";tag=" in h else h + ";tag=" + tag)
        extra = ["Contact: <sip:room@%s:%d>" % (HOST, self.port)]
        if body:
            extra.append("Content-Type: application/sdp")
        msg = "\r\n".join(["SIP/2.0 %d %s" % (status, reason)] + keep + extra +
                          ["Content-Length: %d" % len(body)]) + "\r\n\r\n"
        self.sock.sendto(msg.encode() + body, addr)

    def run(self):
        invite = None
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
            self.seen.append(line.split(" ")[0])
            if line.startswith("INVITE") and invite is None:
                invite = data
                self.reply(data, addr, 183, "Session Progress", big_sdp(port=4002))
            elif line.startswith("CANCEL"):
                self.reply(data, addr, 200, "OK")
                self.reply(invite, addr, 487, "Request Terminated")
            elif line.startswith("BYE"):
                self.reply(data, addr, 200, "OK")


@case
def test_room_183_with_huge_sdp_fails_the_call_502(t):
    room = BigEarlyRoom()
    room.start()
    t.note("raw room on %d" % room.port)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}).start()
    call = RawCall(d)
    st = call.invite(timeout=15)
    check(st == 502 and call.final[1] == "Bad Gateway", "caller got %s %s" % (
        st, call.final and call.final[1]))
    wait_for(lambda: "CANCEL" in room.seen, 10, "CANCEL to the room")
    d.wait_log(r"room's 183 refused: SDP of \d+ bytes is over the limit")
    d.wait_idle()
    room.stop.set()
    room.join(5)
    call.close()
    d.check_clean_exit()


def listener():
    """A UDP socket where the attack URI points: nothing may reach it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.setblocking(False)
    return s


def nothing_arrived(s):
    try:
        data = s.recv(65535)
    except BlockingIOError:
        return True
    return not data


@case
def test_allow_list_bypass_refused_sipRefer_and_sipCallTransfer(t):
    d, rooms, w = setup(t, rooms=("room-a",),
                        **{"transfer.allow": ["sip:*@pbx.example.com"]})
    c, sid = connected_caller(t, d, "caller_wait_bye.xml")
    trap = listener()
    uri = ATTACK % trap.getsockname()[1]
    for mode in ("sipRefer", "sipCallTransfer"):
        st, obj = transfer(d, "room-a", sid, uri, mode=mode)
        check(st == 403 and obj.get("error") == "forbidden", "%s to %s: %s %s" % (
            mode, uri, st, obj))
        check("transfer.allow" in obj.get("info", ""), "info: %s" % obj)
    # the same with X- headers and with the user's '@' escaped
    for to in (uri + "?X-A=1", "sip:a%%40127.0.0.1:%d@pbx.example.com" % trap.getsockname()[1],
               "sip:a@pbx.example.com;maddr=127.0.0.1"):
        st, obj = transfer(d, "room-a", sid, to, mode="sipRefer")
        check(st == 403, "%s: %s %s" % (to, st, obj))
    d.wait_log(r"SECURITY target-refused .*pstn-premium")
    check(session(d, sid)["state"] == "connected", "call disturbed")
    check(session(d, sid).get("transfer") is None, "a transfer was started: %s" % session(d, sid))
    # caller_wait_bye.xml fails on anything but the BYE: no REFER reached it
    d.api("DELETE", "/v1/sessions/%s" % sid)
    c.check_ok(20, "the caller saw only its BYE")
    rooms["room-a"].check_ok(20)
    d.wait_idle()
    check(nothing_arrived(trap), "sipxferd sent something to the attack URI's address")
    trap.close()
    d.check_clean_exit()
