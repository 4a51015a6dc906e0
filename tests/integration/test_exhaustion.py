"""Issue 17 (items 2 and 3): connection floods against the API and the SIP
TCP listener. The daemon must refuse what is over its caps, close idle
connections itself, keep serving calls and come back by itself."""
import os
import resource
import select
import signal
import socket
import time

from harness import (HOST, readable, build_request, case, check, next_sip_message, parse_response,
                     wait_for)
from test_core import caller, room_daemon


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
        ready = readable(list(left.values()), 0.5)
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


# ---- SIP TCP ---------------------------------------------------------------

def _tcp_flood(port, sources, per_source):
    """Connections that never send a byte, opened without waiting for the
    daemon to accept them (the kernel completes the handshake)."""
    socks = []
    for a in sources:
        for _ in range(per_source):
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.0.%d" % a, 0))
            try:
                s.connect((HOST, port))
            except BlockingIOError:
                pass
            socks.append(s)
    return socks


def _closed_by_server(socks, timeout):
    """How many of socks the daemon closed (EOF or reset) within timeout;
    poll, as there may be more than select()'s 1024 descriptors."""
    p = select.poll()
    left = {}
    for s in socks:
        p.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
        left[s.fileno()] = s
    closed = 0
    deadline = time.time() + timeout
    while left and time.time() < deadline:
        for fd, ev in p.poll(200):
            s = left.get(fd)
            if s is None:
                continue
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                p.unregister(fd)
                del left[fd]
                closed += 1
    return closed


def _tcp_options(d, source, timeout=3):
    """OPTIONS over a new TCP connection from source: ("answer", status),
    ("closed", None) when the daemon closed it unanswered, or ("timeout",
    None)."""
    s = socket.create_connection((HOST, d.sip_port), timeout=timeout,
                                 source_address=(source, 0))
    try:
        s.sendall(build_request("OPTIONS", "sip:%s" % d.uri_host, d.uri_host,
                                local=s.getsockname(), transport="TCP"))
        buf = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            s.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = s.recv(65535)
            except socket.timeout:
                break
            except OSError:
                return ("closed", None)
            if not chunk:
                return ("closed", None)
            buf += chunk
            msg, buf = next_sip_message(buf)
            r = msg and parse_response(msg)
            if r and r[0] >= 200:
                return ("answer", r[0])
        return ("timeout", None)
    finally:
        s.close()


def _cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tcp_metrics(d):
    m = d.metrics()
    return {k: v for k, v in m.items() if k.startswith("sipxfer_sip_tcp_")}


@case
def test_sip_tcp_descriptor_exhaustion(t):
    """1,500 silent TCP connections from six untrusted addresses against a
    daemon allowed 900 descriptors: what would eat into the descriptors kept
    for calls is closed at accept, the loop does not spin, the log stays
    small, a UDP trunk call completes meanwhile, and the silent connections
    are closed after sip.tcp_idle_timeout."""
    idle = 6
    d, room = room_daemon(t, **{"sip.tcp_max_connections": 5000, "sip.tcp_max_per_source": 1000,
                                "sip.tcp_idle_timeout": idle})
    resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (900, 900))

    def seen():
        m = _tcp_metrics(d)
        return m["sipxfer_sip_tcp_connections"] + m["sipxfer_sip_tcp_idle_closed_total"] + sum(
            v for k, v in m.items() if k.startswith("sipxfer_sip_tcp_refused_total"))

    started = time.time()
    socks = []
    try:
        # in waves the listen queue holds: a connection the kernel cannot
        # queue would only reach the daemon seconds later
        for wave in range(50):
            socks += _tcp_flood(d.sip_port, [2 + wave % 6], 30)
            wait_for(lambda: seen() >= len(socks), 10, "%d connections accepted or refused"
                     % len(socks))
        # refusals are logged a line a second; the next line tells how many
        # were left out
        def refusal_note():
            socks.extend(_tcp_flood(d.sip_port, [8], 5))
            return "similar lines suppressed" in d.log_text()
        wait_for(refusal_note, 4, "a refusal line with a suppressed count", interval=0.3)
        wait_for(lambda: seen() >= len(socks), 10, "the last connections accepted or refused")
        m = _tcp_metrics(d)
        kept = m["sipxfer_sip_tcp_connections"]
        check(m['sipxfer_sip_tcp_refused_total{reason="descriptors"}'] > 0,
              "nothing refused for the descriptor reserve: %s" % m)
        reserve = m["sipxfer_sip_tcp_fd_reserve"]
        fds = len(os.listdir("/proc/%d/fd" % d.proc.pid))
        check(900 - fds >= reserve - 5, "%d descriptors open of 900, reserve %d" % (fds, reserve))

        cpu0 = _cpu_seconds(d.proc.pid)
        t0 = time.time()
        # a trunk call over UDP still gets its relay ports
        c = caller(t, d, duration=200).start()
        c.check_ok(20, "UDP trunk call during the TCP flood")
        room.check_ok(20)
        # a fresh address over TCP is answered or refused at once, never left
        # hanging (at the edge of the reserve either may happen)
        how, st = _tcp_options(d, "127.0.0.9")
        check(how == "closed" or (how, st) == ("answer", 200),
              "TCP OPTIONS from a fresh address during the flood: %s %s" % (how, st))
        wait_for(lambda: time.time() - t0 >= 2, 3, "2 s of flood")  # the measuring window
        used = _cpu_seconds(d.proc.pid) - cpu0
        check(used < 0.5 * (time.time() - t0), "daemon used %.2f s CPU in %.1f s of flood"
              % (used, time.time() - t0))
        check(d.metric("sipxfer_sip_tcp_idle_closed_total") == 0,
              "flood checks took longer than the idle timeout (%.1f s)" % (time.time() - started))

        # the silent ones are the daemon's to close
        closed = _closed_by_server(socks, idle + 8)
        check(closed == len(socks), "%d of %d connections still open after %d s"
              % (len(socks) - closed, len(socks), idle + 8))
        m = _tcp_metrics(d)
        check(m["sipxfer_sip_tcp_idle_closed_total"] == kept,
              "idle closed %s, kept %s" % (m["sipxfer_sip_tcp_idle_closed_total"], kept))
        wait_for(lambda: d.metric("sipxfer_sip_tcp_connections") == 0, 5, "no TCP connection left")
    finally:
        for s in socks:
            s.close()
    lines = d.log_text().splitlines()
    check(len(lines) < 40, "%d log lines during the flood:\n%s" % (len(lines),
                                                                 "\n".join(lines[-20:])))
    check(_tcp_options(d, "127.0.0.9") == ("answer", 200), "TCP OPTIONS after the flood")
    check(d.options() == 200, "UDP OPTIONS after the flood")
    d.check_clean_exit()


