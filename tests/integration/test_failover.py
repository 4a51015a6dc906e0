"""Issue 12 item 3 (SPEC section 10): a trunk's gateways are tried in
order. A gateway that answers 503, sends nothing back, or cannot be
reached (ICMP) before any provisional answer is marked down and the next
one is dialled with a fresh leg; once a gateway sent a provisional answer
its final answer is the transfer's. OPTIONS probes (options_interval) mark
a silent gateway down and bring it back when it answers again; the state
is /metrics' sipxfer_gateway_up{trunk,gateway} and survives SIGHUP."""
import json
import re
import signal
import socket
import threading
import time

from harness import HOST, Webhooks, case, check, free_port, wait_for
from test_transfer import connected_caller, session, transfer, xfer_types
from test_trunk import failed_event, still_on_room_a

NUMBER = "+15557654321"
CALLER_ID = "+15550001111"  # target_pstn.xml checks the From user


def gw_uri(port):
    return "sip:%s:%d" % (HOST, port)


def up(port):
    uri = port if isinstance(port, str) else gw_uri(port)
    return 'sipxfer_gateway_up{trunk="carrier",gateway="%s"}' % uri


def trunk_keys(ports, interval):
    """ports: port numbers (sip:HOST:PORT) or whole gateway URIs."""
    return "gateways = [ %s ]; options_interval = %d;" % (
        ", ".join(json.dumps(p if isinstance(p, str) else gw_uri(p)) for p in ports), interval)


def setup(t, ports, interval=0):
    """A room, a webhook receiver and a daemon whose trunk has the gateways
    on ports (in that order), started."""
    room = t.sipp("room.xml")
    w = Webhooks(t)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)},
                 trunk_extra=trunk_keys(ports, interval),
                 **{"webhooks.url": w.url, "webhooks.secret": w.secret})
    room.start()
    d.start()
    return d, room, w


def failover_lines(d):
    return re.findall(r"gateway \S+ failed \(.*\): trying \S+", d.log_text())


def completed_and_released(d, room, w, sid, gw, c):
    w.wait_type("calltransfer.completed", 20)
    check("calltransfer.failed" not in xfer_types(w, sid), "events: %s" % xfer_types(w, sid))
    room.check_ok(20, "room-a must be released after the transfer")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    gw.check_ok(20, "the second gateway must take the call, then the BYE")
    c.check_ok(20)


@case
def test_failover_unreachable_gateway_then_second(t):
    """Nothing listens on the first gateway's port (ICMP port unreachable):
    the transfer goes to the second gateway, the first is marked down
    (options_interval 0: it stays so). SIGHUP with a third gateway keeps
    the first one's state by trunk and URI, shows the new one up, drops a
    removed one."""
    dead = free_port()
    gw2 = t.sipp("target_pstn.xml")
    d, room, w = setup(t, [dead, gw2.port])
    gw2.start()
    m = d.metrics()
    check(m.get(up(dead)) == 1 and m.get(up(gw2.port)) == 1, "both gateways up at first: %s"
          % {k: v for k, v in m.items() if "gateway" in k})
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER, callerId=CALLER_ID)
    check(st == 200, "transfer: %s %s" % (st, obj))
    completed_and_released(d, room, w, sid, gw2, c)
    lines = failover_lines(d)
    check(len(lines) == 1 and gw_uri(dead) in lines[0] and gw_uri(gw2.port) in lines[0],
          "one failover from the dead gateway to the second: %s" % lines)
    check(d.metric(up(dead)) == 0, "the unreachable gateway must be down")
    check(d.metric(up(gw2.port)) == 1, "the second gateway must be up")

    third = free_port()
    d.trunk_extra = trunk_keys([dead, third], 0)
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reloaded ")
    m = d.metrics()
    check(m.get(up(dead)) == 0, "SIGHUP must keep the known gateway's state: %s" % m.get(up(dead)))
    check(m.get(up(third)) == 1, "a new gateway starts up: %s" % m.get(up(third)))
    check(up(gw2.port) not in m, "a removed gateway leaves /metrics")
    d.check_clean_exit()


@case
def test_failover_tcp_connection_refused_then_second(t):
    """The first gateway is reached over TCP and nobody listens there
    (connection refused: sofia's own 503): the second gateway, over UDP,
    takes the call."""
    dead = "sip:%s:%d;transport=tcp" % (HOST, free_port())
    gw2 = t.sipp("target_pstn.xml")
    d, room, w = setup(t, [dead, gw2.port])
    gw2.start()
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER, callerId=CALLER_ID)
    check(st == 200, "transfer: %s %s" % (st, obj))
    completed_and_released(d, room, w, sid, gw2, c)
    lines = failover_lines(d)
    check(len(lines) == 1 and "503" in lines[0], "one failover after a 503: %s" % lines)
    check(d.metric(up(dead)) == 0, "the refused TCP gateway must be down")
    d.check_clean_exit()


