"""Issue 16: the relay's warm port pool (media.warm_pairs) and its eBPF
kernel fast path (media.kernel, SPEC section 14)."""
import os
import random
import re
import shutil
import socket
import subprocess
import threading

from harness import HOST, Skip, case, check, wait_for
from test_core import caller, room_daemon


def tracer_of(tid):
    with open("/proc/%d/status" % tid) as f:
        return int(re.search(r"^TracerPid:\s+(\d+)", f.read(), re.M).group(1))


def relay_syscalls(lines):
    """The trace lines that are the relay's doing: UDP sockets, binds and
    epoll_ctl of UDP sockets (strace -yy names each fd's kind, so the API's
    TCP connections that libmicrohttpd adds and removes while the test polls
    /metrics stay out, whether they opened before the trace or during it)."""
    return [x for x in lines
            if re.match(r"socket\(AF_INET6?, SOCK_DGRAM", x)
            or re.match(r"bind\(\d+<UDPv?6?:", x)
            or re.match(r"epoll_ctl\(\d+<[^>]*>, EPOLL_CTL_\w+, \d+<UDPv?6?:", x)]


def control_thread_syscalls(t, d, calls):
    """strace the daemon's control thread (its main thread only, not the
    relay worker) while `calls` relayed calls go through; the traced lines."""
    out = t.path("control-thread.strace")
    tr = subprocess.Popen(["strace", "-qq", "-yy", "-o", out, "-e",
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


@case
def test_warm_pool_refills_after_the_range_ran_out(t):
    """Calls that take every pair of the range leave the pool empty and its
    refill stuck; when they end, the pairs they give back fill the pool
    again without another call asking for one."""
    n = 10
    d, room = room_daemon(t, room_calls=n, media_ports=40, **{"media.warm_pairs": 5})
    warm0 = d.metric("sipxfer_relay_ports_warm")
    check(warm0 == 10, "5 pairs = 10 warm ports at start, got %s" % warm0)
    # 10 calls x 2 pairs = the whole range (20 pairs): the pool runs dry
    c = caller(t, d, "caller_wait_bye.xml", calls=n, rate=50, limit=n).start()
    wait_for(lambda: d.metric("sipxfer_calls_active") == n, 20, "every call up")
    check(d.metric("sipxfer_relay_ports_warm") == 0, "warm ports with the range in calls: %s"
          % d.metric("sipxfer_relay_ports_warm"))
    for sid in d.wait_session(count=n):
        d.api("DELETE", "/v1/sessions/%s" % sid)
    c.check_ok(30)
    d.wait_idle(30)
    wait_for(lambda: d.metric("sipxfer_relay_ports_warm") == warm0, 10,
             "pool refilled by the freed pairs")
    d.check_clean_exit()


# ---- the kernel fast path ---------------------------------------------------

import ctypes  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402

from harness import RawCall  # noqa: E402
from test_bleed import echoed, leg_media, reinvite  # noqa: E402
from test_transfer import ROOM_B, session, setup, transfer  # noqa: E402

_libc = ctypes.CDLL(None, use_errno=True)
_NR_BPF = 321  # x86_64
BPF_MAP_GET_NEXT_KEY, BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID = 4, 13, 14
KERNEL = 'sipxfer_relay_packets_total{path="kernel"}'
USER = 'sipxfer_relay_packets_total{path="user"}'


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr.ljust(128, b"\0"), 128)
    r = _libc.syscall(_NR_BPF, cmd, buf, 128)
    return r, ctypes.get_errno()


def bpf_object_exists(cmd, obj_id):
    """Whether the kernel still holds the program or map obj_id (the bpf()
    syscall itself, no tool in between)."""
    fd, err = _bpf(cmd, struct.pack("I", obj_id))
    if fd >= 0:
        os.close(fd)
        return True
    check(err == 2, "bpf(GET_FD_BY_ID %d): errno %d" % (obj_id, err))  # ENOENT
    return False


def map_entries(map_id, key_size=8):
    """How many keys the map holds now, read from the kernel."""
    fd, err = _bpf(BPF_MAP_GET_FD_BY_ID, struct.pack("I", map_id))
    check(fd >= 0, "map %d: errno %d" % (map_id, err))
    try:
        n = 0
        key = ctypes.create_string_buffer(key_size)
        nxt = ctypes.create_string_buffer(key_size)
        first = True
        while n < 100000:
            attr = struct.pack("IIQQ", fd, 0, 0 if first else ctypes.addressof(key),
                               ctypes.addressof(nxt))
            r, err = _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            if r < 0:
                check(err == 2, "GET_NEXT_KEY errno %d" % err)
                return n
            n += 1
            ctypes.memmove(key, nxt, key_size)
            first = False
        return n
    finally:
        os.close(fd)


def kernel_ids(d):
    """(prog id, rk_fwd map id, rk_count map id) from the start-up line."""
    r = re.compile(r"relay: kernel fast path on: prog id (\d+), maps rk_fwd id (\d+) "
                   r"rk_count id (\d+)")
    # this start's line: a daemon started again in the same test appends to the same log
    m = wait_for(lambda: r.search(d.log_text()[d._log_start:]), 10, "kernel fast path on")
    return tuple(int(x) for x in m.groups())


def kernel_daemon(t, **kw):
    d, room = room_daemon(t, echo=True, **kw)
    return d, room, kernel_ids(d)


def end_call(call, room, d, maps=None):
    """BYE, the room's SIPp done, the daemon idle; with maps (rk_fwd id,
    rk_count id), neither holds an entry any more; then a clean exit."""
    check(call.bye() == 200, "BYE")
    call.close()
    room.check_ok(30)
    d.wait_idle()
    if maps:
        check(map_entries(maps[0]) == 0 and map_entries(maps[1]) == 0,
              "entries left after the call: rk_fwd %d rk_count %d" % (
                  map_entries(maps[0]), map_entries(maps[1])))
    d.check_clean_exit()


@case
def test_kernel_path_forwards_latched_media_both_ways(t):
    """After the first packets latch each side, RTP goes caller -> room and
    back (echo) in the kernel: the map counters feed the call's counters and
    /metrics, one entry per direction; the call's end leaves no entry."""
    d, room, (prog, fwd, count) = kernel_daemon(t)
    check(d.metric("sipxfer_relay_kernel") == 1, "kernel path not on")
    call = RawCall(d)
    try:
        check(call.invite() == 200, "INVITE")
        sid = d.wait_session()[0]
        n = echoed(call, 200)
        check(n >= 195, "only %d of 200 echoed" % n)
        kernel = d.metric(KERNEL)
        user = d.metric(USER)
        # first packet each way latches in userspace; a few more may pass
        # there before the entry is in
        check(kernel >= 350 and user <= 50, "kernel %s, user %s packets" % (kernel, user))
        check(d.metric("sipxfer_relay_kernel_streams") == 2,
              "kernel streams %s" % d.metric("sipxfer_relay_kernel_streams"))
        check(map_entries(fwd) == 2, "rk_fwd entries in the kernel: %d" % map_entries(fwd))
        media = leg_media(d, sid)
        check(media["caller"]["rxPackets"] == 200, "caller rx %s" % media["caller"])
        check(media["caller"]["txPackets"] == n, "caller tx %s for %d echoed" % (
            media["caller"], n))
        check(media["room"]["txPackets"] == 200, "room tx %s" % media["room"])
        t.note("200 packets each way: %d in the kernel, %d in userspace" % (kernel, user))
    finally:
        check(call.bye() == 200, "BYE")
    call.close()
    room.check_ok(30)
    d.wait_idle()
    check(d.metric("sipxfer_relay_kernel_streams") == 0, "kernel streams left")
    check(map_entries(fwd) == 0 and map_entries(count) == 0,
          "entries left: rk_fwd %d rk_count %d" % (map_entries(fwd), map_entries(count)))
    d.check_clean_exit()
    wait_for(lambda: not bpf_object_exists(BPF_PROG_GET_FD_BY_ID, prog), 10,
             "the program to go with the daemon")


@case
def test_kernel_path_hold_and_unhold(t):
    """Hold (c=0.0.0.0) takes the streams off the kernel path (nowhere to
    send); unhold puts them back once they latch again."""
    d, room, (prog, fwd, count) = kernel_daemon(t)
    call = RawCall(d)
    check(call.invite() == 200, "INVITE")
    check(echoed(call, 50) >= 48, "no echo before hold")
    check(map_entries(fwd) == 2, "entries before hold: %d" % map_entries(fwd))
    hold = call.sdp().replace(b"c=IN IP4 %s" % HOST.encode(), b"c=IN IP4 0.0.0.0") \
        .replace(b"o=raw 1 1", b"o=raw 1 2") + b"a=sendonly\r\n"
    check(reinvite(call, hold) == 200, "hold re-INVITE")
    d.wait_log("re-INVITE from the caller leg forwarded")
    wait_for(lambda: map_entries(fwd) == 0, 10, "entries removed on hold")
    check(reinvite(call, call.sdp().replace(b"o=raw 1 1", b"o=raw 1 3")) == 200, "unhold")
    call.drain_rtp()
    before = d.metric(KERNEL)
    n = echoed(call, 50)
    check(n >= 48, "after unhold only %d of 50 echoed" % n)
    check(map_entries(fwd) == 2, "entries after unhold: %d" % map_entries(fwd))
    check(d.metric(KERNEL) - before >= 80, "kernel packets after unhold: %s" % (
        d.metric(KERNEL) - before))
    end_call(call, room, d, (fwd, count))


@case
def test_kernel_path_follows_a_reinvite_to_a_new_port(t):
    """The caller re-INVITEs with media on a new port (a new socket): the
    entries are replaced, the room's echo reaches the new port, every
    packet, in the kernel, and nothing more reaches the old one."""
    d, room, (prog, fwd, count) = kernel_daemon(t)
    call = RawCall(d)
    check(call.invite() == 200, "INVITE")
    check(echoed(call, 50) >= 48, "no echo before the re-INVITE")
    old = call.rtp
    call.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    call.rtp.bind((HOST, 0))
    try:
        check(reinvite(call, call.sdp().replace(b"o=raw 1 1", b"o=raw 1 2")) == 200, "re-INVITE")
        d.wait_log("re-INVITE from the caller leg forwarded")
        check(echoed(call, 20) >= 18, "no echo at the new port")
        call.drain_rtp()
        before = d.metric(KERNEL)
        n = echoed(call, 100)
        check(n == 100, "only %d of 100 echoed to the new port" % n)
        check(d.metric(KERNEL) - before >= 190, "kernel packets after the re-INVITE: %s" % (
            d.metric(KERNEL) - before))
        old.setblocking(False)
        stale = 0
        try:
            while True:
                old.recvfrom(2048)
                stale += 1
        except OSError:
            pass
        # what reached the old port before the re-INVITE was read by the
        # first echo; anything now is the relay still sending there
        check(stale == 0, "%d packets still went to the old port" % stale)
        check(map_entries(fwd) == 2, "entries: %d" % map_entries(fwd))
    finally:
        old.close()
    end_call(call, room, d, (fwd, count))


@case
def test_kernel_path_follows_a_transfer(t):
    """sipCallTransfer moves the caller's stream: after it, the kernel
    entries point at room-b (its echo comes back), none at room-a."""
    d, rooms, w = setup(t, echo=("room-b",))
    ids = kernel_ids(d)
    call = RawCall(d)
    try:
        check(call.invite() == 200, "call to room-a")
        sid = d.wait_session()[0]
        call.send_rtp(20)
        check(call.count_rtp(0.5, 1) == 0, "echo from room-a?")
        st, obj = transfer(d, "room-a", sid, ROOM_B)
        check(st == 200, "transfer: %s %s" % (st, obj))
        rooms["room-a"].check_ok(20, "old room must get BYE")
        w.wait_type("calltransfer.completed")
        check(session(d, sid)["room"] == "room-b", "room after transfer")
        call.drain_rtp()
        before = d.metric(KERNEL)
        call.send_rtp(100, start_seq=100)
        got = call.count_rtp(5, 100)
        # every one, from the first packet after calltransfer.completed: the
        # kernel entries follow the CONNECT at once (a worker lingering 20 ms
        # over it once sent the first packets to the old room's port)
        check(got == 100, "only %d of 100 echoed by room-b" % got)
        check(d.metric(KERNEL) - before >= 150, "kernel packets after the transfer: %s" % (
            d.metric(KERNEL) - before))
        check(map_entries(ids[1]) == 2, "entries: %d" % map_entries(ids[1]))
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    rooms["room-b"].check_ok(20)
    d.wait_idle()
    check(map_entries(ids[1]) == 0 and map_entries(ids[2]) == 0, "entries left")
    d.check_clean_exit()


@case(slow=True)
def test_kernel_path_200_calls_leave_no_entry(t):
    """200 relayed calls with media both ways (SIPp's RTP, echoed): no
    forwarding entry or counter left afterwards, and the program goes with
    the daemon."""
    n = 200
    room = t.sipp("room.xml", calls=n, echo=True)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}, media_ports=400)
    room.start()
    d.start()
    prog, fwd, count = kernel_ids(d)
    pcap = "/usr/share/sip-tester/g711a.pcap"  # package sip-tester, like SIPp itself
    # 1.5 s calls: long enough for each to latch both ways and go to the kernel
    c = caller(t, d, "caller_media.xml", calls=n, rate=50, limit=80, duration=1500,
               keys={"pcap": pcap}).start()
    c.check_ok(120)
    room.check_ok(60)
    d.wait_idle(30)
    check(d.metric(KERNEL) > 0, "no packet took the kernel path")
    check(map_entries(fwd) == 0 and map_entries(count) == 0,
          "after %d calls: rk_fwd %d rk_count %d entries" % (n, map_entries(fwd),
                                                            map_entries(count)))
    t.note("%d calls: %d packets in the kernel, %d in userspace" % (
        n, d.metric(KERNEL), d.metric(USER)))
    d.check_clean_exit()
    wait_for(lambda: not bpf_object_exists(BPF_PROG_GET_FD_BY_ID, prog)
             and not bpf_object_exists(BPF_MAP_GET_FD_BY_ID, fwd), 10,
             "program and maps to go with the daemon")


