"""Issue 17 (items 2 and 3): connection floods against the API and the SIP
TCP listener. The daemon must refuse what is over its caps, close idle
connections itself, keep serving calls and come back by itself."""
import os
import resource
import select
import socket
import time

from harness import HOST, RawCall, build_request, case, check, parse_response, wait_for
from test_core import room_daemon


def _open_idle(port, source, count, send=b""):
    socks = []
    for _ in range(count):
        s = socket.create_connection((HOST, port), timeout=5, source_address=(source, 0))
        if send:
            s.sendall(send)
        socks.append(s)
    return socks


def _wait_closed_by_server(socks, timeout):
    """Wait until the peer closed every socket (EOF or reset)."""
    left = {s.fileno(): s for s in socks}
    deadline = time.time() + timeout
    while left and time.time() < deadline:
        ready, _, _ = select.select(list(left.values()), [], [], 0.5)
        for s in ready:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                del left[s.fileno()]
    return len(left)


def _health_within(d, timeout):
    return wait_for(d._health, timeout, "/v1/health to answer 200")


@case
def test_api_burst_at_connection_limit_recovers(t):
    """256 idle connections (64 from each of four addresses) fill the API's
    connection limit; once libmicrohttpd has closed them for idleness, and
    again once clients close them, /v1/health answers without a restart."""
    d, room = room_daemon(t, **{"api.idle_timeout": 2})
    socks = []
    for a in range(2, 6):
        socks += _open_idle(d.api_port, "127.0.0.%d" % a, 64)
    # idle connections are the server's to close, within the idle timeout
    open_left = _wait_closed_by_server(socks, 2 + 8)
    for s in socks:
        s.close()
    check(open_left == 0, "%d of 256 idle API connections still open after 10 s" % open_left)
    _health_within(d, 5)

    # the same burst, this time closed by the clients
    socks = []
    for a in range(2, 6):
        socks += _open_idle(d.api_port, "127.0.0.%d" % a, 64, b"GET /v1/health HTTP/1.1\r\n")
    for s in socks:
        s.close()
    _health_within(d, 5)
    check(d.options() == 200, "SIP after the API bursts")
    d.check_clean_exit()


@case
def test_api_per_source_limit_leaves_room_for_others(t):
    """One address holding more than its 64 connections does not keep
    another address from /v1/health; its surplus is refused."""
    d, room = room_daemon(t, **{"api.idle_timeout": 30})
    socks = _open_idle(d.api_port, "127.0.0.2", 80, b"GET /v1/health HTTP/1.1\r\n")
    try:
        # libmicrohttpd closes what is over the per-address limit at accept
        over = len(socks) - _wait_closed_by_server(socks, 5)
        check(over == 16, "per-address limit: %d of 80 connections closed, want 16" % over)
        st, body = d.api("GET", "/v1/health", timeout=5)
        check(st == 200, "another address not served during the burst: %s" % st)
    finally:
        for s in socks:
            s.close()
    _health_within(d, 5)
    d.check_clean_exit()
