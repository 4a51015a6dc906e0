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


def linear_to_ulaw(x):
    """16-bit sample -> G.711 mu-law byte."""
    sign = 0x80 if x < 0 else 0
    x = min(abs(x), 32635) + 0x84
    exp = 7
    while exp > 0 and not x & (0x4000 >> (7 - exp)):
        exp -= 1
    return ~(sign | (exp << 4) | ((x >> (exp + 3)) & 0x0F)) & 0xFF


def send_tone(call, secs, freq=440, amp=8000):
    """PCMU RTP at real-time pace (20 ms packets) from the RawCall's socket
    to the media address sipxferd answered with."""
    import math
    import struct
    import time
    n = int(secs * 50)
    t0 = time.monotonic()
    for i in range(n):
        payload = bytes(linear_to_ulaw(int(amp * math.sin(2 * math.pi * freq * (i * 160 + k) /
                                                            8000))) for k in range(160))
        hdr = struct.pack("!BBHII", 0x80, 0, (i + 1) & 0xFFFF, i * 160, 0x5EC0DE)
        call.rtp.sendto(hdr + payload, call.remote_media)
        # media pacing (a receiver's jitter buffer expects 20 ms packets),
        # not a wait for an event
        delay = t0 + (i + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def wav_samples(path):
    """(rate, mono 16-bit samples) of a WAV file baresip's sndfile wrote."""
    import struct
    import wave
    with wave.open(path, "rb") as w:
        rate, ch, raw = w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())
    samples = struct.unpack("<%dh" % (len(raw) // 2), raw[:len(raw) // 2 * 2])
    return rate, list(samples[::ch])


@case
def test_plain_caller_to_an_srtp_room_over_tls(t):
    """Issue 13 item 3, the other way round: a plain-RTP caller over UDP is
    bridged to a room reached over TLS (baresip auto-answering with
    mediaenc=srtp). Under media.srtp = "allow" sipxferd offers the room
    its key (best effort: RTP/AVP with a=crypto), takes the room's key from
    the answer and encrypts toward it: baresip decodes the caller's 440 Hz
    tone (its sndfile dump), and sipxferd decrypts what baresip sends."""
    import glob
    from harness import RawCall, Daemon, free_port, wait_for
    from test_public import make_certs
    agent, ca = make_certs(t)
    dumps = t.path("dumps")
    os.makedirs(dumps)
    b = start_baresip_room(t, agent, ca, dumps)
    tls_port = free_port(udp=False)
    d = Daemon(t, rooms={"room-a": "sip:room@%s:%d;transport=tls" % (HOST, b.tls_port)},
               **{"media.srtp": "allow"})
    d.settings["sip.listen"] = ["sip:%s:%d" % (HOST, d.sip_port), "sips:%s:%d" % (HOST, tls_port)]
    d.settings["sip.tls"] = {"certificate": agent, "ca": ca}
    d.write_config()
    d.start()
    call = RawCall(d)
    try:
        st = call.invite(timeout=15)
        check(st == 200, "the plain caller's INVITE: %s" % st)
        check(b"a=crypto" not in call.final[3] and b"RTP/AVP" in call.final[3],
              "plain RTP, no keys toward the UDP caller: %r" % call.final[3])
        send_tone(call, 2.0)
        wait_for(lambda: d.metric("sipxfer_srtp_decrypted_total") >= 20, 10,
                 "SRTP from the room decrypted")
        check(d.metric("sipxfer_srtp_auth_failures_total") == 0, "authentication failures")
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    d.wait_idle()
    wav = wait_for(lambda: [f for f in glob.glob(os.path.join(dumps, "*dec.wav"))
                            if os.path.getsize(f) > 8000], 10, "baresip's decoded audio dump")
    rate, samples = wav_samples(wav[0])
    check(len(samples) >= rate, "baresip decoded %d samples at %d Hz" % (len(samples), rate))
    tail = samples[-rate:]  # the last second: past the jitter buffer's start
    peak = max(abs(x) for x in tail)
    p440, p1000 = tone_power(tail, 440, rate), tone_power(tail, 1000, rate)
    t.note("room decoded: %d Hz, peak %d, power at 440 Hz %.2f, at 1 kHz %.3f" % (
        rate, peak, p440, p1000))
    check(peak > 1000 and p440 > 0.5 and p1000 < 0.05,
          "baresip did not hear the caller's tone: peak %d, 440 Hz %.2f, 1 kHz %.2f" % (
              peak, p440, p1000))
    b.terminate()
    d.check_clean_exit()


def start_baresip_room(t, agent, ca, dumps):
    """baresip as a room over TLS: auto-answers, mediaenc=srtp (best
    effort), its decoded audio dumped into dumps by the sndfile module; its
    TLS port is .tls_port."""
    exe = shutil.which("baresip")
    if not exe:
        raise Skip("baresip not installed (scripts/setup.sh installs it)")
    conf = t.path("baresip-room")
    os.makedirs(conf)
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port(span=2)
        rtp = free_port(tcp=False, even=True, span=10)
        with open(os.path.join(conf, "config"), "w") as f:
            f.write(BARESIP_CONFIG.format(host=HOST, port=port, rtp=rtp, rtp_end=rtp + 9) +
                    "module srtp.so\nmodule sndfile.so\nsnd_path %s\nsip_cafile %s\n"
                    "sip_certificate %s\n" % (dumps, ca, agent))
        with open(os.path.join(conf, "accounts"), "w") as f:
            f.write("<sip:room@%s:%d;transport=tls>;regint=0;mediaenc=srtp;answermode=auto\n"
                    % (HOST, port))
        ports = [("udp", port), ("tcp", port), ("tcp", port + 1)]
        try:
            p = start_process(t, [exe, "-f", conf, "-t", "60"], "baresip-room-%d" % attempt,
                              lambda p: bound_by(p.pid, ports), what="baresip room on %d" % port)
            p.tls_port = port + 1
            return p
        except StartFailure as e:
            if not e.address_in_use or attempt == START_ATTEMPTS:
                raise
            t.note("baresip room attempt %d lost a port, retried: %s" % (attempt, e.race_line()))


@case
def test_dialout_to_an_srtp_far_end_over_tls(t):
    """Issue 14 with 13: dialOut/start to a SIP URI with ;transport=tls
    (baresip auto-answering, mediaenc=srtp, its 440 Hz ausine tone) under
    media.srtp = "allow": the far end is offered our key over TLS, its SRTP
    is decrypted in the relay and reaches the plain room as PCMU carrying
    the tone; no authentication failure; DELETE ends both legs."""
    from harness import Webhooks, wait_for
    from test_public import tls_daemon
    sink = RtpSink()
    b = None
    try:
        w = Webhooks(t)
        d, room = tls_daemon(t, "room_sink.xml", keys={"sink_port": sink.port},
                             **{"media.srtp": "allow", "webhooks.url": w.url,
                                "webhooks.secret": w.secret})
        d.start()
        dumps = t.path("dumps")
        os.makedirs(dumps)
        b = start_baresip_room(t, d.agent, d.ca, dumps)
        st, obj = d.api("POST", "/v1/rooms/room-a/dialOut/start",
                        {"sipUri": "sip:room@%s:%d;transport=tls" % (HOST, b.tls_port)})
        check(st == 200, "dialOut/start: %s %s" % (st, obj))
        sid = obj["sessionId"]
        w.wait_type("dialout.answered", 20)
        wait_for(lambda: len(sink.pcmu()) >= 8000, 15,
                 "one second of PCMU at the room (got %d packets)" % len(sink.packets))
        samples = sink.pcmu()[-8000:]
        peak = max(abs(x) for x in samples)
        p440, p1000 = tone_power(samples, 440), tone_power(samples, 1000)
        t.note("room audio from the SRTP far end: peak %d, 440 Hz %.2f, 1 kHz %.3f" % (
            peak, p440, p1000))
        check(peak > 1000 and p440 > 0.5 and p1000 < 0.05,
              "the room did not get the far end's tone: peak %d, 440 Hz %.2f, 1 kHz %.2f" % (
                  peak, p440, p1000))
        check(d.metric("sipxfer_srtp_decrypted_total") >= 50, "decrypted packets: %s" %
              d.metric("sipxfer_srtp_decrypted_total"))
        check(d.metric("sipxfer_srtp_auth_failures_total") == 0, "authentication failures")
        st, _ = d.api("DELETE", "/v1/sessions/%s" % sid)
        check(st == 200, "DELETE: %s" % st)
        room.check_ok(20, "room must get BYE")
        w.wait_type("dialout.stopped", 20)
        d.wait_idle()
        d.check_clean_exit()
    finally:
        if b:
            b.terminate()
        sink.close()