@case
def test_kernel_path_sigkill_leaves_nothing_forwarding(t):
    """SIGKILL mid-call: the kernel detaches the program with the process's
    last descriptor (a bpf_link, never pinned), so the latched caller's
    packets to the dead relay port go nowhere; a restart works afresh."""
    d, room, (prog, fwd, count) = kernel_daemon(t)
    call = RawCall(d)
    check(call.invite() == 200, "INVITE")
    check(echoed(call, 50) >= 48, "no echo")
    check(map_entries(fwd) == 2, "entries before the kill")
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d.proc = None  # reaped: its death is the point, not a failure
    wait_for(lambda: not bpf_object_exists(BPF_PROG_GET_FD_BY_ID, prog)
             and not bpf_object_exists(BPF_MAP_GET_FD_BY_ID, fwd), 10,
             "program and maps gone after SIGKILL")
    call.drain_rtp()
    call.send_rtp(20)
    check(call.count_rtp(0.5, 1) == 0, "packets still forwarded after the daemon died")
    call.close()
    room.proc.kill()
    # a new daemon on this host: its own program, nothing of the dead one's in the way
    d, room2, (prog2, fwd2, count2) = kernel_daemon(t)
    check(prog2 != prog, "the same program id after a restart")
    call = RawCall(d)
    check(call.invite() == 200, "INVITE after the restart")
    check(echoed(call, 50) >= 48, "no echo after the restart")
    check(d.metric(KERNEL) > 0, "kernel path not used after the restart")
    end_call(call, room2, d, (fwd2, count2))


