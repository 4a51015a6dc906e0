"""Issue 10: no name resolution on the control thread.

Every daemon here runs in its own mount namespace whose /etc/resolv.conf
names a DNS server that reads queries and never answers
(harness.BlackholeDns), so any lookup the control thread made would freeze
the loop for glibc's timeout x attempts per name. Skipped where that setup
is not possible (not root, no unshare).

Each trigger is a datagram whose reply destination is a name (a Via maddr,
the raw Via host of a request nta cannot parse or whose version is not 2.0,
a Via naming TCP on a bad request). It is sent from a trusted source
(127.0.0.1, the trunk) and from an untrusted one (127.0.0.2); each time an
OPTIONS probe must be answered within PROBE_MS, and a call bridged before
the triggers must still have its BYE handled afterwards. The names are
unique per trigger, so the blackhole's query log shows whether any reached
DNS at all.
"""
import re
import socket
import time

import harness
from harness import (HOST, RawCall, build_request, case, check, parse_response, sip_exchange,
                     wait_for, _rand)

PROBE_MS = 100
UNTRUSTED = "127.0.0.2"


def probe(d, limit_ms=PROBE_MS, what=""):
    """OPTIONS from the trunk address; must be answered 200 within limit_ms.
    A blocking lookup under the blackhole DNS lasts glibc's 5 s timeout at
    least, so the probe then gets no answer at all and fails at once. An
    answer that came late but within a second is CPU contention on a shared
    2-core machine, not a stall: it is tried twice more, and fails only when
    all three are late."""
    tries = []
    for _ in range(3):
        t0 = time.monotonic()
        st = d.options(timeout=2.0)
        ms = (time.monotonic() - t0) * 1000
        tries.append("%s after %.0f ms" % (st, ms))
        if st == 200 and ms <= limit_ms:
            return ms
        check(st == 200 and ms <= 1000, "OPTIONS %s: %s (limit %d ms)" % (
            what, "; ".join(tries), limit_ms))
    raise harness.TestFailure("OPTIONS %s: three late answers: %s (limit %d ms)" % (
        what, "; ".join(tries), limit_ms))


def udp_from(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    return s


def _req(method, d, via, cseq="1 %s", version="SIP/2.0", extra=""):
    return ("%s sip:%s %s\r\n"
            "Via: %s\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:dns@%s>;tag=%s\r\n"
            "To: <sip:%s>\r\n"
            "Call-ID: dns-%s\r\n"
            "CSeq: %s\r\n"
            "%s"
            "Content-Length: 0\r\n\r\n" % (method, d.uri_host, version, via, HOST, _rand(6),
                                           d.uri_host, _rand(12), cseq.replace("%s", method),
                                           extra)).encode()


def triggers(d, local):
    """(label, name looked up, datagram) for a socket bound to local."""
    n = _rand(6)
    src = "%s:%d" % local
    br = lambda: "z9hG4bK" + _rand(10)  # noqa: E731
    return [
        # RFC 3261 18.2.2: a reply goes to maddr; sofia resolved it
        ("maddr", "maddr-%s.sipxfer.invalid" % n,
         _req("OPTIONS", d, "SIP/2.0/UDP %s;branch=%s;rport;maddr=maddr-%s.sipxfer.invalid"
              % (src, br(), n))),
        # a bad request with a maddr: nta's 400 to the maddr
        ("maddr, bad CSeq", "badmaddr-%s.sipxfer.invalid" % n,
         _req("INVITE", d, "SIP/2.0/UDP %s;branch=%s;rport;maddr=badmaddr-%s.sipxfer.invalid"
              % (src, br(), n), cseq="abc %s")),
        # nta's 400 to a request it cannot parse, addressed by the Via host
        ("bad CSeq, named Via", "cseq-%s.sipxfer.invalid" % n,
         _req("INVITE", d, "SIP/2.0/UDP cseq-%s.sipxfer.invalid:%d;branch=%s"
              % (n, local[1], br()), cseq="abc %s")),
        # nta's 505 goes to the raw Via host (no received= added yet)
        ("SIP/7.0", "v7-%s.sipxfer.invalid" % n,
         _req("OPTIONS", d, "SIP/2.0/UDP v7-%s.sipxfer.invalid:%d;branch=%s;rport"
              % (n, local[1], br()), version="SIP/7.0")),
        # a bad request whose Via says TCP: nta answers over TCP to the Via host
        ("bad request, Via TCP", "tcp-%s.sipxfer.invalid" % n,
         _req("OPTIONS", d, "SIP/2.0/TCP tcp-%s.sipxfer.invalid:%d;branch=%s"
              % (n, local[1], br()), cseq="4294967296 %s")),
        # a Content-Length far beyond the datagram (and NTATAG_MAXSIZE)
        ("huge Content-Length, named Via", "big-%s.sipxfer.invalid" % n,
         _req("OPTIONS", d, "SIP/2.0/UDP big-%s.sipxfer.invalid:%d;branch=%s;rport"
              % (n, local[1], br()), extra="Content-Type: text/plain\r\n").replace(
                  b"Content-Length: 0", b"Content-Length: 999999")),
    ]


def bridged_call(t, d):
    call = RawCall(d, rtp=False)
    check(call.invite() == 200, "call before the triggers not answered")
    return call


def room_daemon(t, **kw):
    room = t.sipp("room.xml", calls=1)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}, dns="blackhole",
                 trunk_sources=["127.0.0.1/32"], **kw)
    room.start()
    d.start()
    return d, room


