"""Issue 17 (items 1 and 5): an unusable Contact in a message mid-call (2xx
to a re-INVITE or UPDATE sipxferd sends, an in-dialog request) must never
reach sofia's dialog or make it send to that target; REFER is taken only
from legs whose far end is a room, not from a former transfer target."""
import re
import socket
import time

from harness import (HOST, RawCall, SipSocket, TestFailure, Webhooks, _rand, case, check,
                     parse_response, wait_for)
from test_transfer import ROOM_B, events_for, session, setup, transfer

BAD = "<sipmple.net;lr>"


def _head(data):
    return data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")


def respond(sock, data, remote, contact, body=b"", to_tag=None, status="200 OK"):
    """Answer the request `data` with `status`, our `contact` and `body` (SDP)."""
    head = _head(data)
    keep = []
    for h in head[1:]:
        name = h.split(":")[0].strip().lower()
        if name in ("to", "t") and to_tag and ";tag=" not in h:
            h += ";tag=" + to_tag
        if name in ("via", "from", "to", "call-id", "cseq", "v", "f", "t", "i"):
            keep.append(h)
    extra = ["Contact: %s" % contact] if contact else []
    if body:
        extra.append("Content-Type: application/sdp")
    resp = "\r\n".join(["SIP/2.0 " + status] + keep + extra +
                       ["Content-Length: %d" % len(body)]) + "\r\n\r\n"
    sock.send(resp.encode() + body, remote)