def userspace_only(t, d, room, why):
    d.wait_log(why)
    check(d.metric("sipxfer_relay_kernel") == 0, "kernel path on")
    call = RawCall(d)
    check(call.invite() == 200, "INVITE")
    n = echoed(call, 50)
    check(n >= 48, "only %d of 50 echoed in userspace" % n)
    check(d.metric(KERNEL) == 0 and d.metric(USER) >= 96, "kernel %s user %s" % (
        d.metric(KERNEL), d.metric(USER)))
    end_call(call, room, d)


def falls_back(t, why, wrap=None, **settings):
    """A daemon (with settings, its command under wrap) whose kernel path
    cannot run: the line why, then media in userspace."""
    room = t.sipp("room.xml", echo=True)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}, **settings)
    d.wrap = wrap
    room.start()
    d.start()
    userspace_only(t, d, room, r"kernel fast path unavailable, the relay thread carries every "
                               r"packet: " + why)


@case
def test_kernel_off_carries_media_in_userspace(t):
    d, room = room_daemon(t, echo=True, **{"media.kernel": "off"})
    userspace_only(t, d, room, r"kernel fast path off \(media\.kernel = \"off\"\)")


@case
def test_kernel_refused_falls_back_to_userspace(t):
    """A daemon without CAP_BPF/CAP_NET_ADMIN (every capability dropped
    with setpriv): BPF is refused, one line says why, media still flows."""
    falls_back(t, r"the kernel refused the tc program: Operation not permitted",
               wrap=["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"])


