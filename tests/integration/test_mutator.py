"""Hardening item 2: a bounded network mutator.

Seeds: the torture files (SHARED/torture, when present) plus a few valid
messages built with harness.build_request (OPTIONS, INVITE with SDP to a
room and to an unknown user, REGISTER, BYE). With a fixed random seed
(printed; override with SIPXFER_MUTATOR_SEED) N messages are derived by
1-3 random mutations each (byte flips, truncation, duplicated header lines,
huge header values up to 60 KB, random Content-Length, NUL/CR/LF injection,
deleted CRLFs, spliced messages) and sent, mostly as UDP datagrams, some over
TCP (always TCP for messages too big for one datagram). Every 25 messages and
at the end the daemon must be alive and answer OPTIONS with 200 within
PROBE_MS; the daemon runs under a DNS server that never answers (where
harness.BlackholeDns can be set up), so a mutant that made the control
thread resolve a name would show as a slow probe; at the end
no call may be left, the exit must be clean and VmRSS must not have grown by
more than RSS_LIMIT_KB.

The room is a tiny UDP responder in this test that refuses every INVITE with
486, so mutated INVITEs that get through exercise the B2BUA and relay paths
and still end quickly.
"""
import glob
import os
import random
import re
import socket
import threading
import time

import harness
from harness import HOST, SHARED, build_request, case, check

N = int(os.environ.get("SIPXFER_MUTATOR_COUNT", "3000"))
PROBE_EVERY = 25
PROBE_MS = 200  # every probe answered within this (issue 10: nothing may stall the loop)
# Under ASan the latency bound says nothing about the daemon: sofia's parser
# reallocates a header's parameter array as it grows, and ASan's allocator and
# memcpy checks turn that into ~165 ms for one 48 KB Via of 12,000 ";x=y"
# (0.5 ms in the plain build, which keeps the 200 ms bound); a CI run with the
# abuse test beside it saw 1.4 s. The sanitized run checks memory and liveness:
# every probe answered within the OPTIONS timeout, which a lookup blocked on
# the blackhole DNS would not be.
SANITIZED_PROBE_MS = 2500
RSS_LIMIT_KB = 20 * 1024
UDP_MAX = 60000