def next_request(call, method, timeout, log):
    """The next request `method` sipxferd sends the RawCall; other requests
    get RawCall's usual 200. Every request line seen goes into log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = call.s.recv(max(0.01, deadline - time.time()))
        if data is None:
            return None
        if parse_response(data) is not None:
            continue
        line = _head(data)[0]
        log.append(line)
        if line.startswith(method + " "):
            return data
        call._answer(data)
    return None


def drain(sock, log):
    """Request lines of whatever is waiting on sock now (nothing waits)."""
    sock = getattr(sock, "sock", sock)
    sock.setblocking(False)
    try:
        while True:
            data, _ = sock.recvfrom(65535)
            if parse_response(data) is None:
                log.append(_head(data)[0])
    except OSError:
        pass
    finally:
        sock.setblocking(True)


def acked_then_byed(call, what, timeout=10):
    """The trunk's dialog kept its old target: the bad 2xx is ACKed and the
    BYE ending the call arrives there (answered 200)."""
    log = []
    data = next_request(call, "BYE", timeout, log)
    check(data is not None, "%s: no BYE to the trunk's old Contact (saw %s)" % (what, log))
    call._answer(data)
    check(log[0].startswith("ACK "), "%s: the 2xx was not ACKed first: %s" % (what, log))


def bad_reinvite_2xx(d, call, what):
    """Answer the next re-INVITE to the trunk 200 with BAD as Contact."""
    log = []
    data = next_request(call, "INVITE", 10, log)
    check(data is not None, "%s: no re-INVITE to the trunk (saw %s)" % (what, log))
    respond(call.s, data, call.route_target, BAD, call.sdp())
    # taken after the 2xx (one socket, read in order): no answer means the
    # daemon died handling it
    check(d.options() == 200, "%s: daemon gone after the bad 2xx" % what)


def survives(d, since, seconds=40):
    """The daemon keeps answering OPTIONS until `seconds` after `since`."""
    while time.time() < since + seconds:
        check(d.options() == 200, "daemon stopped answering OPTIONS")
        time.sleep(2)  # probe interval: the test is about surviving time
    check(d.alive(), "daemon died")


@case
def test_bad_contact_in_2xx_to_forwarded_reinvite(t):
    """The room puts the call on hold; the trunk answers the forwarded
    re-INVITE 200 with an unusable Contact: the room's re-INVITE gets 500
    and a BYE, the trunk's 2xx is ACKed and the trunk gets a BYE where it
    was before (the bad Contact never became the target), the call is gone
    and the daemon fine."""
    room = t.sipp("room_hold_refused.xml", duration=500)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    room.start()
    d.start()
    call = RawCall(d, rtp=False)
    try:
        check(call.invite() == 200, "call")
        bad_reinvite_2xx(d, call, "hold")
        acked_then_byed(call, "hold")
        room.check_ok(20, "room must get 500 to its hold and then BYE")
        d.wait_log(r"SECURITY bad-contact src=- \[[^]]+\] re-INVITE 2xx from the caller leg "
                   r"refused: unusable Contact URI; call ended")
        d.wait_idle()
        check(d.options() == 200, "OPTIONS after the bad 2xx")
    finally:
        call.close()
    d.check_clean_exit()


@case
def test_bad_contact_in_2xx_to_transfer_reinvite(t):
    """sipCallTransfer in passthrough mode re-INVITEs the caller; a 200 with
    an unusable Contact fails the transfer (502) and ends the call: old room,
    target and trunk (at its old Contact) all get BYE."""
    d, rooms, w = setup(t, **{"media.mode": "passthrough"})
    call = RawCall(d, rtp=False)
    try:
        check(call.invite() == 200, "call")
        sid = d.wait_session()[0]
        st, obj = transfer(d, "room-a", sid, ROOM_B)
        check(st == 200, "transfer %s %s" % (st, obj))
        bad_reinvite_2xx(d, call, "transfer")
        acked_then_byed(call, "transfer")
        rooms["room-a"].check_ok(20, "old room must get BYE")
        rooms["room-b"].check_ok(20, "the answered target must get BYE")
        w.wait_type("calltransfer.failed")
        ev = [e for e in events_for(w, sid) if e["type"] == "calltransfer.failed"][0]
        check(ev["payload"].get("sip_status") == 502, "failed payload %s" % ev["payload"])
        d.wait_idle()
    finally:
        call.close()
    d.check_clean_exit()


@case
def test_bad_contact_in_dialog_requests_leaves_target(t):
    """A re-INVITE and an UPDATE from the trunk with an unusable Contact get
    400 and the dialog keeps its old target: the BYE that ends the call
    reaches the trunk where it was (with sofia's own parser, nua would
    already have taken the bad Contact as the target and died sending it)."""
    d, rooms, w = setup(t, rooms=("room-a",), hooks=False)
    call = RawCall(d, rtp=False)
    try:
        check(call.invite() == 200, "call")
        sid = d.wait_session()[0]
        for method in ("INVITE", "UPDATE"):
            call.cseq += 1
            call.contact = BAD
            call._send_in_dialog(method, body=call.sdp(), ctype="application/sdp")
            call.contact = None
            got = None
            deadline = time.time() + 5
            while got is None and time.time() < deadline:
                data = call.s.recv(max(0.01, deadline - time.time()))
                r = data and parse_response(data)
                if r and r[0] >= 200 and method in r[2].get("cseq", [""])[0]:
                    got = r
            check(got and got[0] == 400, "%s with a bad Contact: %s" % (method, got and got[:2]))
        d.wait_log(r"SECURITY bad-contact src=127\.0\.0\.1:\d+ \[[^]]+\] re-INVITE refused 400")
        check(session(d, sid)["state"] == "connected", "call dropped")
        code, _ = d.api("DELETE", "/v1/sessions/%s" % sid)
        check(code == 200, "DELETE %s" % code)
        got = call.serve_until("BYE", 10)
        check(d.options() == 200, "daemon gone after sending the BYE")
        check(got, "BYE must reach the trunk at its good Contact")
    finally:
        call.close()
    rooms["room-a"].check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case(slow=True)
def test_bad_contact_mid_call_survives_40s(t):
    """Every mid-call path in one daemon, held past sofia's 32 s mark:
    forwarded hold re-INVITE, transfer re-INVITE, and the UPDATE session
    refresh sipxferd sends by itself, each answered 200 with an unusable
    Contact. Each such 2xx is ACKed and the call ended with BYEs to the
    targets the dialogs had before, the daemon keeps answering and is idle
    at the end."""
    hold = t.sipp("room_hold_refused.xml", duration=500)
    xa, xb, refresh = t.sipp("room.xml"), t.sipp("room.xml"), t.sipp("room.xml")
    w = Webhooks(t)
    rooms = {"hold": hold, "room-a": xa, "room-b": xb, "refresh": refresh}
    d = t.daemon(rooms={n: "sip:%s@%s:%d" % (n, HOST, s.port) for n, s in rooms.items()},
                 **{"media.mode": "passthrough", "webhooks.url": w.url,
                    "webhooks.secret": w.secret})
    for s in rooms.values():
        s.start()
    d.start()
    calls = []
    try:
        c1 = RawCall(d, user="hold", rtp=False)
        c2 = RawCall(d, user="room-a", rtp=False)
        c3 = RawCall(d, user="refresh", rtp=False,
                     extra="Supported: timer\r\nSession-Expires: 90;refresher=uas\r\nMin-SE: 90")
        calls = [c1, c2, c3]
        check(c3.invite() == 200, "refresh call")
        refreshed = time.time()
        check(c1.invite() == 200, "hold call")
        bad_reinvite_2xx(d, c1, "hold")
        first = time.time()
        acked_then_byed(c1, "hold")
        check(c2.invite() == 200, "transfer call")
        sid2 = wait_for(lambda: next((s["sessionId"] for s in d.sessions()
                                      if s.get("room") == "room-a"), None), 10, "room-a session")
        st, obj = transfer(d, "room-a", sid2, "sip:room-b@rooms.sipxfer.test")
        check(st == 200, "transfer %s %s" % (st, obj))
        bad_reinvite_2xx(d, c2, "transfer")
        acked_then_byed(c2, "transfer")
        hold.check_ok(20, "hold room: 500 then BYE")
        xa.check_ok(20, "old room: BYE")
        xb.check_ok(20, "target: BYE")
        # sofia refreshes at about half of the 90 s (RFC 4028)
        log3 = []
        data = next_request(c3, "UPDATE", 70 - (time.time() - refreshed), log3)
        check(data is not None, "no UPDATE refresh (saw %s)" % log3)
        respond(c3.s, data, c3.route_target, BAD)
        check(c3.serve_until("BYE", 10), "refresh: no BYE to the trunk's old Contact")
        refresh.check_ok(20, "refresh room: BYE after the bad UPDATE 2xx")
        d.wait_log(r"SECURITY bad-contact .* UPDATE 2xx from the caller leg refused")
        survives(d, first, 40)
        d.wait_idle()
        check(w.types().count("calltransfer.failed") == 1, "transfer outcome %s" % w.types())
    finally:
        for c in calls:
            c.close()
    d.check_clean_exit()


# ---------------------------------------------------------------- REFER

class RawTarget:
    """A transfer target answering sipxferd's INVITE itself (a PSTN gateway
    or an outside SIP URI), so the test decides when it sends REFER."""

    def __init__(self):
        self.s = SipSocket("udp")
        self.port = self.s.local[1]
        self.invite = None
        self.tag = _rand(8)
        self.cseq = 0
        self.seen = []

    def answer(self, timeout=15, status="200 OK", contact=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.s.recv(max(0.01, deadline - time.time()))
            if data is None:
                break
            self.seen.append(_head(data)[0])
            if data.startswith(b"INVITE "):
                self.invite = data
                self.sdp = ("v=0\r\no=gw 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
                            "m=audio 9 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                            "a=rtpmap:101 telephone-event/8000\r\n" % (HOST, HOST)).encode()
                respond(self.s, data, self._src(data), contact or "<sip:gw@%s:%d>" % self.s.local,
                        self.sdp if status.startswith("2") else b"", to_tag=self.tag,
                        status=status)
                return self._hdr(data, "via")
        raise TestFailure("target got no INVITE (saw %s)" % self.seen)

    def _src(self, data):
        via = self._hdr(data, "via")
        m = re.search(r"SIP/2\.0/UDP ([^:;\s]+):(\d+)", via)
        return (m.group(1), int(m.group(2)))

    @staticmethod
    def _hdr(data, name):
        for h in _head(data)[1:]:
            k, _, v = h.partition(":")
            if k.strip().lower() == name:
                return v.strip()
        return ""

    def refer(self, refer_to, timeout=5):
        """In-dialog REFER from our side of the dialog; (status, reason)."""
        inv = self.invite
        contact = re.search(r"<([^>]+)>", self._hdr(inv, "contact")).group(1)
        self.cseq += 1
        msg = "\r\n".join([
            "REFER %s SIP/2.0" % contact,
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (self.s.local + (_rand(12),)),
            "Max-Forwards: 70",
            "From: %s;tag=%s" % (self._hdr(inv, "to"), self.tag),
            "To: %s" % self._hdr(inv, "from"),
            "Call-ID: %s" % self._hdr(inv, "call-id"),
            "CSeq: %d REFER" % self.cseq,
            "Contact: <sip:gw@%s:%d>" % self.s.local,
            "Refer-To: <%s>" % refer_to,
            "Referred-By: <sip:gw@%s:%d>" % self.s.local,
            "Content-Length: 0", "", ""])
        self.s.send(msg.encode(), self._src(inv))
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.s.recv(max(0.01, deadline - time.time()))
            if data is None:
                break
            r = parse_response(data)
            if r and r[0] >= 200 and "REFER" in r[2].get("cseq", [""])[0]:
                return r[0], r[1]
            if r is None:
                self.seen.append(_head(data)[0])
        return None

    def wait_bye(self, timeout=15, method="BYE"):
        """Answer requests until `method` came (200; a CANCEL also ends the
        INVITE with 487); True if it did."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.s.recv(max(0.01, deadline - time.time()))
            if data is None:
                break
            if parse_response(data) is None:
                self.seen.append(_head(data)[0])
                if data.startswith(b"ACK "):
                    continue
                respond(self.s, data, self._src(data), None)
                if data.startswith(b"CANCEL "):
                    respond(self.s, self.invite, self._src(data), None, to_tag=self.tag,
                            status="487 Request Terminated")
                if data.startswith(method.encode() + b" "):
                    return True
        return False

    def close(self):
        self.s.close()