@case
def test_failover_503_then_second(t):
    """The first gateway answers 100 Trying and 503: the second takes the
    call; the first is marked down."""
    gw1 = t.sipp("gateway_503.xml")
    gw2 = t.sipp("target_pstn.xml")
    d, room, w = setup(t, [gw1.port, gw2.port])
    gw1.start()
    gw2.start()
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER, callerId=CALLER_ID)
    check(st == 200, "transfer: %s %s" % (st, obj))
    completed_and_released(d, room, w, sid, gw2, c)
    gw1.check_ok(20, "the first gateway must get its ACK for the 503")
    check(len(failover_lines(d)) == 1, "one failover: %s" % failover_lines(d))
    check(d.metric(up(gw1.port)) == 0, "the gateway that answered 503 must be down")
    d.check_clean_exit()


@case
def test_every_gateway_503_fails_transfer_caller_kept(t):
    """Both gateways answer 503: each is tried once, in order, both are
    marked down, and the transfer fails with the last status (503) while
    the caller stays on room-a."""
    gw1 = t.sipp("gateway_503.xml")
    gw2 = t.sipp("gateway_503.xml")
    d, room, w = setup(t, [gw1.port, gw2.port])
    gw1.start()
    gw2.start()
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.failed", 20)
    p = failed_event(w, sid)
    check(p.get("sip_status") == 503, "failed payload %s" % p)
    gw1.check_ok(20)
    gw2.check_ok(20)
    still_on_room_a(d, sid)
    check(len(failover_lines(d)) == 1, "one failover, then the end: %s" % failover_lines(d))
    check(d.metric(up(gw1.port)) == 0 and d.metric(up(gw2.port)) == 0, "both gateways down")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    room.check_ok(20)
    c.check_ok(20)
    d.check_clean_exit()


@case
def test_no_failover_after_provisional(t):
    """The first gateway rings (180), then answers 486: its answer is the
    answer. No second INVITE (the second gateway's port has no listener: a
    try there would end in 503, not 486), the transfer fails 486, the
    caller stays on room-a and both gateways stay up."""
    gw1 = t.sipp("gateway_ring_busy.xml")
    dead = free_port()
    d, room, w = setup(t, [gw1.port, dead])
    gw1.start()
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.failed", 20)
    p = failed_event(w, sid)
    check(p.get("sip_status") == 486, "failed payload %s" % p)
    gw1.check_ok(20)
    still_on_room_a(d, sid)
    check(not failover_lines(d), "no failover after a 180: %s" % failover_lines(d))
    check("@%s:%d" % (HOST, dead) not in d.log_text(), "the second gateway must not be dialled")
    check(d.metric(up(gw1.port)) == 1 and d.metric(up(dead)) == 1, "both gateways stay up")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    room.check_ok(20)
    c.check_ok(20)
    d.check_clean_exit()


