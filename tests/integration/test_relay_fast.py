"""Issue 16: the relay's warm port pool (media.warm_pairs) and its eBPF
kernel fast path (media.kernel, SPEC section 14)."""
import os
import re
import subprocess

from harness import HOST, case, check, wait_for
from test_core import caller, room_daemon


def tracer_of(tid):
    with open("/proc/%d/status" % tid) as f:
        return int(re.search(r"^TracerPid:\s+(\d+)", f.read(), re.M).group(1))


def relay_syscalls(lines):
    """The trace lines that are the relay's doing: UDP sockets, IPv4/IPv6
    binds and level-triggered epoll_ctl (the API's connections, accepted by
    libmicrohttpd while the test polls /metrics, are edge-triggered)."""
    return [x for x in lines
            if re.match(r"socket\(AF_INET6?, SOCK_DGRAM", x)
            or re.match(r"bind\(\d+, \{sa_family=AF_INET6?,", x)
            or (x.startswith("epoll_ctl(") and "EPOLLET" not in x)]


def control_thread_syscalls(t, d, calls):
    """strace the daemon's control thread (its main thread only, not the
    relay worker) while `calls` relayed calls go through; the traced lines."""
    out = t.path("control-thread.strace")
    tr = subprocess.Popen(["strace", "-qq", "-o", out, "-e",
                           "trace=socket,bind,epoll_ctl,close", "-p", str(d.proc.pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: tracer_of(d.proc.pid) == tr.pid, 10, "strace attached")
        c = caller(t, d, calls=calls, rate=10, limit=5, duration=100).start()
        c.check_ok(60)
        d.wait_idle(30)
    finally:
        tr.terminate()
        tr.wait(10)
    with open(out) as f:
        return f.read().splitlines()


@case
def test_warm_pool_relayed_calls_bind_nothing_on_the_control_thread(t):
    """With the warm pool, setting up and ending relayed calls makes no
    socket, bind or epoll_ctl call on the control thread (the worker binds
    ahead and closes after); with media.warm_pairs = 0 each call binds its
    four ports there, so the trace would show them."""
    n = 10
    d, room = room_daemon(t, room_calls=n, media_ports=200)
    warm = d.metric("sipxfer_relay_ports_warm")
    check(warm > 0, "no warm ports at start: %s" % warm)
    lines = control_thread_syscalls(t, d, n)
    room.check_ok(30)
    binds = relay_syscalls(lines)
    check(not binds, "control thread made socket calls for relayed calls: %s" % binds[:8])
    check(d.metric("sipxfer_relay_warm_misses_total") == 0, "warm misses")
    check(d.metric("sipxfer_relay_ports_in_use") == 0, "ports left in calls")
    t.note("%d relayed calls: 0 socket/bind/epoll_ctl on the control thread; %d warm ports"
           % (n, warm))
    d.check_clean_exit()

    # the same with the pool off: the trace sees the binds, so the check above can fail
    d2, room2 = room_daemon(t, room_calls=n, media_ports=200, **{"media.warm_pairs": 0})
    check(d2.metric("sipxfer_relay_ports_warm") == 0, "warm ports with warm_pairs = 0")
    lines = control_thread_syscalls(t, d2, n)
    room2.check_ok(30)
    binds = relay_syscalls(lines)
    check(len([x for x in binds if x.startswith("bind(")]) >= 4 * n
          and len([x for x in binds if x.startswith("epoll_ctl(")]) >= 4 * n,
          "without the pool the trace shows too few binds/epoll_ctl: %s" % binds[:8])
    d2.check_clean_exit()


@case
def test_warm_pool_refills_past_its_size(t):
    """More calls at once than the pool holds: the first streams take warm
    pairs, the worker refills behind them, nothing is lost, every port comes
    back, and the pool is full again afterwards."""
    n = 40
    d, room = room_daemon(t, room_calls=n, media_ports=400, **{"media.warm_pairs": 8})
    warm0 = d.metric("sipxfer_relay_ports_warm")
    check(warm0 == 16, "8 pairs = 16 warm ports at start, got %s" % warm0)
    c = caller(t, d, calls=n, rate=40, limit=40, duration=1500).start()
    c.check_ok(60)
    room.check_ok(30)
    d.wait_idle(30)
    wait_for(lambda: d.metric("sipxfer_relay_ports_warm") == warm0, 10, "pool refilled")
    t.note("%d calls with an 8-pair pool: %s warm misses" % (
        n, d.metric("sipxfer_relay_warm_misses_total")))
    d.check_clean_exit()