@case
def test_dns_trigger_datagrams_do_not_stall(t):
    d, room = room_daemon(t)
    probe(d, what="before")
    call = bridged_call(t, d)
    names = []
    replies = {}
    for src in (HOST, UNTRUSTED):
        s = udp_from(src)
        try:
            for label, name, data in triggers(d, s.getsockname()):
                names.append(name)
                s.sendto(data, (HOST, d.sip_port))
                probe(d, what="after %r from %s" % (label, src))
                # whatever reply there is comes to the source address
                s.settimeout(0.3)
                try:
                    r = parse_response(s.recvfrom(65535)[0])
                    replies[(label, src)] = r and r[0]
                except socket.timeout:
                    replies[(label, src)] = None
        finally:
            s.close()
    for src in (HOST, UNTRUSTED):
        check(replies[("maddr", src)] == 200,
              "OPTIONS with a named maddr from %s: no 200 at its source (%s)" % (
                  src, replies[("maddr", src)]))
    asked = [n for n in d.dns.names() if any(n.startswith(x) for x in names)]
    check(not asked, "names from the datagrams reached DNS: %s" % asked)
    check(d.metric("sipxfer_dns_blocked_total") >= 2,
          "the 505 and 400 to a named Via were not counted as refused lookups")
    d.wait_log(r"WARN  dns: name \"[a-z0-9-]+\.sipxfer\.invalid\" refused on the control thread")
    check(call.bye() == 200, "BYE of the live call after the triggers")
    call.close()
    room.check_ok(30, "room after BYE")
    t.note("replies: %s" % ", ".join("%s/%s=%s" % (k[0], k[1], v) for k, v in replies.items()))
    d.wait_idle()
    d.check_clean_exit()


class InviteInBackground:
    """A RawCall INVITE running in a thread; result() gives (status, seconds)."""

    def __init__(self, call, timeout):
        import threading
        self.call, self.out = call, None
        self.t0 = time.monotonic()

        def run():
            st = call.invite(timeout=timeout)
            self.out = (st, time.monotonic() - self.t0)
        self.th = threading.Thread(target=run, daemon=True)
        self.th.start()

    def result(self, timeout):
        self.th.join(timeout)
        check(self.out is not None, "INVITE still without a final response")
        return self.out


