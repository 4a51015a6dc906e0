"""Issue 10 item 7: no call loops. Every leg sipxferd creates for a call
carries the caller's Max-Forwards minus one (RFC 7332), and an INVITE that
arrives with Max-Forwards 0 is answered 483 before any leg exists."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from harness import (HOST, RawCall, Skip, SipSocket, case, check, free_port, wait_bound,
                     wait_for)
from test_transfer import transfer

HOPS_REJECTED = 'sipxfer_calls_rejected_total{reason="too_many_hops"}'


class RawPeer:
    """A UDP SIP endpoint standing in for a room or transfer target: takes
    the INVITE sipxferd sends it and answers it with a final status."""

    def __init__(self):
        self.s = SipSocket("udp")
        self.port = self.s.local[1]
        self.uri_for = lambda user: "sip:%s@%s:%d" % (user, HOST, self.port)

    def wait_invite(self, timeout=10):
        """(raw request, {lower header name: [values]}, source address)."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            check(left > 0, "no INVITE reached the peer on port %d" % self.port)
            self.s.sock.settimeout(left)
            try:
                data, src = self.s.sock.recvfrom(65535)
            except socket.timeout:
                continue
            if not data.startswith(b"INVITE "):
                continue
            head = data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
            hdrs = {}
            for ln in head[1:]:
                k, _, v = ln.partition(":")
                hdrs.setdefault(k.strip().lower(), []).append(v.strip())
            return data, hdrs, src

    def answer(self, data, src, status, reason):
        head = data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
        keep = []
        for h in head[1:]:
            name = h.split(":")[0].strip().lower()
            if name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                keep.append(h)
            elif name in ("to", "t"):
                keep.append(h + ";tag=peer1")
        resp = "\r\n".join(["SIP/2.0 %d %s" % (status, reason)] + keep +
                           ["Content-Length: 0"]) + "\r\n\r\n"
        self.s.sock.sendto(resp.encode(), src)

    def close(self):
        self.s.close()


def max_forwards(hdrs):
    v = hdrs.get("max-forwards", [])
    check(len(v) == 1, "the leg carries %d Max-Forwards headers: %s" % (len(v), v))
    return int(v[0])


def room_hops_for(t, sent):
    """Call a raw room with Max-Forwards `sent`; what the room's INVITE carried."""
    room = RawPeer()
    d = t.daemon(rooms={"room-a": room.uri_for("room-a")}).start()
    call = RawCall(d, max_forwards=sent)
    try:
        result = {}
        th = threading.Thread(target=lambda: result.setdefault("st", call.invite(timeout=15)))
        th.start()
        data, hdrs, src = room.wait_invite()
        got = max_forwards(hdrs)
        room.answer(data, src, 603, "Decline")
        th.join(20)
        check(result.get("st") == 603, "caller got %s, not the room's 603" % result.get("st"))
    finally:
        call.close()
        room.close()
    d.wait_idle()
    d.check_clean_exit()
    return got


@case
def test_room_leg_carries_max_forwards_minus_one(t):
    got = room_hops_for(t, 20)
    check(got == 19, "caller sent Max-Forwards 20, the room leg carried %d" % got)


@case
def test_max_forwards_one_goes_out_as_zero(t):
    # RFC 3261 16.3 step 3: only a request that *arrives* with 0 stops here;
    # 1 passes and is sent on decremented, so the next hop answers 483.
    got = room_hops_for(t, 1)
    check(got == 0, "caller sent Max-Forwards 1, the room leg carried %d" % got)


@case
def test_max_forwards_above_70_capped(t):
    got = room_hops_for(t, 200)
    check(got == 69, "caller sent Max-Forwards 200, the room leg carried %d (want 69)" % got)


@case
def test_max_forwards_zero_refused_483(t):
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:9" % HOST}).start()
    call = RawCall(d, max_forwards=0)
    try:
        st = call.invite()
        check(st == 483, "INVITE with Max-Forwards 0: %s" % st)
        check(call.final[1] == "Too Many Hops", "reason phrase %r" % call.final[1])
    finally:
        call.close()
    m = d.metrics()
    check(m.get(HOPS_REJECTED) == 1, "%s = %s" % (HOPS_REJECTED, m.get(HOPS_REJECTED)))
    check(m.get("sipxfer_calls_total") == 0, "a call was made: %s" % m.get("sipxfer_calls_total"))
    d.wait_idle()
    d.check_clean_exit()


