"""Issue 10 item 8: no RTP bleed. The relay latches a leg's stream only onto
the leg's SDP address, the address its SIP came from (any port: NAT) or its
trunk's media_sources; anyone else is dropped and counted, also once the
stream has gone quiet (SPEC section 9)."""
import socket
import time

from harness import HOST, RawCall, case, check, parse_response, wait_for
from test_core import room_daemon

FOREIGN = 'sipxfer_relay_dropped_total{reason="foreign-source"}'
CALLER_SSRC = 0x1234abcd
STRANGER_SSRC = 0x0badf00d


class Stranger:
    """RTP from an address that has nothing to do with the call."""

    def __init__(self, ip="127.0.0.9"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))

    def send_rtp(self, dst, count):
        for i in range(count):
            hdr = bytes([0x80, 0]) + (i + 1).to_bytes(2, "big") + (i * 160).to_bytes(4, "big") + \
                STRANGER_SSRC.to_bytes(4, "big")
            self.sock.sendto(hdr + b"\x55" * 160, dst)
            time.sleep(0.002)  # pacing, not synchronisation

    def received(self, timeout):
        """Packets that reached the stranger within timeout (none expected:
        the wait is the length of the check)."""
        n = 0
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                self.sock.recvfrom(2048)
                n += 1
            except (socket.timeout, OSError):
                break
        return n

    def close(self):
        self.sock.close()


def ssrcs_received(call, timeout, want):
    """SSRCs of the RTP packets the caller receives, until `want` came or
    timeout."""
    return call.rtp_ssrcs(timeout, want)


def echoed(call, count, timeout=5):
    """The caller sends count packets to the echoing room; how many of its
    own came back. Anything else coming back is a failure."""
    call.send_rtp(count, ssrc=CALLER_SSRC)
    got = ssrcs_received(call, timeout, count)
    check(all(s == CALLER_SSRC for s in got),
          "the caller heard packets that are not its own echo: %s" %
          sorted({hex(s) for s in got}))
    return len(got)


def handled(d):
    """Packets the relay has dealt with, forwarded or dropped."""
    m = d.metrics()
    return (m.get("sipxfer_relay_packets_forwarded_total", 0) +
            m.get("sipxfer_relay_packets_dropped_total", 0))


def stranger_sends(d, stranger, dst, count):
    """The stranger's packets, sent and seen by the relay (whatever it did
    with them: the checks that follow say)."""
    before = handled(d)
    stranger.send_rtp(dst, count)
    wait_for(lambda: handled(d) >= before + count, 10, "the relay to take %d packets" % count)


def leg_media(d, sid):
    st, s = d.api("GET", "/v1/sessions/%s" % sid)
    check(st == 200, "GET session: %s %s" % (st, s))
    return s["media"]


def end(call, room, d):
    check(call.bye() == 200, "BYE")
    call.close()
    room.check_ok(30)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_stranger_first_is_never_latched(t):
    """Five packets from a stranger before the caller's first: the caller
    still gets the room, the room gets only the caller."""
    d, room = room_daemon(t, echo=True)
    call = RawCall(d)
    stranger = Stranger()
    try:
        check(call.invite() == 200, "INVITE")
        sid = d.wait_session()[0]
        stranger_sends(d, stranger, call.remote_media, 5)
        n = echoed(call, 50)
        check(n >= 45, "only %d of 50 packets came back to the real caller" % n)
        check(stranger.received(0.5) == 0, "the stranger received the room's audio")
        media = leg_media(d, sid)
        check(media["caller"]["rxPackets"] <= 50,
              "the caller-side relay port took %d packets for 50 sent by the caller: the "
              "stranger's went in" % media["caller"]["rxPackets"])
        check(d.metric(FOREIGN) == 5, "%s = %s" % (FOREIGN, d.metric(FOREIGN)))
        # one line for the port, not one per packet
        d.wait_log(r"SECURITY foreign-rtp src=127\.0\.0\.9:\d+ \[%s\]" % sid)
        check(d.log_text().count("SECURITY foreign-rtp") == 1, "foreign-rtp logged more than once")
    finally:
        stranger.close()
    end(call, room, d)


