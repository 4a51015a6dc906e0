"""Issue 6: abuse and faults against a live daemon: floods, scans, rate
limit, idle API connections, port exhaustion, dead peers, SIGKILL."""
import os
import shutil
import signal
import socket
import subprocess
import time

import harness

from harness import (HOST, TOKEN, RawCall, Skip, SipSocket, Webhooks, build_request, case,
                     check, free_port, parse_response, rss_kb, wait_for)
from test_core import caller, refused, room_daemon


def tool(name):
    exe = shutil.which(name)
    if not exe:
        raise Skip("%s not installed (scripts/setup.sh installs it)" % name)
    return exe


@case
def test_rate_limit_503_retry_after(t):
    d, room = room_daemon(t, **{"sip.rate_limit": 2})  # burst 4
    s = SipSocket("udp")
    codes = []
    for i in range(12):
        msg = build_request("INVITE", "sip:nobody@%s" % d.uri_host, d.uri_host, local=s.local,
                            to_user="nobody")
        s.send(msg, (HOST, d.sip_port))
        while True:
            data = s.recv(3)
            r = data and parse_response(data)
            if not r:
                codes.append(None)
                break
            if r[0] >= 200:
                codes.append((r[0], r[1], r[2].get("retry-after", [None])[0]))
                break
    s.close()
    limited = [c for c in codes if c and c[0] == 503]
    check(len(limited) >= 6, "rate limit: %s" % codes)
    check(all(c[1] == "Rate Limited" and c[2] for c in limited), "503 lacks reason/Retry-After: %s"
          % limited)
    check(codes[0] and codes[0][0] == 404, "first INVITE should pass the limit: %s" % (codes[0],))
    d.wait_log(r"SECURITY rate-limit src=127\.0\.0\.1:\d+")
    check(d.metric('sipxfer_calls_rejected_total{reason="rate_limit"}') == len(limited),
          "rate_limit metric")
    d.check_clean_exit()


@case
def test_relay_ports_exhausted_503_then_recovers(t):
    # 4 ports: exactly one relayed call (caller pair + room pair)
    d, room = room_daemon(t, room_calls=2, media_ports=4)
    first = caller(t, d, "caller_wait_bye.xml").start()
    d.wait_metric("sipxfer_calls_active", 1)
    st = refused(t, d, "room-a", 503)
    d.wait_log(r"SECURITY ports-exhausted src=127\.0\.0\.1")
    check(d.metric('sipxfer_calls_rejected_total{reason="no_ports"}') == 1, "no_ports metric")
    sid = d.wait_session()[0]
    d.api("DELETE", "/v1/sessions/%s" % sid)
    first.check_ok(20)
    d.wait_idle()
    c = caller(t, d, duration=100).start()
    c.check_ok(20, "a call after the ports came back")
    room.check_ok(20)
    d.check_clean_exit()


@case
def test_room_unreachable_480(t):
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind((HOST, 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there now: ICMP port unreachable
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, port)}).start()
    st = refused(t, d, "room-a", 480)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_sigkill_then_restart_at_once(t):
    d, room = room_daemon(t, room_calls=2)
    c = caller(t, d, "caller_wait_bye.xml", timeout=20).start()
    d.wait_metric("sipxfer_calls_active", 1)
    d.proc.kill()
    d.proc.wait(5)
    d.start()  # same ports, same media range
    c2 = caller(t, d, duration=100).start()
    c2.check_ok(20, "call after restart")
    d.check_clean_exit()


@case
def test_slow_webhook_receiver_does_not_delay_calls(t):
    w = Webhooks(t, delay=3)
    d, room = room_daemon(t, room_calls=5,
                          **{"webhooks.url": w.url, "webhooks.secret": w.secret})
    c = caller(t, d, calls=5, rate=10, duration=100).start()
    c.check_ok(30)
    # every delivery takes the receiver 3 s: calls that waited for their
    # webhooks could not all be over before the first delivery completes
    delivered = d.metric("sipxfer_webhook_deliveries_total")
    check(delivered < 10, "the calls ended only after %d of 10 webhooks were delivered"
          % delivered)
    w.wait_type("dialin.stopped", 60, count=5)
    room.check_ok(20)
    d.check_clean_exit()


