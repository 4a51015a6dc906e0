"""RFC 4733 telephone-events across two legs that numbered them differently
(issue 12 item 7): the relay rewrites the payload type, audio is left alone."""
import socket
import time

from harness import HOST, RawCall, case, check
from test_transfer import setup, transfer


def payload_types(sock, want, timeout):
    """Payload types of the RTP packets that reach sock, until want came."""
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            pkt, _ = sock.recvfrom(2048)
        except OSError:
            break
        if len(pkt) >= 12 and pkt[0] & 0xc0 == 0x80:
            got.append(pkt[1] & 0x7f)
    return got


@case
def test_telephone_event_payload_type_mapped_to_the_target(t):
    """The caller uses 101 for telephone-event, the transfer target 96: the
    caller's 101 packets reach the target as 96, PCMU (0) unchanged."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    target = t.sipp("target_dtmf96.xml", keys={"rtp_port": sink.getsockname()[1]})
    target.start()
    d, rooms, w = setup(t, rooms=("room-a",))
    call = RawCall(d)
    try:
        check(call.invite() == 200, "call")
        sid = d.wait_session()[0]
        st, obj = transfer(d, "room-a", sid, "sip:ivr@%s:%d" % (HOST, target.port))
        check(st == 200, "transfer %s %s" % (st, obj))
        # the target's formats differ from room-a's: the caller is re-INVITEd
        # (and answers with its own numbering, 101, as many UAs do)
        check(call.serve_until("INVITE", 10) is not None, "no re-INVITE to the caller")
        w.wait_type("calltransfer.completed")
        call.send_rtp(5, pt=101, ssrc=0x101)
        got = payload_types(sink, 5, 5)
        check(got == [96] * 5, "telephone-event payload types at the target: %s" % got)
        call.send_rtp(5, pt=0, ssrc=0x0)
        got = payload_types(sink, 5, 5)
        check(got == [0] * 5, "PCMU payload types at the target: %s" % got)
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
        sink.close()
    target.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()