def _refer_from_former_target(t, target_kind):
    """Transfer a call to a raw target (the trunk gateway for an E.164
    number, or an outside sip: URI), then have that far end REFER the call
    to a room and to an allowed outside URI: 403 each time, nobody dialled,
    the call stays up and hangs up normally."""
    tgt = RawTarget()
    other = RawTarget()  # an allowed outside URI the REFER asks for
    room_b = RawTarget()  # a room: rooms bypass transfer.allow
    room_a = t.sipp("room.xml")
    w = Webhooks(t)
    kw = {"webhooks.url": w.url, "webhooks.secret": w.secret}
    if target_kind == "pstn":
        kw["gateway"] = "sip:%s:%d" % (HOST, tgt.port)
        to = "+15557654321"
    else:
        to = "sip:ext@%s:%d" % (HOST, tgt.port)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room_a.port),
                        "room-b": "sip:room-b@%s:%d" % (HOST, room_b.port)}, **kw)
    room_a.start()
    d.start()
    call = RawCall(d, rtp=False)
    try:
        check(call.invite() == 200, "call")
        sid = d.wait_session()[0]
        st, obj = transfer(d, "room-a", sid, to)
        check(st == 200, "transfer %s %s" % (st, obj))
        tgt.answer()
        room_a.check_ok(20, "old room must get BYE")
        w.wait_type("calltransfer.completed")
        check(session(d, sid)["state"] == "connected", "call after the transfer")
        for refer_to in ("sip:room-b@rooms.sipxfer.test",
                         "sip:evil@%s:%d" % (HOST, other.port)):
            r = tgt.refer(refer_to)
            check(r is not None and r[0] == 403, "REFER to %s from the %s leg: %s" % (
                refer_to, target_kind, r))
        d.wait_log(r"SECURITY refer-refused src=127\.0\.0\.1:%d \[%s\] REFER on a room leg "
                   r"\(far end: %s\) refused 403" % (
                       tgt.port, re.escape(sid),
                       "PSTN gateway" if target_kind == "pstn" else "external SIP"))
        m = d.metrics()
        check(m.get('sipxfer_transfers_total{mode="sipCallTransfer",outcome="started"}') == 1,
              "a transfer was started by the REFER: %s" % {
                  k: v for k, v in m.items() if "transfers" in k})
        s = session(d, sid)
        check(s["state"] == "connected" and s["transfer"]["state"] == "completed",
              "session after the REFERs: %s" % s)
        check(call.bye() == 200, "caller's BYE")
        check(tgt.wait_bye(), "the target must get BYE")
        d.wait_idle()
        # nothing was dialled for the REFERs (sipxferd would have sent the
        # INVITE before answering 202; the call has ended since)
        for who in (room_b, other):
            drain(who.s, who.seen)
            check(not who.seen, "a REFER's target was dialled: %s" % who.seen)
    finally:
        call.close()
        tgt.close()
        other.close()
        room_b.close()
    d.check_clean_exit()