@case
def test_idle_api_connections_do_not_block(t):
    """One source holding idle connections hits the per-IP limit; other
    sources are still served, and idle connections time out."""
    import http.client
    d, room = room_daemon(t)
    socks = []
    refused_at = None
    try:
        for i in range(80):
            try:
                s = socket.create_connection((HOST, d.api_port), timeout=5,
                                             source_address=("127.0.0.1", 0))
                s.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # never finished
                socks.append(s)
            except OSError:
                refused_at = i
                break
        # a connection over the limit is accepted by the kernel and closed
        # by libmicrohttpd: probe it
        probe = socket.create_connection((HOST, d.api_port), timeout=5)
        probe.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        probe.settimeout(5)
        try:
            got = probe.recv(100)
        except OSError:
            got = b""
        probe.close()
        check(not got.startswith(b"HTTP/1.1 200"), "per-IP connection limit not enforced")
        other = http.client.HTTPConnection(HOST, d.api_port, timeout=10,
                                           source_address=("127.0.0.2", 0))
        other.request("GET", "/v1/health")
        check(other.getresponse().status == 200, "another source not served")
        other.close()
        check(d.options() == 200, "SIP with idle API connections")
    finally:
        for s in socks:
            s.close()
    # libmicrohttpd notices the closed connections on its next turn
    wait_for(d._health, 10, "/v1/health from the same source after its idle connections closed")
    d.check_clean_exit()


@case(slow=True)
def test_sipvicious_scan_and_sipsak_flood(t):
    """Scans and floods leave the daemon answering, and memory bounded: what
    a round costs is the server transactions nta keeps for their 32 s
    lifetime, so a second round after that reuses it instead of growing."""
    svmap, svwar, sipsak = tool("svmap"), tool("svwar"), tool("sipsak")
    room = t.sipp("room.xml", timeout=300)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    room.start()
    d.start()
    local = str(free_port())  # never the well-known 5060 (the torture test owns it)

    def scan_round():
        r = subprocess.run([svmap, "-P", local, "-b", HOST, "-p%d" % d.sip_port, HOST],
                           capture_output=True, text=True, timeout=60)
        check(str(d.sip_port) in r.stdout, "svmap did not find the daemon: %s" % r.stdout[-300:])
        for method in ("INVITE", "OPTIONS"):
            subprocess.run([svwar, "-P", local, "-b", HOST, "-e100-250", "-p%d" % d.sip_port,
                            "-m", method, HOST], capture_output=True, text=True, timeout=120)
        subprocess.run([sipsak, "-l", local, "-F", "-e", "3000", "-s",
                        "sip:nobody@%s" % d.uri_host],
                       capture_output=True, text=True, timeout=120)
        check(d.alive(), "daemon died under scan/flood")
        check(d.options() == 200, "OPTIONS after the scan")

    idle = rss_kb(d.proc.pid)
    scan_round()
    first = rss_kb(d.proc.pid)
    time.sleep(34)  # let nta's transactions of the first round expire (Timer J/H: 32 s)
    scan_round()
    second = rss_kb(d.proc.pid)
    t.note("RSS idle %d KiB; round 1 added %d KiB, round 2 %d KiB" % (
        idle, first - idle, second - first))
    check(harness.SANITIZED or second - first < max(4096, (first - idle) // 2),
          "memory grows with every scan: +%d KiB in round 1, +%d KiB in round 2" % (
              first - idle, second - first))
    d.wait_idle()
    c = caller(t, d, duration=100).start()
    c.check_ok(20, "a real call after the scan")
    d.check_clean_exit()