@case
def test_transfer_target_carries_call_max_forwards(t):
    """An API transfer's target leg gets the call's hop count, not 70."""
    room = t.sipp("room.xml")
    target = RawPeer()
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    room.start()
    d.start()
    call = RawCall(d, max_forwards=33)
    try:
        check(call.invite() == 200, "call to room-a")
        sid = d.wait_session()[0]
        st, obj = transfer(d, "room-a", sid, target.uri_for("target"))
        check(st == 200, "transfer: %s %s" % (st, obj))
        data, hdrs, src = target.wait_invite()
        got = max_forwards(hdrs)
        target.answer(data, src, 486, "Busy Here")
        check(got == 32, "caller sent Max-Forwards 33, the target leg carried %d" % got)
        # the failed transfer leaves the caller with its room
        wait_for(lambda: d.metric('sipxfer_transfers_total{mode="sipCallTransfer",'
                                  'outcome="failed"}') == 1, 10, "transfer failed")
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
        target.close()
    room.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_refer_driven_target_carries_call_max_forwards(t):
    """A room's REFER becomes a target leg with the call's hop count."""
    target = RawPeer()
    room = t.sipp("room_refer.xml", duration=300, keys={"referto": target.uri_for("target")})
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    room.start()
    d.start()
    call = RawCall(d, max_forwards=12)
    try:
        check(call.invite() == 200, "call to room-a")
        data, hdrs, src = target.wait_invite()
        got = max_forwards(hdrs)
        target.answer(data, src, 486, "Busy Here")
        check(got == 11, "caller sent Max-Forwards 12, the REFER target leg carried %d" % got)
        wait_for(lambda: d.metric('sipxfer_transfers_total{mode="sipCallTransfer",'
                                  'outcome="failed"}') == 1, 10, "transfer failed")
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
        target.close()
    room.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


KAMAILIO_CFG = """#!KAMAILIO
# A proxy that sends every INVITE straight back to sipxferd: a call loop.
debug=1
log_stderror=yes
fork=no
auto_aliases=no
listen=udp:127.0.0.1:%(kport)d
mpath="%(mpath)s"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"

request_route {
    if (!mf_process_maxfwd_header("70")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    $du = "sip:127.0.0.1:%(sport)d";
    forward();
}
"""


def kamailio_modules():
    for d in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules",
              "/usr/lib64/kamailio/modules"):
        if os.path.exists(os.path.join(d, "maxfwd.so")):
            return d
    return None


def stop_group(p):
    """SIGTERM to a process group (Kamailio stops its children itself), then
    SIGKILL for whatever is left."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@case
def test_loop_through_kamailio_ends_in_483(t):
    """A room that is a proxy forwarding back to us: the call loops until
    Max-Forwards runs out, then 483 unwinds every nested call."""
    binary = shutil.which("kamailio") or (os.path.exists("/usr/sbin/kamailio") and
                                          "/usr/sbin/kamailio")
    mpath = kamailio_modules()
    if not binary or not mpath:
        raise Skip("kamailio (with maxfwd.so) is not installed: run scripts/setup.sh")
    kport = free_port()
    # max_calls well above the expected 10 nested calls but far below a
    # loop without a hop limit, which would end in 503 at max_calls
    d = t.daemon(rooms={"loop": "sip:loop@127.0.0.1:%d" % kport}, media_ports=120,
                 **{"sip.max_calls": 60})
    cfg = t.path("kamailio.cfg")
    with open(cfg, "w") as f:
        f.write(KAMAILIO_CFG % {"kport": kport, "sport": d.sip_port, "mpath": mpath})
    rundir = t.path("kamailio-run")
    os.makedirs(rundir, exist_ok=True)
    # Kamailio forks helpers even in the foreground: its own process group,
    # so all of it goes when the test ends, pass or fail
    kam = t.popen([binary, "-f", cfg, "-DD", "-E", "-m", "16", "-M", "8", "-Y", rundir,
                   "-P", os.path.join(rundir, "kamailio.pid")], "kamailio",
                  start_new_session=True)
    try:
        d.start()
        wait_bound(kport)
        sent = 20
        call = RawCall(d, user="loop", max_forwards=sent)
        try:
            st = call.invite(timeout=20)
            check(st == 483, "looped call ended with %s, not 483 Too Many Hops" % st)
        finally:
            call.close()
        d.wait_idle()
    finally:
        stop_group(kam)
    m = d.metrics()
    calls = m.get("sipxfer_calls_total", 0)
    # sipxferd and Kamailio each take one hop per pass: 20, 18, ..., 2
    # reach sipxferd as calls, 0 is refused
    check(1 <= calls <= sent // 2, "%s nested calls for Max-Forwards %d" % (calls, sent))
    check(m.get(HOPS_REJECTED) == 1, "%s = %s" % (HOPS_REJECTED, m.get(HOPS_REJECTED)))
    check(m.get('sipxfer_calls_rejected_total{reason="max_calls"}', 0) == 0,
          "the loop reached max_calls")
    t.note("Max-Forwards %d: %d nested calls, then 483" % (sent, calls))
    d.check_clean_exit()