@case
def test_bad_contact_in_target_180_fails_transfer(t):
    """A transfer target's 180 with a To-tag and an unusable Contact: the
    transfer fails (502) with a CANCEL, the caller stays with the room."""
    tgt = RawTarget()
    d, rooms, w = setup(t, rooms=("room-a",))
    call = RawCall(d, rtp=False)
    try:
        check(call.invite() == 200, "call")
        sid = d.wait_session()[0]
        st, obj = transfer(d, "room-a", sid, "sip:ext@%s:%d" % (HOST, tgt.port))
        check(st == 200, "transfer %s %s" % (st, obj))
        tgt.answer(status="180 Ringing", contact=BAD)
        check(tgt.wait_bye(method="CANCEL"), "target must get CANCEL (saw %s)" % tgt.seen)
        w.wait_type("calltransfer.failed")
        ev = [e for e in events_for(w, sid) if e["type"] == "calltransfer.failed"][0]
        check(ev["payload"].get("sip_status") == 502, "failed payload %s" % ev["payload"])
        d.wait_log(r"SECURITY bad-contact src=- \[[^]]+\] transfer target 180 refused")
        check(session(d, sid)["state"] == "connected", "the caller lost its room")
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
        tgt.close()
    rooms["room-a"].check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_refer_from_pstn_gateway_target_refused(t):
    _refer_from_former_target(t, "pstn")


@case
def test_refer_from_external_sip_target_refused(t):
    _refer_from_former_target(t, "sip")
