"""Issue 2: calls bridged from a trunk into rooms, through the relay."""
import os
import signal
import socket
import subprocess
import time

from harness import (HOST, SIPXFERD, RawCall, Skip, TestFailure, build_request, case, check,
                     sip_exchange, sipp_status, wait_for, SipSocket, parse_response)


def room_daemon(t, room_scenario="room.xml", room_calls=1, echo=False, **kw):
    room = t.sipp(room_scenario, calls=room_calls, echo=echo)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}, **kw)
    room.start()
    d.start()
    return d, room


def caller(t, d, scenario="caller.xml", service="room-a", **kw):
    return t.sipp(scenario, remote=d.uri_host, service=service, **kw)


def sipp_call(t, room_scenario="room.xml", caller_scenario="caller.xml", caller_what=None,
              room_what=None, **caller_kw):
    """A SIPp room and a SIPp caller through a daemon, both run to their end
    and must exit 0; the daemon must then be idle. Returns it."""
    d, room = room_daemon(t, room_scenario)
    c = caller(t, d, caller_scenario, **caller_kw).start()
    c.check_ok(30, caller_what)
    room.check_ok(30, room_what)
    d.wait_idle()
    return d


def refused(t, d, service, code, reason=None):
    c = caller(t, d, "caller_reject.xml", service=service).start()
    c.check_ok(30, "expected %d" % code)
    st = sipp_status(c)
    check(st is not None, "no status logged by caller_reject.xml")
    check(st[0] == code, "expected %d, got %s %s" % (code, st[0], st[1]))
    if reason:
        check(st[1] == reason, "expected reason %r, got %r" % (reason, st[1]))
    return st


@case
def test_basic_call_caller_hangs_up(t):
    d = sipp_call(t, duration=500)
    m = d.metrics()
    check(m.get("sipxfer_calls_total", 0) == 1, "calls_total %s" % m.get("sipxfer_calls_total"))
    d.check_clean_exit()


@case
def test_basic_call_room_hangs_up(t):
    sipp_call(t, "room_hangup.xml", "caller_wait_bye.xml").check_clean_exit()


@case
def test_cancel_before_answer(t):
    sipp_call(t, "room_ring.xml", "caller_cancel.xml",
              room_what="room must get CANCEL").check_clean_exit()


@case
def test_busy_room_486_reaches_caller(t):
    d, room = room_daemon(t, "room_busy.xml")
    refused(t, d, "room-a", 486)
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_unknown_room_404(t):
    d, room = room_daemon(t)
    refused(t, d, "no-such-room", 404)
    check(d.options() == 200, "OPTIONS after 404")
    d.check_clean_exit()


@case
def test_untrusted_source_403_for_every_uri(t):
    d, room = room_daemon(t, trunk_sources=["10.99.0.0/16"])
    a = refused(t, d, "room-a", 403)
    b = refused(t, d, "no-such-room", 403)
    check(a[1] == b[1], "403 differs by Request-URI: %r vs %r" % (a[1], b[1]))
    d.wait_log(r"SECURITY \S+ src=127\.0\.0\.1:\d+")
    d.check_clean_exit()


@case
def test_route_by_called_number(t):
    room = t.sipp("room.xml")
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)},
                 routes={"+15550100": "room-a"})
    room.start()
    d.start()
    c = caller(t, d, service="+15550100", duration=200).start()
    c.check_ok(30)
    room.check_ok(30)
    d.check_clean_exit()


@case
def test_hold_unhold_reinvite_forwarded(t):
    sipp_call(t, "room_hold.xml", "caller_hold.xml").check_clean_exit()


@case
def test_max_calls_503_with_retry_after(t):
    d, room = room_daemon(t, room_calls=1, **{"sip.max_calls": 1})
    first = caller(t, d, "caller_wait_bye.xml").start()
    d.wait_metric("sipxfer_calls_active", 1)
    st = refused(t, d, "room-a", 503)
    check(st[2].isdigit(), "503 without Retry-After (%r)" % (st,))
    # the first call is unaffected: end it from the API side
    sid = d.wait_session()[0]
    code, _ = d.api("DELETE", "/v1/sessions/%s" % sid)
    check(code == 200, "DELETE session: %s" % code)
    first.check_ok(30)
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_options_answered(t):
    d, room = room_daemon(t)
    check(d.options("udp") == 200, "OPTIONS over UDP")
    check(d.options("tcp") == 200, "OPTIONS over TCP")
    d.check_clean_exit()