@case
def test_kernel_path_carries_rtcp(t):
    """RTCP (RTP port + 1) latches and takes the kernel path like RTP: one
    more entry, and what the caller sends after the first goes by it."""
    d, room, (prog, fwd, count) = kernel_daemon(t)
    call = RawCall(d, rtcp=True)
    check(call.invite() == 200, "INVITE")
    check(echoed(call, 20) >= 19, "no echo")
    check(map_entries(fwd) == 2, "RTP entries: %d" % map_entries(fwd))
    before_k, before_u = d.metric(KERNEL), d.metric(USER)
    dst = (call.remote_media[0], call.remote_media[1] + 1)
    rr = bytes([0x80, 201, 0, 1]) + (0x1234abcd).to_bytes(4, "big")  # minimal receiver report
    # the first latches, in userspace; once the relay has taken it the rest may go by the kernel
    call.rtcp.sendto(rr, dst)
    wait_for(lambda: d.metric(USER) >= before_u + 1, 10, "the first RTCP packet relayed")
    wait_for(lambda: map_entries(fwd) == 3, 10, "the RTCP entry")
    for i in range(19):
        call.rtcp.sendto(rr, dst)
    wait_for(lambda: d.metric(KERNEL) + d.metric(USER) >= before_k + before_u + 20, 10,
             "the relay to take 20 RTCP packets")
    check(map_entries(fwd) == 3, "entries with RTCP: %d" % map_entries(fwd))
    check(d.metric(KERNEL) - before_k >= 15, "RTCP in the kernel: %s of 20" % (
        d.metric(KERNEL) - before_k))
    end_call(call, room, d, (fwd, count))