class SilentGateway:
    """A UDP socket on port that reads every request and answers none; the
    start lines it got are in .requests."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, port))
        self.requests = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.requests.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))

    def methods(self):
        return [r.split(" ", 1)[0] for r in list(self.requests)]

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@case
def test_failover_silent_gateway_after_response_timeout(t):
    """The first gateway reads the INVITE and sends nothing back, not even
    100 Trying: after the gateway response timeout (4 s, well inside
    ring_timeout) the second gateway is dialled and takes the call; the
    silent one is marked down."""
    p1 = free_port()
    silent = SilentGateway(p1)
    try:
        gw2 = t.sipp("target_pstn.xml")
        gw2.start()
        d, room, w = setup(t, [p1, gw2.port])
        c, sid = connected_caller(t, d)
        st, obj = transfer(d, "room-a", sid, NUMBER, callerId=CALLER_ID)
        check(st == 200, "transfer: %s %s" % (st, obj))
        completed_and_released(d, room, w, sid, gw2, c)
        check("INVITE" in silent.methods(), "the silent gateway got no INVITE: %s"
              % silent.requests)
        lines = failover_lines(d)
        check(len(lines) == 1 and "no response to an INVITE" in lines[0], "failover: %s" % lines)
        check(d.metric(up(p1)) == 0, "the silent gateway must be down")
        d.check_clean_exit()
    finally:
        silent.close()


@case
def test_only_gateway_silent_fails_408_and_leg_dropped(t):
    """The trunk's only gateway never answers the INVITE: the transfer
    fails 408 after the gateway response timeout, the caller stays on
    room-a, and the silent leg is dropped at once (the daemon then exits on
    SIGTERM without waiting out the INVITE transaction's 32 s)."""
    p1 = free_port()
    silent = SilentGateway(p1)
    try:
        d, room, w = setup(t, [p1])
        c, sid = connected_caller(t, d)
        st, obj = transfer(d, "room-a", sid, NUMBER)
        check(st == 200, "transfer: %s %s" % (st, obj))
        w.wait_type("calltransfer.failed", 20)
        p = failed_event(w, sid)
        check(p.get("sip_status") == 408, "failed payload %s" % p)
        still_on_room_a(d, sid)
        check(d.metric(up(p1)) == 0, "the silent gateway must be down")
        d.api("DELETE", "/v1/sessions/%s" % sid)
        room.check_ok(20)
        c.check_ok(20)
        d.check_clean_exit()
    finally:
        silent.close()


@case
def test_options_probe_down_and_back_up(t):
    """options_interval 1: the first gateway stops answering (a socket that
    reads OPTIONS and answers nothing): marked down, and the next transfer
    goes straight to the second gateway (no INVITE to the first, no
    failover). When a SIPp UAS answers its OPTIONS again it is marked up."""
    p1 = free_port()
    silent = SilentGateway(p1)
    try:
        gw2 = t.sipp("gateway_pstn_options.xml", calls=100000)
        gw2.start()
        d, room, w = setup(t, [p1, gw2.port], interval=1)
        d.wait_metric(up(p1), 0, 15)
        check("OPTIONS" in silent.methods(), "the silent gateway got no OPTIONS: %s"
              % silent.requests)
        d.wait_log(r"gateway %s is down \(no answer to OPTIONS\)" % re.escape(gw_uri(p1)))
        check(d.metric(up(gw2.port)) == 1, "the answering gateway must be up")

        c, sid = connected_caller(t, d)
        st, obj = transfer(d, "room-a", sid, NUMBER)
        check(st == 200, "transfer: %s %s" % (st, obj))
        w.wait_type("calltransfer.completed", 20)
        check("INVITE" not in silent.methods(), "a gateway that is down must be skipped: %s"
              % silent.requests)
        check(not failover_lines(d), "straight to the second gateway: %s" % failover_lines(d))
        check(re.search(r"INVITE sip:\+15557654321@%s:%d" % (re.escape(HOST), gw2.port),
                        d.log_text()), "the INVITE must go to the second gateway")
        room.check_ok(20)
    finally:
        silent.close()

    back = t.sipp("gateway_options.xml", port=p1, calls=100000)
    back.start()
    d.wait_metric(up(p1), 1, 15)
    d.wait_log(r"gateway %s is up \(OPTIONS answered 200" % re.escape(gw_uri(p1)))
    d.api("DELETE", "/v1/sessions/%s" % sid)
    c.check_ok(20)
    d.check_clean_exit()


class LateGateway(SilentGateway):
    """Reads the first INVITE, says nothing for `delay` seconds (past the
    gateway response timeout), then answers it 200 OK with SDP from the same
    socket, as a slow carrier would; every request it gets is in .requests."""

    def __init__(self, port, delay=5.0):
        self.delay = delay
        self.answered = threading.Event()
        super().__init__(port)

    def _run(self):
        self.sock.settimeout(0.1)
        first = None
        due = None
        while not self._stop:
            if first and due is not None and time.monotonic() >= due:
                due = None
                self.sock.sendto(self._ok(first[0]), first[1])
                self.answered.set()
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.requests.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
            if data.startswith(b"INVITE ") and first is None:
                first = (data, addr)
                due = time.monotonic() + self.delay

    def _ok(self, inv):
        head = inv.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        keep = []
        for h in head[1:]:
            name = h.split(":", 1)[0].strip().lower()
            if name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                keep.append(h)
            elif name in ("to", "t"):
                keep.append(h + ";tag=late")
        port = self.sock.getsockname()[1]
        sdp = ("v=0\r\no=gw 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
               "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" % (HOST, HOST, free_port()))
        return ("\r\n".join(["SIP/2.0 200 OK"] + keep +
                            ["Contact: <sip:gw@%s:%d>" % (HOST, port),
                             "Content-Type: application/sdp",
                             "Content-Length: %d" % len(sdp)]) + "\r\n\r\n" + sdp).encode()


@case
def test_late_answer_from_a_gateway_given_up_is_acked_and_ended(t):
    """The first gateway answers 200 OK only after the gateway response
    timeout, when the second already has the call: that late dialog must
    not stay up at the carrier (a billed call with nobody on it). sipxferd
    ACKs it and ends it with BYE; the transfer still completes on the
    second gateway."""
    p1 = free_port()
    late = LateGateway(p1, delay=5.0)
    try:
        gw2 = t.sipp("target_pstn.xml")
        gw2.start()
        d, room, w = setup(t, [p1, gw2.port])
        c, sid = connected_caller(t, d)
        st, obj = transfer(d, "room-a", sid, NUMBER, callerId=CALLER_ID)
        check(st == 200, "transfer: %s %s" % (st, obj))
        check(late.answered.wait(15), "the late gateway never answered")
        wait_for(lambda: "BYE" in late.methods(), 10,
                 "the late 200 must be ACKed and ended with BYE: %s" % late.requests)
        check("ACK" in late.methods(), "ACK for the late 200: %s" % late.requests)
        completed_and_released(d, room, w, sid, gw2, c)
        d.check_clean_exit()
    finally:
        late.close()
