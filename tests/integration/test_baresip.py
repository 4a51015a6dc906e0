"""Issue 4 end to end: baresip is the caller's side of a sipRefer. It gets
the REFER, places the new call to a SIPp target itself, reports by NOTIFY,
and sipxferd leaves the path with no call and no relay port left."""
import os
import shutil

from harness import (HOST, START_ATTEMPTS, Skip, StartFailure, bound_by, case, check,
                     free_port, start_process)
from test_refer import outcome
from test_transfer import session, setup, transfer

BARESIP_CONFIG = """poll_method epoll
sip_listen {host}:{port}
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
auplay_channels 1
auplay_srate 48000
audio_player aufile,/dev/null
audio_alert aufile,/dev/null
rtp_ports {rtp}-{rtp_end}
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module aufile.so
module_app account.so
module_app menu.so
"""


def start_baresip(t, dial, config="", account=""):
    """baresip calling dial; config: extra config lines; account: extra
    account parameters (';mediaenc=srtp-mand') and a transport for its
    address (';transport=tls' goes inside the brackets)."""
    exe = shutil.which("baresip")
    if not exe:
        raise Skip("baresip not installed (scripts/setup.sh installs it)")
    conf = t.path("baresip")
    os.makedirs(conf)
    for attempt in range(1, START_ATTEMPTS + 1):
        # baresip listens on port for UDP and TCP and on port+1 for TLS
        port = free_port(span=2)
        rtp = free_port(tcp=False, even=True, span=10)
        with open(os.path.join(conf, "config"), "w") as f:
            f.write(BARESIP_CONFIG.format(host=HOST, port=port, rtp=rtp, rtp_end=rtp + 9) +
                    config)
        uri_params, _, acc_params = account.partition(">")
        with open(os.path.join(conf, "accounts"), "w") as f:
            f.write("<sip:alice@%s:%d%s>;regint=0%s\n" % (HOST, port, uri_params, acc_params))
        ports = [("udp", port), ("tcp", port), ("tcp", port + 1)]
        try:
            # -t: baresip quits by itself should the test leave it behind
            return start_process(t, [exe, "-f", conf, "-t", "60", "-e", "/dial " + dial],
                                 "baresip-%d" % attempt, lambda p: bound_by(p.pid, ports),
                                 what="baresip on port %d" % port)
        except StartFailure as e:
            if not e.address_in_use or attempt == START_ATTEMPTS:
                raise
            t.note("baresip attempt %d lost a port, retried on fresh ones: %s" % (
                attempt, e.race_line()))


@case
def test_baresip_carries_out_refer(t):
    target = t.sipp("target_baresip.xml", duration=500)
    target.start()
    d, rooms, w = setup(t, rooms=("room-a",))
    b = start_baresip(t, "sip:room-a@%s" % d.uri_host)
    sid = d.wait_session(timeout=15)[0]
    from harness import wait_for
    wait_for(lambda: (session(d, sid) or {}).get("state") == "connected", 15, "connected")
    st, obj = transfer(d, "room-a", sid, "sip:bob@%s:%d" % (HOST, target.port), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    outcome(w, sid, "calltransfer.completed")
    rooms["room-a"].check_ok(20, "room must get BYE")
    d.wait_idle()
    check(d.metric("sipxfer_relay_ports_in_use") == 0, "relay ports left")
    target.check_ok(30, "target must be called by baresip (User-Agent) and hang up")
    check(b.poll() is None or b.returncode == 0, "baresip exited %s" % b.returncode)
    b.terminate()
    d.check_clean_exit()


def ulaw_to_linear(b):
    """G.711 mu-law byte -> 16-bit sample."""
    b = ~b & 0xFF
    mag = ((b & 0x0F) << 3) + 0x84
    mag <<= (b & 0x70) >> 4
    return (0x84 - mag) if b & 0x80 else (mag - 0x84)


def tone_power(samples, freq, rate=8000):
    """Goertzel: the power at freq relative to the signal's whole power
    (1.0 = a pure tone there, ~0 = nothing of it)."""
    import math
    k = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    energy = sum(x * x for x in samples) or 1.0
    return 2 * power / (len(samples) * energy)


class RtpSink:
    """The room's media port: records every RTP packet sent to it."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.packets = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, _ = self.sock.recvfrom(2048)
            except OSError:
                continue
            self.packets.append(data)

    def pcmu(self):
        """Decoded samples of the PCMU packets (payload type 0), in order."""
        out = []
        for p in list(self.packets):
            if len(p) > 12 and p[0] >> 6 == 2 and p[1] & 0x7F == 0:
                skip = 12 + 4 * (p[0] & 0x0F)
                out.extend(ulaw_to_linear(b) for b in p[skip:])
        return out

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@case
def test_baresip_srtp_over_tls_to_a_plain_rtp_room(t):
    """Issue 13 item 4: baresip calls over SIP/TLS with mediaenc=srtp-mand
    and a 440 Hz tone from ausine; sipxferd (media.srtp = require) takes
    the SDES offer, terminates SRTP in the relay and bridges to a room with
    plain RTP/AVP: the room receives non-silent PCMU that carries the tone,
    and sipxferd counts decrypted packets and no authentication failure."""
    from harness import wait_for
    from test_public import tls_daemon
    sink = RtpSink()
    try:
        d, room = tls_daemon(t, "room_sink.xml", keys={"sink_port": sink.port},
                             **{"media.srtp": "require"})
        d.start()
        b = start_baresip(
            t, "sip:room-a@%s:%d;transport=tls" % (HOST, d.tls_port),
            # its own TLS server needs a certificate: our BYE opens a new
            # connection to its Contact (the test's one serves)
            config="module srtp.so\nsip_cafile %s\nsip_certificate %s\n" % (d.ca, d.agent),
            account=";transport=tls>;mediaenc=srtp-mand")
        sid = d.wait_session(timeout=15)[0]
        wait_for(lambda: (session(d, sid) or {}).get("state") == "connected", 15, "connected")
        wait_for(lambda: len(sink.pcmu()) >= 8000, 15,
                 "one second of PCMU at the room (got %d packets)" % len(sink.packets))
        samples = sink.pcmu()[-8000:]
        peak = max(abs(x) for x in samples)
        check(peak > 1000, "the room's audio is silent (peak %d)" % peak)
        p440 = tone_power(samples, 440)
        p1000 = tone_power(samples, 1000)
        check(p440 > 0.5 and p1000 < 0.05,
              "the room's audio is not the 440 Hz tone: power at 440 Hz %.2f, at 1 kHz %.2f"
              % (p440, p1000))
        t.note("room audio: peak %d, power at 440 Hz %.2f, at 1 kHz %.3f; %d packets" % (
            peak, p440, p1000, len(sink.packets)))
        check(d.metric("sipxfer_srtp_decrypted_total") >= 50, "decrypted packets: %s" %
              d.metric("sipxfer_srtp_decrypted_total"))
        check(d.metric("sipxfer_srtp_auth_failures_total") == 0, "authentication failures")
        d.api("DELETE", "/v1/sessions/%s" % sid)
        room.check_ok(20, "room must get BYE")
        d.wait_idle()
        b.terminate()
        d.check_clean_exit()
    finally:
        sink.close()