@case
def test_rtp_flows_both_ways_through_relay(t):
    d, room = room_daemon(t, echo=True)
    call = RawCall(d, rtcp=True)
    try:
        st = call.invite()
        check(st == 200, "INVITE: %s" % st)
        check(call.remote_media and call.remote_media[0] == HOST, "answer SDP %s" % (
            call.remote_media,))
        lo, hi = d.media_min, d.media_max
        check(lo <= call.remote_media[1] <= hi, "answer port %d not in relay range %d-%d" % (
            call.remote_media[1], lo, hi))
        # the room echoes what it receives: every packet back means caller->room
        # and room->caller both went through the relay
        call.send_rtp(50)
        got = call.count_rtp(5, 50)
        check(got >= 45, "only %d of 50 RTP packets came back through the relay" % got)
        m = d.metrics()
        check(m.get("sipxfer_relay_packets_forwarded_total", 0) >= 90,
              "relay forwarded %s" % m.get("sipxfer_relay_packets_forwarded_total"))
        # RTCP to the answer's port + 1 is relayed to the room's RTP port + 1
        # (SIPp keeps no RTCP socket, so this direction is checked by the
        # relay's counters, not by an echo)
        before = d.metrics()
        call.send_rtcp(10)
        wait_for(lambda: d.metric("sipxfer_relay_packets_forwarded_total") >=
                 before.get("sipxfer_relay_packets_forwarded_total", 0) + 10, 5,
                 "10 RTCP packets forwarded")
        check(d.metric("sipxfer_relay_packets_dropped_total") ==
              before.get("sipxfer_relay_packets_dropped_total", 0), "RTCP dropped by the relay")
        sid = d.wait_session()[0]
        st, s = d.api("GET", "/v1/sessions/%s" % sid)
        media = s["media"]
        check(media["caller"]["rxPackets"] >= 45 and media["room"]["rxPackets"] >= 45
              and media["caller"]["txPackets"] >= 45 and media["room"]["txPackets"] >= 45,
              "per-call packet counters: %s" % media)
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case(slow=True)
def test_200_calls_leave_nothing_behind(t):
    d, room = room_daemon(t, room_calls=200, media_ports=120)
    c = caller(t, d, calls=200, rate=50, limit=20, duration=50).start()
    c.check_ok(120)
    room.check_ok(60)
    d.wait_idle(30)
    m = d.metrics()
    check(m.get("sipxfer_calls_total", 0) == 200, "calls_total %s" % m.get("sipxfer_calls_total"))
    fds = len(os.listdir("/proc/%d/fd" % d.proc.pid))
    # warm relay ports (media.warm_pairs) stay bound on purpose, and are counted
    warm = int(m.get("sipxfer_relay_ports_warm", 0))
    check(warm > 0, "no warm relay ports")
    check(fds - warm < 40, "%d file descriptors open after the calls (%d of them warm relay "
          "ports)" % (fds, warm))
    d.check_clean_exit()