class BusyRoom:
    """UDP 'room': 486 to INVITE, 200 to anything else but ACK, no state."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.invites = 0
        self.stop = False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(70000)
            except socket.timeout:
                continue
            except OSError:
                return
            head = data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
            if not head or head[0].startswith(("SIP/", "ACK ")):
                continue
            code = "486 Busy Here" if head[0].startswith("INVITE ") else "200 OK"
            if code.startswith("486"):
                self.invites += 1
            keep = []
            for h in head[1:]:
                name = h.split(":")[0].strip().lower()
                if name in ("via", "from", "call-id", "cseq"):
                    keep.append(h)
                elif name == "to":
                    keep.append(h if ";tag=" in h else h + ";tag=busyroom")
            resp = "\r\n".join(["SIP/2.0 " + code] + keep + ["Content-Length: 0"]) + "\r\n\r\n"
            try:
                self.sock.sendto(resp.encode(), addr)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.th.join(2)
        self.sock.close()


def seeds(d):
    """(torture files, valid messages)."""
    out = []
    folder = os.path.join(SHARED, "torture")
    for f in sorted(glob.glob(os.path.join(folder, "rfc4475", "*.dat")) +
                    glob.glob(os.path.join(folder, "rfc5118", "*"))):
        with open(f, "rb") as fh:
            out.append(fh.read())
    torture, out = out, []
    local = (HOST, 5999)
    sdp = ("v=0\r\no=mut 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
           "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
           "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
           % (HOST, HOST)).encode()
    ruri_room = "sip:room-a@%s" % d.uri_host
    out.append(build_request("OPTIONS", "sip:%s" % d.uri_host, d.uri_host, local=local))
    for user in ("room-a", "nobody"):
        out.append(build_request("INVITE", "sip:%s@%s" % (user, d.uri_host), d.uri_host,
                                 body=sdp, ctype="application/sdp", local=local,
                                 to_user=user, from_user="+15551230000",
                                 extra="Supported: timer\r\nUser-Agent: mutator"))
    out.append(build_request("REGISTER", "sip:%s" % d.uri_host, d.uri_host, local=local))
    out.append(build_request("BYE", ruri_room, d.uri_host, local=local, to_tag="x1"))
    out.append(build_request("REFER", ruri_room, d.uri_host, local=local, to_tag="x2",
                             extra="Refer-To: <sip:+15550100@%s>" % d.uri_host))
    return torture, out


# ---------------------------------------------------------------- mutations

def _lines(msg):
    head, sep, body = msg.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), sep, body


def m_flip(r, msg):
    b = bytearray(msg)
    for _ in range(r.randint(1, 8)):
        if b:
            b[r.randrange(len(b))] = r.randrange(256)
    return bytes(b)


def m_truncate(r, msg):
    return msg[:r.randrange(len(msg) + 1)]


def m_dup_header(r, msg):
    lines, sep, body = _lines(msg)
    if len(lines) < 2:
        return msg + msg
    for _ in range(r.randint(1, 4)):
        i = r.randrange(1, len(lines))
        lines.insert(r.randrange(1, len(lines) + 1), lines[i] * r.choice((1, 1, 2)))
    return b"\r\n".join(lines) + sep + body


def m_huge_value(r, msg):
    lines, sep, body = _lines(msg)
    size = r.choice((1000, 4000, 16000, 40000, 60000, r.randint(100, 60000)))
    filler = r.choice((b"a", b"%41", b",", b";x=y", b"<sip:a@b>,", b" ", b"9"))
    value = (filler * (size // len(filler) + 1))[:size]
    name = r.choice((b"Via: SIP/2.0/UDP h;branch=z9hG4bK", b"To: <sip:", b"Subject: ",
                     b"X-Long: ", b"Contact: <sip:x@", b"Call-ID: ", b"CSeq: 1",
                     b"Content-Type: application/", b"Route: <sip:h;lr>,"))
    i = r.randrange(1, len(lines) + 1) if len(lines) > 1 else len(lines)
    lines.insert(i, name + value)
    return b"\r\n".join(lines) + sep + body


def m_content_length(r, msg):
    v = r.choice((b"-1", b"0", b"1", b"99999999", b"4294967296", b"18446744073709551617",
                  b"-2147483648", b" 12 13", b"abc", b"", b"0x10",
                  str(r.randint(0, 3000)).encode()))
    pat = re.compile(rb"(\r\n(?:Content-Length|l)[ \t]*:)[^\r\n]*", re.I)
    if pat.search(msg):
        return pat.sub(lambda m: m.group(1) + b" " + v, msg, count=1)
    lines, sep, body = _lines(msg)
    lines.append(b"Content-Length: " + v)
    return b"\r\n".join(lines) + sep + body


def m_inject(r, msg):
    b = bytearray(msg)
    for _ in range(r.randint(1, 6)):
        b[r.randrange(len(b) + 1):0] = r.choice((b"\x00", b"\r", b"\n", b"\r\n", b"\r\n\r\n",
                                                 b"%00", b"%", b"\x00\x00\x00"))
    return bytes(b)


def m_del_crlf(r, msg):
    idx = [m.start() for m in re.finditer(rb"\r\n", msg)]
    if not idx:
        return msg
    for i in sorted(r.sample(idx, min(len(idx), r.randint(1, 3))), reverse=True):
        msg = msg[:i] + r.choice((b"", b"\r", b"\n", b" ")) + msg[i + 2:]
    return msg


def m_splice(r, msg, other):
    return msg[:r.randrange(len(msg) + 1)] + other[r.randrange(len(other) + 1):]


def m_number(r, msg):
    """Overlarge / odd numbers in the scalar fields."""
    v = r.choice((b"4294967296", b"99999999999999999999", b"-1", b"0", b"00000000000000000001"))
    pat = re.compile(rb"(\r\n(?:CSeq|Max-Forwards|Expires|Retry-After)[ \t]*:[ \t]*)\d+", re.I)
    return pat.sub(lambda m: m.group(1) + v, msg, count=1) if pat.search(msg) else m_flip(r, msg)


MUTATIONS = [m_flip, m_truncate, m_dup_header, m_huge_value, m_content_length, m_inject,
             m_del_crlf, m_number]
WEIGHTS = [3, 2, 2, 1, 2, 2, 2, 1]


def mutate(r, torture, valid):
    # valid messages get 40% so that some mutants pass the parser and reach
    # the B2BUA, SDP and relay code; the torture files are the rest
    pool = torture + valid
    msg = r.choice(valid if r.random() < 0.4 or not torture else torture)
    for _ in range(r.choice((1, 1, 2, 3))):
        if r.random() < 0.05:
            msg = m_splice(r, msg, r.choice(pool))
        else:
            msg = r.choices(MUTATIONS, WEIGHTS)[0](r, msg)
    # a fresh Call-ID so replies never pass for another test's (torture) answers
    return re.sub(rb"(\r\n(?:Call-ID|i)[ \t]*:[ \t]*)", lambda m: m.group(1) + b"mut%d-" %
                  r.randrange(10 ** 9), msg, count=1, flags=re.I)


# ---------------------------------------------------------------- test

def send_tcp(remote, data, read_for=0.05):
    try:
        c = socket.create_connection(remote, timeout=2)
    except OSError:
        return "connect-failed"
    try:
        c.sendall(data)
        c.settimeout(read_for)
        try:
            c.recv(65535)
        except OSError:
            pass
        return "sent"
    except OSError:
        return "reset"
    finally:
        c.close()


@case
def test_mutator_bounded(t):
    seed = os.environ.get("SIPXFER_MUTATOR_SEED")
    seed = int(seed) if seed else random.SystemRandom().randrange(2 ** 31)
    print("mutator: seed %d (SIPXFER_MUTATOR_SEED=%d to replay), %d messages" % (seed, seed, N),
          flush=True)
    t.note("seed %d" % seed)
    limit = SANITIZED_PROBE_MS if harness.SANITIZED else PROBE_MS
    r = random.Random(seed)
    room = BusyRoom()
    try:
        try:
            dns = harness.BlackholeDns(t)
        except harness.Skip as e:
            dns = None
            t.note("without a blackhole DNS: %s" % e)
        # ~450 short TCP connections from one address, many with a message
        # cut short that sofia keeps until sip.tcp_idle_timeout: this test is
        # about the parser, test_exhaustion about the per-source cap
        d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}, dns=dns,
                     **{"transfer.ring_timeout": 3, "sip.tcp_max_per_source": 1024})
        d.start()
        remote = (HOST, d.sip_port)
        torture, valid = seeds(d)
        check(d.options() == 200, "OPTIONS before the run")
        rss0 = harness.rss_kb(d.proc.pid)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((HOST, 0))
        t0 = time.time()
        last = []   # the messages since the last good probe (for the report)
        counts = {"udp": 0, "tcp": 0}
        slowest = 0.0
        late = 0  # probes answered late and retried
        try:
            for i in range(1, N + 1):
                msg = mutate(r, torture, valid)
                last.append(msg)
                if len(msg) > UDP_MAX or r.random() < 0.15:
                    send_tcp(remote, msg)
                    counts["tcp"] += 1
                else:
                    try:
                        udp.sendto(msg, remote)
                    except OSError:
                        pass
                    counts["udp"] += 1
                if i % PROBE_EVERY == 0 or i == N:
                    # a late answer (< 1 s) is retried twice: CPU contention on a
                    # shared machine, not a stall (a blocking lookup under the
                    # blackhole DNS gets no answer within the probe's 3 s at all)
                    for _ in range(3):
                        p0 = time.monotonic()
                        st = d.options()
                        ms = (time.monotonic() - p0) * 1000
                        slowest = max(slowest, ms)
                        if st != 200 or ms <= limit or ms > 1000:
                            break
                        late += 1
                    if st != 200 or not d.alive() or ms > limit:
                        path = t.path("mutator-crash-inputs.bin")
                        with open(path, "wb") as f:
                            f.write(b"\n=====MSG=====\n".join(last))
                        raise harness.TestFailure(
                            "seed %d: after message %d the daemon %s (OPTIONS -> %s after "
                            "%.0f ms, limit %d); the last %d inputs are in %s" % (
                                seed, i, "is alive" if d.alive() else "DIED", st, ms, limit,
                                len(last), path))
                    last = []
        finally:
            udp.close()
        elapsed = time.time() - t0
        rss1 = harness.rss_kb(d.proc.pid)
        t.note("%d messages (%d udp, %d tcp) in %.1fs, room saw %d INVITEs, VmRSS %d -> %d kB, "
               "slowest probe %.0f ms (%d late, retried), %d lookup(s) refused"
               % (N, counts["udp"], counts["tcp"], elapsed, room.invites, rss0, rss1, slowest,
                  late, d.metric("sipxfer_dns_blocked_total")))
        print("mutator: seed %d: %s" % (seed, t.notes[-1]), flush=True)
        check(d.options("tcp") == 200, "seed %d: OPTIONS over TCP after the run" % seed)
        d.wait_idle()
        if not harness.SANITIZED:
            check(rss1 - rss0 <= RSS_LIMIT_KB, "seed %d: VmRSS grew by %d kB (%d -> %d)" % (
                seed, rss1 - rss0, rss0, rss1))
        d.check_clean_exit()
    finally:
        room.close()