@case
def test_dns_room_unresolvable_fails_in_bounded_time(t):
    """A room whose host never resolves: the caller gets 408 once
    rooms.response_timeout passed with no response at all, while a call to a
    numeric room set up meanwhile completes; the name went to DNS from
    sofia's asynchronous resolver, never from a blocking lookup."""
    limit = 3
    name = "room-%s.sipxfer.invalid" % _rand(6)
    room = t.sipp("room.xml", calls=1)
    d = t.daemon(rooms={"room-dns": "sip:room@%s:5060" % name,
                        "room-a": "sip:room-a@%s:%d" % (HOST, room.port)},
                 dns="blackhole", **{"rooms.response_timeout": limit})
    room.start()
    d.start()
    stuck = RawCall(d, user="room-dns", rtp=False)
    bg = InviteInBackground(stuck, timeout=limit + 10)
    wait_for(lambda: name in d.dns.names(), 5, "the room's name asked of DNS")
    other = t.sipp("caller.xml", remote=d.uri_host, service="room-a", duration=500).start()
    other.check_ok(limit + 10, "call to the numeric room while the other room resolves")
    check(bg.out is None, "the stuck room failed before the other call completed")
    probe(d, what="while the room name resolves")
    st, secs = bg.result(limit + 10)
    check(st == 408, "caller of the unresolvable room got %s, not 408" % st)
    check(limit - 0.2 <= secs <= limit + 2, "408 after %.1f s (bound %d s)" % (secs, limit))
    stuck.close()
    room.check_ok(30, "numeric room")
    check(d.metric("sipxfer_dns_blocked_total") == 0, "a blocking lookup was attempted")
    d.wait_log(r"room sip:room@%s:5060: no response in %d s" % (re.escape(name), limit))
    t.note("408 after %.1f s" % secs)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_dns_webhook_and_resolver_names_do_not_stall(t):
    """Webhook and resolver URLs naming hosts whose DNS never answers: curl
    resolves in its threads; when the resolver request times out (5 s) with
    the lookup still running, the control thread must not wait for it. OPTIONS
    stays fast throughout, a call to a static room completes, the caller of an
    unknown user is refused once the resolver request times out."""
    hook = "hook-%s.sipxfer.invalid" % _rand(6)
    res = "resolver-%s.sipxfer.invalid" % _rand(6)
    # glibc's own timeout far beyond curl's, so a join would show
    dns = harness.BlackholeDns(t, options="options timeout:30 attempts:1\n")
    room = t.sipp("room.xml", calls=1)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}, dns=dns,
                 **{"webhooks.url": "http://%s:9/hook" % hook,
                    "webhooks.secret": "c2VjcmV0LXNlY3JldA==",
                    "rooms.resolver": "http://%s:9/rooms" % res})
    room.start()
    d.start()
    ok_call = t.sipp("caller.xml", remote=d.uri_host, service="room-a", duration=500).start()
    unknown = RawCall(d, user="nobody-here", rtp=False)
    bg = InviteInBackground(unknown, timeout=15)
    wait_for(lambda: hook in d.dns.names() and res in d.dns.names(), 10,
             "webhook and resolver names asked of DNS (have %s)" % "?")
    worst = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 7.5:       # past the resolver's 5 s timeout
        worst = max(worst, probe(d, what="%.1f s into the lookups" % (time.monotonic() - t0)))
        time.sleep(0.1)  # probe pacing, not synchronisation
    ok_call.check_ok(20, "call to a static room while webhooks cannot resolve")
    st, secs = bg.result(10)
    check(st is not None and 400 <= st < 600, "caller of the unknown user: %s" % st)
    check(4 <= secs <= 8, "resolver failure after %.1f s (its timeout is 5 s)" % secs)
    unknown.close()
    room.check_ok(30, "room")
    check(d.metric("sipxfer_dns_blocked_total") == 0, "curl looked a name up on the control thread")
    t.note("worst OPTIONS %.0f ms; unknown user got %s after %.1f s" % (worst, st, secs))
    d.wait_idle()
    d.check_clean_exit()


@case(slow=True)
def test_dns_named_contact_and_record_route_do_not_stall(t):
    """A caller whose Contact (first call) or Record-Route (second call)
    names a host whose DNS never answers: when the room hangs up, the BYE
    toward that name is resolved by sofia's asynchronous resolver, never on
    the loop; OPTIONS stays fast and nothing is refused by the guard. sofia's
    resolver gives up after its fixed retries (~63 s): the calls end then."""
    n = _rand(6)
    contact = "contact-%s.sipxfer.invalid" % n
    rr = "rr-%s.sipxfer.invalid" % n
    room = t.sipp("room_hangup.xml", calls=2, extra=["-d", "300"])
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}, dns="blackhole")
    room.start()
    d.start()
    calls = [RawCall(d, rtp=False, contact="<sip:caller@%s:5060>" % contact),
             RawCall(d, rtp=False, extra="Record-Route: <sip:%s:5060;lr>" % rr)]
    for call in calls:
        check(call.invite() == 200, "call with a named target not answered")
    wait_for(lambda: contact in d.dns.names() and rr in d.dns.names(), 10,
             "the BYE targets asked of DNS")
    for i in range(10):
        probe(d, what="while the BYE targets resolve (%d)" % i)
    room.check_ok(30, "room hung up both calls")
    check(d.metric("sipxfer_dns_blocked_total") == 0, "a blocking lookup was attempted")
    t0 = time.monotonic()
    d.wait_idle(90)
    t.note("calls with the named BYE targets gone after %.1f s" % (time.monotonic() - t0))
    for call in calls:
        call.close()
    d.check_clean_exit()