@case(slow=True)
def test_bad_contact_invite_survives_40s(t):
    d, room = room_daemon(t)
    s = SipSocket("udp")
    sdp = (b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 4000 RTP/AVP 0\r\n")
    msg = build_request("INVITE", "sip:room-a@%s" % d.uri_host, d.uri_host, body=sdp,
                        ctype="application/sdp", local=s.local, contact="<sipmple.net;lr>",
                        to_user="room-a")
    s.send(msg, (HOST, d.sip_port))
    final = None
    deadline = time.time() + 5
    while time.time() < deadline:
        data = s.recv(1)
        r = data and parse_response(data)
        if r and r[0] >= 200:
            final = r
            break
    check(final is not None and final[0] == 400, "bad Contact INVITE got %s" % (
        final and final[:2],))
    # never ACK; the daemon must keep answering well past nua's 32 s mark
    end = time.time() + 40
    while time.time() < end:
        check(d.options() == 200, "daemon stopped answering OPTIONS")
        time.sleep(2)  # probe interval: the test is about surviving time
    check(d.alive(), "daemon died")
    s.close()
    d.check_clean_exit()


@case
def test_passthrough_leaves_sdp_untouched(t):
    d, room = room_daemon(t, "room_passthrough.xml", **{"media.mode": "passthrough"})
    c = caller(t, d, duration=300).start()
    wait_for(lambda: d.metric("sipxfer_calls_active") == 1 or c.done(), 10, "call up")
    check(d.metric("sipxfer_relay_ports_in_use") == 0, "relay ports used in passthrough")
    c.check_ok(30)
    room.check_ok(30, "room must see the caller's own SDP")
    d.check_clean_exit()


@case
def test_check_config(t):
    d = t.daemon(rooms={"room-a": "sip:room-a@127.0.0.1:5070"})
    r = subprocess.run([SIPXFERD, "--check-config", "-c", d.conf], capture_output=True,
                       text=True)
    check(r.returncode == 0, "good config refused: %s" % r.stderr)
    bad = d.write_config(t.path("bad.conf"), extra_text="\nsip2 = { foo = 1; };\n")
    r = subprocess.run([SIPXFERD, "--check-config", "-c", bad], capture_output=True, text=True)
    check(r.returncode != 0, "unknown key accepted")
    check("bad.conf:" in r.stderr and "sip2" in r.stderr, "error lacks file:line/key: %r"
          % r.stderr)
    d.settings["media.mode"] = "bogus"
    bad2 = d.write_config(t.path("bad2.conf"))
    r = subprocess.run([SIPXFERD, "--check-config", "-c", bad2], capture_output=True,
                       text=True)
    check(r.returncode != 0 and "media.mode" in r.stderr, "bad value: %r" % r.stderr)
    for opt in ("--version", "--help"):
        r = subprocess.run([SIPXFERD, opt], capture_output=True, text=True)
        check(r.returncode == 0 and (r.stdout or r.stderr), "%s failed" % opt)


@case
def test_sigterm_drains_then_exits(t):
    from harness import Webhooks
    w = Webhooks(t)
    d, room = room_daemon(t, room_calls=1, drain_timeout=2,
                          **{"webhooks.url": w.url, "webhooks.secret": w.secret})
    c = caller(t, d, "caller_wait_bye.xml").start()
    d.wait_metric("sipxfer_calls_active", 1)
    d.signal(signal.SIGTERM)
    d.wait_metric("sipxfer_draining", 1)
    refused(t, d, "room-a", 503)
    # after drain_timeout the live call is hung up on both sides
    c.check_ok(30)
    room.check_ok(30)
    rc = d.proc.wait(20)
    check(rc == 0, "exit status %s after drain" % rc)
    # the hung-up call's dialin.stopped went out before the process ended
    check(w.types().count("dialin.stopped") == 1, "webhooks at exit: %s" % w.types())


@case
def test_sighup_reload_keeps_old_config_on_error(t):
    room = t.sipp("room.xml", calls=1)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    room.start()
    d.start()
    good = open(d.conf).read()
    with open(d.conf, "w") as f:
        f.write(good + "\nbogus_key = 1;\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"bogus_key")
    check(d.alive(), "daemon died on a broken reload")
    # still routes with the old config
    c = caller(t, d, duration=100).start()
    c.check_ok(30)
    room.check_ok(30)
    # a good reload adds a route
    # a good reload moves room-a and adds a route to it
    room2 = t.sipp("room.xml", calls=1).start()
    d.rooms["room-a"] = "sip:room-a@%s:%d" % (HOST, room2.port)
    d.routes = {"+15550199": "room-a"}
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reloaded .*1 route")
    c = caller(t, d, service="+15550199", duration=100).start()
    c.check_ok(30)
    room2.check_ok(30)
    d.check_clean_exit()


@case
def test_early_media_183_passed_back(t):
    sipp_call(t, "room_early.xml", "caller_early.xml", duration=200,
              caller_what="caller must get 183 with SDP").check_clean_exit()


@case
def test_tcp_caller_and_room(t):
    room = t.sipp("room.xml", transport="t1")
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d;transport=tcp" % (HOST, room.port)})
    room.start()
    d.start()
    c = caller(t, d, duration=200, transport="t1").start()
    c.check_ok(30, "call over TCP")
    room.check_ok(30, "room over TCP")
    d.wait_idle()
    d.check_clean_exit()


@case
def test_late_offer_invite_without_sdp(t):
    """A carrier INVITE without SDP: the room's offer comes back in the 200
    (rewritten onto the relay) and the caller's answer in the ACK; media
    then flows both ways."""
    d, room = room_daemon(t, echo=True)
    call = RawCall(d)
    offer = call.sdp
    call.sdp = lambda: b""
    try:
        st = call.invite(ack=False)
        check(st == 200 and b"m=audio" in call.final[3], "late-offer 200 without SDP: %s" % st)
        check(call.remote_media and d.media_min <= call.remote_media[1] <= d.media_max,
              "offer in the 200 not on the relay: %s" % (call.remote_media,))
        call._send_in_dialog("ACK", cseq=1, body=offer(), ctype="application/sdp")
        call.send_rtp(30)
        got = call.count_rtp(5, 30)
        check(got >= 25, "late offer: only %d of 30 packets echoed" % got)
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_room_reinvite_forwarded_to_caller(t):
    room = t.sipp("room_reinvite.xml", duration=200)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    room.start()
    d.start()
    c = caller(t, d, "caller_wait_bye.xml").start()
    room.check_ok(30, "room's re-INVITE must be answered by the caller through sipxferd")
    c.check_ok(30, "caller must get the re-INVITE and then the BYE")
    d.wait_log(r"re-INVITE from the room leg forwarded")
    d.wait_idle()
    d.check_clean_exit()


@case
def test_bad_record_route_refused(t):
    d, room = room_daemon(t)
    s = SipSocket("udp")
    try:
        for extra in ("Record-Route: <sipmple.net;lr>", "Record-Route: <sip:;lr>"):
            msg = build_request("INVITE", "sip:room-a@%s" % d.uri_host, d.uri_host,
                                local=s.local, to_user="room-a", extra=extra)
            s.send(msg, (HOST, d.sip_port))
            final = None
            deadline = time.time() + 5
            while time.time() < deadline:
                data = s.recv(1)
                r = data and parse_response(data)
                if r and r[0] >= 200:
                    final = r
                    break
            check(final and final[0] == 400, "%s: got %s" % (extra, final and final[:2]))
    finally:
        s.close()
    check(d.options() == 200, "OPTIONS after bad Record-Route")
    check(d.metric("sipxfer_calls_total") == 0, "a call was made")
    d.check_clean_exit()


@case
def test_sipp_call_carries_audio_both_ways(t):
    """A SIPp caller plays G.711 RTP (sip-tester's g711a.pcap) through the
    relay to a SIPp room that echoes it: the relay's per-call counters show
    packets from and to both sides while the call is up."""
    pcap = "/usr/share/sip-tester/g711a.pcap"
    if not os.path.exists(pcap):
        raise Skip("%s missing (package sip-tester)" % pcap)
    d, room = room_daemon(t, echo=True)
    c = caller(t, d, "caller_media.xml", duration=4000, keys={"pcap": pcap}).start()
    sid = d.wait_session()[0]

    def flowing():
        st, s = d.api("GET", "/v1/sessions/%s" % sid)
        m = s and s.get("media") or {}
        return all(m.get(side, {}).get(k, 0) >= 20 for side in ("caller", "room")
                   for k in ("rxPackets", "txPackets")) and m
    media = wait_for(flowing, 10, "20 packets each way through the relay")
    t.note("relay counters while the call was up: %s" % media)
    c.check_ok(30)
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_in_dialog_options_keepalive(t):
    """Carriers probe live calls with in-dialog OPTIONS: answered 200, the
    call stays up."""
    d, room = room_daemon(t)
    call = RawCall(d, rtp=False)
    try:
        check(call.invite() == 200, "call")
        for _ in range(3):
            r = call.request("OPTIONS")
            check(r and r[0] == 200, "in-dialog OPTIONS: %s" % (r,))
        sid = d.wait_session()[0]
        st, s = d.api("GET", "/v1/sessions/%s" % sid)
        check(st == 200 and s["state"] == "connected", "call after keep-alives: %s" % s)
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case(slow=True)
def test_session_timer_refreshed_by_us(t):
    """A caller asking for a 90 s session with us as refresher (RFC 4028)
    gets Session-Expires in the 200 and an UPDATE refresh well before it
    runs out (sofia refreshes at about half the interval)."""
    # the call is silent for up to 60 s: no media timeout in the way
    d, room = room_daemon(t, **{"media.timeout": 0})
    call = RawCall(d, extra="Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n"
                             "Min-SE: 90")
    try:
        check(call.invite() == 200, "call")
        se = call.final[2].get("session-expires", [""])[0]
        check(se.startswith("90") and "refresher=uas" in se, "Session-Expires in the 200: %r" % se)
        start = time.time()
        line = None
        while line is None and time.time() - start < 60:
            line = call.serve_until("UPDATE", 1) or None
            if line is None and call.bye_received:
                break
        check(line is not None, "no session refresh from sipxferd within 60 s")
        t.note("refresh after %.0f s: %s" % (time.time() - start, line))
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_unknown_sip_version_505(t):
    """RFC 4475 3.1.2.16 (badvers) with a Via we can be reached at: 505.
    (The byte-exact file's SIP/7.0 Via names c.example.com; sofia routes the
    505 there, so the torture run sees nothing.)"""
    d = t.daemon(rooms={"room-a": "sip:room-a@127.0.0.1:9"}).start()

    def msg(local, tp):
        return ("OPTIONS sip:t.watson@%s SIP/7.0\r\n"
                "Via: SIP/7.0/UDP %s:%d;branch=z9hG4bKkdjuw7;rport\r\nMax-Forwards: 70\r\n"
                "From: <sip:a.g.bell@example.com>;tag=qweoiqpe\r\nTo: <sip:t.watson@example.org>\r\n"
                "Call-ID: badvers7.31417@example.com\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
                % (d.uri_host, local[0], local[1])).encode()
    st = sip_exchange(msg, (HOST, d.sip_port))
    check(st == 505, "SIP/7.0 request got %s" % st)
    check(d.options() == 200, "OPTIONS afterwards")
    d.check_clean_exit()