@case
def test_quiet_stream_not_taken_over(t):
    """The caller's stream goes quiet for more than the re-latch period; a
    stranger who sends then is dropped, and the caller keeps its stream."""
    d, room = room_daemon(t, echo=True)
    call = RawCall(d)
    stranger = Stranger()
    try:
        check(call.invite() == 200, "INVITE")
        check(echoed(call, 20) >= 18, "no echo before the quiet period")
        # the quiet period (1 s in relay.c) is the condition under test:
        # there is no event to wait for, only time to let pass
        time.sleep(1.5)
        stranger_sends(d, stranger, call.remote_media, 10)
        check(stranger.received(0.5) == 0, "the stranger took over the quiet stream")
        check(ssrcs_received(call, 0.3, 1) == [], "the stranger's packets reached the room")
        n = echoed(call, 20)
        check(n >= 18, "the caller lost its stream to the stranger: %d of 20 echoed" % n)
        check(d.metric(FOREIGN) == 10, "%s = %s" % (FOREIGN, d.metric(FOREIGN)))
    finally:
        stranger.close()
    end(call, room, d)


@case
def test_stranger_dropped_while_caller_on_hold(t):
    """Hold (c=0.0.0.0) clears the latch; a stranger sending then is still
    not latched."""
    d, room = room_daemon(t, echo=True)
    call = RawCall(d)
    stranger = Stranger()
    try:
        check(call.invite() == 200, "INVITE")
        check(echoed(call, 10) >= 9, "no echo before hold")
        # a new o= version each time, or sipxferd answers it as a refresh
        hold = call.sdp().replace(b"c=IN IP4 %s" % HOST.encode(), b"c=IN IP4 0.0.0.0") \
            .replace(b"o=raw 1 1", b"o=raw 1 2") + b"a=sendonly\r\n"
        check(reinvite(call, hold) == 200, "hold re-INVITE")
        d.wait_log("re-INVITE from the caller leg forwarded")
        sid = d.wait_session()[0]
        to_room = leg_media(d, sid)["room"]["txPackets"]
        stranger_sends(d, stranger, call.remote_media, 10)
        check(stranger.received(0.5) == 0, "the stranger was latched while the caller was held")
        check(leg_media(d, sid)["room"]["txPackets"] == to_room,
              "the stranger's packets went into the room during hold")
        check(d.metric(FOREIGN) == 10, "%s = %s" % (FOREIGN, d.metric(FOREIGN)))
        check(reinvite(call, call.sdp().replace(b"o=raw 1 1", b"o=raw 1 3")) == 200,
              "unhold re-INVITE")
        call.drain_rtp()
        n = echoed(call, 20)
        check(n >= 18, "after unhold only %d of 20 echoed" % n)
    finally:
        stranger.close()
    end(call, room, d)


def reinvite(call, body, timeout=10):
    """An in-dialog INVITE with body from the raw caller, ACKed; its status."""
    call.cseq += 1
    cseq = call.cseq
    call._send_in_dialog("INVITE", cseq=cseq, body=body, ctype="application/sdp")
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = call.s.recv(max(0.01, deadline - time.time()))
        if data is None:
            return None
        r = parse_response(data)
        if not r:
            call._answer(data)
            continue
        if r[0] >= 200 and "INVITE" in r[2].get("cseq", [""])[0]:
            call._send_in_dialog("ACK", cseq=cseq)
            return r[0]
    return None


@case
def test_nat_caller_media_from_its_sip_address(t):
    """A caller behind NAT: its SDP names a private address (127.0.0.5), its
    RTP comes from the address its SIP came from. Latched and forwarded."""
    d, room = room_daemon(t, echo=True)
    call = RawCall(d, sdp_host="127.0.0.5")
    check(call.invite() == 200, "INVITE")
    n = echoed(call, 30)
    check(n >= 27, "only %d of 30 packets from the NATed caller came back" % n)
    check(d.metric(FOREIGN) == 0, "%s = %s" % (FOREIGN, d.metric(FOREIGN)))
    end(call, room, d)


def with_media_sources(d, nets):
    """The daemon's trunk gets media_sources (the harness writes no such key)."""
    with open(d.conf) as f:
        text = f.read()
    key = 'name = "carrier";'
    check(key in text, "trunk not found in the generated config")
    text = text.replace(key, '%s media_sources = [ %s ];' % (
        key, ", ".join('"%s"' % n for n in nets)), 1)
    with open(d.conf, "w") as f:
        f.write(text)