# -- peers on another host ---------------------------------------------------
# Every test above has its peers on this host, where a rewritten packet is
# handed to the local stack. A carrier or a room elsewhere is reached by
# the other branch of the program: bpf_fib_lookup, then a redirect out of
# the route's interface. These tests stand another host up in a network
# namespace of its own behind a veth pair, in RFC 2544's benchmarking
# range (198.18.0.0/15): the traffic never leaves this machine's kernel and
# no namespace but the test's own is reachable from it.

CLONE_NEWNET = 0x40000000
_far_lock = threading.Lock()
_far_used = set()


def _run(args):
    r = subprocess.run(args, capture_output=True, text=True)
    check(r.returncode == 0, "%s: %s" % (" ".join(args), r.stderr.strip()))


def free_number(make):
    """A number 1-254 this process has not used yet for which make(k)
    succeeds (it names links and /24s: taken under a lock, and tried again
    where another process, a parallel run, holds the name)."""
    for _ in range(20):
        with _far_lock:
            k = random.choice([x for x in range(1, 255) if x not in _far_used])
            _far_used.add(k)
        if make(k):
            return k
    check(False, "no free interface name after 20 tries")


class FarHost:
    """A namespace standing for another host: this side `near` (the
    daemon's media.address) on a veth, the far side holding `caller` and
    `room` addresses."""

    def __init__(self, t):
        if os.geteuid() != 0 or not shutil.which("ip"):
            raise Skip("needs root and iproute2 for a network namespace")

        def make(k):
            self.ns, self.link = "sxf%d-%d" % (os.getpid(), k), "sxf%da" % k
            if subprocess.run(["ip", "netns", "add", self.ns], capture_output=True).returncode:
                return False
            if subprocess.run(["ip", "link", "add", self.link, "type", "veth", "peer", "name",
                               "far", "netns", self.ns], capture_output=True).returncode == 0:
                return True
            subprocess.run(["ip", "netns", "del", self.ns])
            return False
        k = free_number(make)
        ns, link = self.ns, self.link
        t.at_end(lambda: subprocess.run(["ip", "netns", "del", ns]))
        t.at_end(lambda: subprocess.run(["ip", "link", "del", link], stderr=subprocess.DEVNULL))
        self.near = "198.18.%d.1" % k
        self.caller = "198.18.%d.2" % k
        self.room = "198.18.%d.3" % k
        _run(["ip", "addr", "add", self.near + "/24", "dev", self.link])
        _run(["ip", "link", "set", self.link, "up"])
        for a in (self.caller, self.room):
            self.ip("addr", "add", a + "/24", "dev", "far")
        self.ip("link", "set", "far", "up")
        self.ip("link", "set", "lo", "up")
        # its way back to the daemon, whichever interface the daemon used
        self.ip("route", "add", "default", "via", self.near)
        # the first packet must not find the link still coming up
        wait_for(lambda: "LOWER_UP" in subprocess.run(
            ["ip", "link", "show", self.link], capture_output=True, text=True).stdout, 10,
            "the veth to come up")

    def ip(self, *args):
        _run(["ip", "-n", self.ns] + list(args))

    def forwarding(self, on):
        """The near side's forwarding flag, which bpf_fib_lookup requires
        of the incoming interface (this interface only: the host's own
        ip_forward stays as it is)."""
        with open("/proc/sys/net/ipv4/conf/%s/forwarding" % self.link, "w") as f:
            f.write("1" if on else "0")

    def udp_socket(self, addr):
        """A UDP socket bound to addr inside the namespace (made by a thread
        that joins it, so this process stays where it is)."""
        out = {}

        def make():
            try:
                fd = os.open("/run/netns/" + self.ns, os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        out["err"] = "setns: errno %d" % ctypes.get_errno()
                        return
                finally:
                    os.close(fd)
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((addr, 0))
                out["sock"] = s
            except OSError as e:
                out["err"] = str(e)
        th = threading.Thread(target=make)
        th.start()
        th.join()
        check("sock" in out, "socket in %s: %s" % (self.ns, out.get("err")))
        return out["sock"]

    def sipp(self, t, scenario, **kw):
        """SIPp on the far side's room address."""
        s = t.sipp(scenario, **kw)
        s._arg("-i", self.room)
        s.args = ["ip", "netns", "exec", self.ns] + s.args
        return s


def far_daemon(t, far, room_at=None, **kw):
    """A daemon whose SIP and media are on the near side; its room is an
    echoing SIPp on the far side, or on room_at: "here" (this host's
    loopback) or another FarHost (a second network, the way out another
    interface)."""
    if room_at == "here":
        room = t.sipp("room.xml", echo=True)
        uri = "sip:room-a@%s:%d" % (HOST, room.port)
    else:
        room_host = room_at or far
        room = room_host.sipp(t, "room.xml", echo=True)
        uri = "sip:room-a@%s:%d" % (room_host.room, room.port)
    d = t.daemon(rooms={"room-a": uri}, **kw)
    d.settings.update({"sip.listen": "sip:%s:%d" % (far.near, d.sip_port),
                       "media.address": far.near})
    d.write_config()
    room.start()
    d.start()
    return d, room


def far_call(d, far):
    """A caller whose SIP comes from this host and whose media lives on the
    far side."""
    call = RawCall(d, rtp=False, sdp_host=far.caller)
    call.rtp = far.udp_socket(far.caller)
    call.route_target = (far.near, d.sip_port)
    return call


def far_media(t, forwarding, room_at=None, attach_room_side=False):
    """200 packets from a caller on a FarHost echoed by its room and back;
    (kernel, userspace) packets of the 400 forwarded. attach_room_side: the
    room's FarHost link is named in media.kernel_interfaces."""
    far = FarHost(t)
    far.forwarding(forwarding)
    kw = {}
    if isinstance(room_at, FarHost):
        room_at.forwarding(forwarding)
        if attach_room_side:
            kw["media.kernel_interfaces"] = [room_at.link]
    d, room = far_daemon(t, far, room_at=room_at, **kw)
    prog, fwd, count = kernel_ids(d)
    call = far_call(d, far)
    check(call.invite() == 200, "INVITE")
    sid = d.wait_session()[0]
    # the first packets latch each side and teach the kernel the
    # neighbour; from then on every packet must come back
    check(echoed(call, 20) >= 18, "no echo through the relay")
    call.drain_rtp()
    before_k, before_u = d.metric(KERNEL), d.metric(USER)
    n = echoed(call, 200)
    check(n == 200, "only %d of 200 echoed" % n)
    kernel, user = d.metric(KERNEL) - before_k, d.metric(USER) - before_u
    media = leg_media(d, sid)
    check(media["caller"]["rxPackets"] == 220 and media["room"]["txPackets"] == 220,
          "call counters %s" % media)
    t.note("200 packets each way: %d in the kernel, %d in userspace" % (kernel, user))
    end_call(call, room, d, (fwd, count))
    return kernel, user


@case
def test_kernel_path_redirects_toward_another_host(t):
    """Caller and room on another host (a namespace behind a veth), with
    forwarding on the incoming interface: both directions are rewritten and
    redirected out of the veth by the program (bpf_fib_lookup), checksums
    right (the far side's sockets take every packet)."""
    kernel, user = far_media(t, forwarding=True)
    check(kernel == 400 and user == 0, "kernel %d, user %d of 400" % (kernel, user))


@case
def test_kernel_path_without_forwarding_leaves_remote_peers_to_userspace(t):
    """The same without forwarding on the interface: the lookup is refused,
    so the relay thread sends every packet, and none is lost."""
    kernel, user = far_media(t, forwarding=False)
    check(kernel == 0 and user == 400, "kernel %d, user %d of 400" % (kernel, user))


@case
def test_kernel_path_toward_a_room_on_another_network(t):
    """Caller and room on two networks behind two interfaces (the public
    and the private side of an edge): the caller's packets come in on the
    media interface and the route sends them out of the other one, so the
    program redirects them there; the room's replies come in where no
    program is attached and take the relay thread. Nothing is lost."""
    kernel, user = far_media(t, forwarding=True, room_at=FarHost(t))
    check(kernel == 200 and user == 200, "kernel %d, user %d of 400" % (kernel, user))


def lo_forwarding(t):
    """IPv4 forwarding on lo for this test, as on a host with ip_forward = 1
    (a Docker host): packets a local peer sends to the relay may then be
    redirected to another host. Only this test sets it; what it changes for
    packets arriving on lo is the forwarding of ones addressed elsewhere,
    which no other test sends. Restored at the end."""
    path = "/proc/sys/net/ipv4/conf/lo/forwarding"
    with open(path) as f:
        old = f.read().strip()

    def restore():
        with open(path, "w") as f:
            f.write(old)
    t.at_end(restore)
    with open(path, "w") as f:
        f.write("1")


@case
def test_kernel_path_on_a_second_interface_named_in_kernel_interfaces(t):
    """The same two networks with the room side's interface in
    media.kernel_interfaces: the room's replies are forwarded in the kernel
    too, out of the caller's side."""
    kernel, user = far_media(t, forwarding=True, room_at=FarHost(t), attach_room_side=True)
    check(kernel == 400 and user == 0, "kernel %d, user %d of 400" % (kernel, user))


@case
def test_kernel_interfaces_naming_a_missing_interface(t):
    """media.kernel_interfaces naming no interface of this host: one line
    says which, and the relay thread carries the media."""
    falls_back(t, r"media\.kernel_interfaces names sxfnosuch0, which is not an interface here",
               **{"media.kernel_interfaces": ["sxfnosuch0"]})


@case
def test_kernel_interfaces_change_needs_a_restart(t):
    """SIGHUP with media.kernel_interfaces changed: the program stays where
    it was attached, and one line says a restart is needed."""
    d, room, ids = kernel_daemon(t)
    d.settings["media.kernel_interfaces"] = ["lo"]
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload: media\.kernel_interfaces changed: needs a restart, keeping the old value")
    d.wait_log(r"reloaded ")
    check(d.metric("sipxfer_relay_kernel") == 1, "kernel path off after the reload")
    call = RawCall(d)
    check(call.invite() == 200, "INVITE")
    check(echoed(call, 50) >= 48, "no echo after the reload")
    end_call(call, room, d, ids[1:])


@case
def test_kernel_path_remote_caller_to_a_room_on_this_host(t):
    """A caller on another host and a room on this host's loopback (a voice
    bot beside the daemon), forwarding on. The caller's packets, rewritten
    in the kernel (our address as source, 127.0.0.1 as destination,
    arriving on the veth), would be martians to the stack, dropped after
    being counted, so they take the relay thread (the kernel path once lost
    them all); the room's replies come in on lo and are redirected out of
    the veth. Every packet arrives."""
    lo_forwarding(t)
    kernel, user = far_media(t, forwarding=True, room_at="here")
    check(kernel == 200 and user == 200, "kernel %d, user %d of 400" % (kernel, user))


@case
def test_kernel_path_refuses_an_interface_without_ethernet(t):
    """media.address on an L3 device (a tun, as WireGuard or a VPN would
    be): the program reads an Ethernet header, so it is not attached
    there; one line says why and the relay thread carries the media."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise Skip("needs root and iproute2 for a tun device")
    k = free_number(lambda k: subprocess.run(["ip", "tuntap", "add", "dev", "sxftun%d" % k, "mode",
                                              "tun"], capture_output=True).returncode == 0)
    dev = "sxftun%d" % k
    t.at_end(lambda: subprocess.run(["ip", "link", "del", dev], stderr=subprocess.DEVNULL))
    address = "198.19.%d.1" % k
    _run(["ip", "addr", "add", address + "/32", "dev", dev])
    _run(["ip", "link", "set", dev, "up"])
    falls_back(t, r"media\.address's interface %s is not Ethernet \(link type 65534\)" % dev,
               **{"media.address": address})