@case
def test_sip_tcp_caps_total_and_per_source(t):
    """tcp_max_per_source and tcp_max_connections close what is over them
    at accept; admitted connections keep working; connections that spoke are
    not reaped with the silent ones; the counts come back down."""
    idle = 3
    d, room = room_daemon(t, **{"sip.tcp_max_connections": 25, "sip.tcp_max_per_source": 10,
                                "sip.tcp_idle_timeout": idle})
    # one connection that talks, held open
    talker = socket.create_connection((HOST, d.sip_port), timeout=5,
                                      source_address=("127.0.0.20", 0))
    talker.sendall(build_request("OPTIONS", "sip:%s" % d.uri_host, d.uri_host,
                                 local=talker.getsockname(), transport="TCP"))
    talker.settimeout(5)
    check(parse_response(talker.recv(65535))[0] == 200, "OPTIONS on the talking connection")
    socks = []
    try:
        socks += _tcp_flood(d.sip_port, [2], 15)
        wait_for(lambda: d.metric('sipxfer_sip_tcp_refused_total{reason="per_source"}') == 5, 10,
                 "5 refused over the per-source cap")
        socks += _tcp_flood(d.sip_port, [3, 4], 15)
        # 1 + 10 + 10 + 4 from .4 reach 25
        wait_for(lambda: d.metric('sipxfer_sip_tcp_refused_total{reason="total"}') == 11, 10,
                 "11 refused over the total cap")
        m = _tcp_metrics(d)
        check(m["sipxfer_sip_tcp_connections"] == 25, "connections %s" % m)
        check(m['sipxfer_sip_tcp_refused_total{reason="per_source"}'] == 10, "per_source %s" % m)
        check(_tcp_options(d, "127.0.0.5")[0] == "closed", "over the total cap: not closed at once")
        check(d.options() == 200, "UDP while TCP is full")
        d.wait_log(r"SECURITY sip-tcp-refused src=127\.0\.0\.2:\d+ .*tcp_max_per_source")
        # the silent 24 go, the talker stays
        wait_for(lambda: d.metric("sipxfer_sip_tcp_idle_closed_total") == 24, idle + 8,
                 "24 silent connections closed")
        check(d.metric("sipxfer_sip_tcp_connections") == 1, "the talking connection was reaped")
        talker.sendall(build_request("OPTIONS", "sip:%s" % d.uri_host, d.uri_host,
                                     local=talker.getsockname(), transport="TCP"))
        check(parse_response(talker.recv(65535))[0] == 200, "talking connection after the reaping")
        check(_tcp_options(d, "127.0.0.5") == ("answer", 200), "TCP OPTIONS once below the caps")
    finally:
        for s in socks:
            s.close()
        talker.close()
    wait_for(lambda: d.metric("sipxfer_sip_tcp_connections") == 0, 10, "no TCP connection left")
    # the caps follow a reload
    d.settings["sip.tcp_max_per_source"] = 1
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reloaded ")
    before = d.metric('sipxfer_sip_tcp_refused_total{reason="per_source"}')
    socks = _tcp_flood(d.sip_port, [30], 2)
    try:
        wait_for(lambda: d.metric('sipxfer_sip_tcp_refused_total{reason="per_source"}')
                 == before + 1, 10, "one of two refused after reloading tcp_max_per_source = 1")
        check(d.metric("sipxfer_sip_tcp_connections") == 1, "connections after the reload")
    finally:
        for s in socks:
            s.close()
    d.check_clean_exit()