@case
def test_carrier_media_from_media_sources(t):
    """A carrier whose media leaves from another address (127.0.0.7) than
    its signalling and SDP (127.0.0.1): accepted through the trunk's
    media_sources; an address outside them still is not."""
    room = t.sipp("room.xml", echo=True)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    with_media_sources(d, ["127.0.0.7/32"])
    room.start()
    d.start()
    call = RawCall(d)
    # the media socket on the carrier's media address; the SDP still says
    # 127.0.0.1 and the same port
    call.rtp.close()
    call.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    call.rtp.bind(("127.0.0.7", 0))
    stranger = Stranger("127.0.0.8")
    try:
        check(call.invite() == 200, "INVITE")
        stranger_sends(d, stranger, call.remote_media, 5)
        n = echoed(call, 30)
        check(n >= 27, "only %d of 30 packets from the carrier's media address came back" % n)
        check(stranger.received(0.3) == 0, "127.0.0.8 received the room's audio")
        check(d.metric(FOREIGN) == 5, "%s = %s" % (FOREIGN, d.metric(FOREIGN)))
    finally:
        stranger.close()
    end(call, room, d)


NOT_LATCHED = 'sipxfer_relay_dropped_total{reason="not-latched"}'
SDP_SIDE_SSRC = 0x5d95d950


def rtp_packet(seq, ssrc):
    return bytes([0x80, 0]) + (seq & 0xffff).to_bytes(2, "big") + \
        (seq * 160).to_bytes(4, "big") + ssrc.to_bytes(4, "big") + b"\xff" * 160


@case
def test_latch_follows_port_at_once_other_allowed_ip_after_quiet(t):
    """The latched IP may change port at once (NAT rebinding). Another
    allowed IP (here the SDP address of a NATed caller) is held off while
    the latched source is live and takes over only after 1 s of quiet."""
    d, room = room_daemon(t, echo=True)
    call = RawCall(d, sdp_host="127.0.0.5")
    sdp_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sdp_side.bind(("127.0.0.5", 0))
    try:
        check(call.invite() == 200, "INVITE")
        check(echoed(call, 10) >= 9, "no echo from the first port")
        # the NAT gives the caller a new port: its echo follows at once
        call.rtp.close()
        call.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        call.rtp.bind((HOST, 0))
        check(echoed(call, 10) >= 9, "the echo did not follow the caller's new port")
        # interleaved with the live caller: every SDP-address packet held off
        for i in range(10):
            call.rtp.sendto(rtp_packet(100 + i, CALLER_SSRC), call.remote_media)
            sdp_side.sendto(rtp_packet(200 + i, SDP_SIDE_SSRC), call.remote_media)
            time.sleep(0.002)  # pacing, not synchronisation
        wait_for(lambda: d.metric(NOT_LATCHED) == 10, 10, "10 not-latched drops")
        got = ssrcs_received(call, 5, 10)
        check(got and all(s == CALLER_SSRC for s in got), "the caller's echo: %s" %
              sorted({hex(s) for s in got}))
        # the quiet period (1 s in relay.c) is the condition under test
        time.sleep(1.5)
        for i in range(10):
            sdp_side.sendto(rtp_packet(300 + i, SDP_SIDE_SSRC), call.remote_media)
            time.sleep(0.002)
        n = 0
        deadline = time.time() + 5
        while n < 10 and time.time() < deadline:
            sdp_side.settimeout(max(0.01, deadline - time.time()))
            try:
                data, _ = sdp_side.recvfrom(2048)
            except (socket.timeout, OSError):
                break
            n += int.from_bytes(data[8:12], "big") == SDP_SIDE_SSRC
        check(n >= 9, "after the quiet period the SDP address got %d of 10 echoed" % n)
        check(d.metric(NOT_LATCHED) == 10 and d.metric(FOREIGN) == 0,
              "drops: not-latched %s foreign %s" % (d.metric(NOT_LATCHED), d.metric(FOREIGN)))
    finally:
        sdp_side.close()
    end(call, room, d)
