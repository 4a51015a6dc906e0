"""Integration test harness: starts real sipxferd daemons and SIPp peers on
free ports, talks HTTP to the API and raw SIP/RTP where SIPp cannot.

Every wait here polls for an event (a port bound, a metric reaching a value,
a log line, a process exit) under a deadline; nothing sleeps for a fixed time
as a way of synchronising."""
import base64
import hashlib
import hmac
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIPP_DIR = os.path.join(ROOT, "tests", "sipp")
TOOLS_DIR = os.path.join(ROOT, "tests", "tools")
SIPXFERD = os.environ.get("SIPXFERD", os.path.join(ROOT, "build", "sipxferd"))
# Under ASan/UBSan, RSS says more about the sanitizer's allocator (redzones,
# quarantine, size classes it keeps) than about sipxferd: memory-growth
# checks are skipped there and made by the plain build's run.
SANITIZED = "asan" in os.path.basename(os.path.dirname(SIPXFERD)) or \
    bool(os.environ.get("SIPXFER_SANITIZED"))
SHARED = os.environ.get("SIPXFER_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
TOKEN = "test-token-0123456789"
HOST = "127.0.0.1"

_port_lock = threading.Lock()
_ports_given = set()
_current = threading.local()  # the T running on this thread: its ports go back when it ends


class TestFailure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def _bindable(port, udp=True, tcp=True):
    """Whether port can be bound now, found by binding it. That holds the
    port for a moment: never use it on a port a process may be binding (use
    port_in_use, which only reads /proc)."""
    socks = []
    try:
        if udp:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((HOST, port))
        if tcp:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            socks.append(s)
            s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


_TCP_LISTEN = "0A"


_SOCKET_ROW = re.compile(
    r"^\s*\d+: [0-9A-F]+:([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} ([0-9A-F]{2})"
    r" \S+ \S+ \S+ +\d+ +\d+ (\d+)", re.M)


def _socket_table(udp=True, tcp=True, pid=None):
    """[(proto, port, tcp_state, inode)] of every IPv4/IPv6 socket in this
    network namespace (or process pid's), read from /proc/net; None where
    that is unreadable.
    Parsed by one regex over each file: a loaded machine has thousands of
    sockets and this runs every 50 ms in each waiting test thread."""
    rows = []
    for proto, files in (("udp", ("udp", "udp6") if udp else ()),
                         ("tcp", ("tcp", "tcp6") if tcp else ())):
        for name in files:
            try:
                with open(("/proc/%d/net/" % pid if pid else "/proc/net/") + name) as f:
                    text = f.read()
            except OSError:
                if name.endswith("6"):
                    continue  # no IPv6 in this namespace
                return None
            rows.extend((proto, int(m.group(1), 16), m.group(2), int(m.group(3)))
                        for m in _SOCKET_ROW.finditer(text))
    return rows


def _socket_inodes(pid):
    """Inodes of the sockets process pid holds (empty once it is gone)."""
    out = set()
    fd_dir = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def port_in_use(port, udp=True, tcp=True):
    """Whether any socket (any address, any TCP state, TIME_WAIT included)
    sits on port. Reads /proc/net only, so unlike a trial bind it never
    takes the port from a process binding it at that moment; falls back to
    the trial bind where /proc/net cannot be read."""
    rows = _socket_table()
    if rows is None:
        return not _bindable(port, udp, tcp)
    return any(p == port and ((udp and proto == "udp") or (tcp and proto == "tcp"))
               for proto, p, _, _ in rows)


def port_bound(port, udp=True, tcp=True):
    """Whether a UDP socket is bound to port or a TCP socket listens on it
    (connections and TIME_WAIT left over do not keep a listener out)."""
    rows = _socket_table()
    if rows is None:
        return not _bindable(port, udp, tcp)
    return any(p == port and ((udp and proto == "udp") or
                              (tcp and proto == "tcp" and st == _TCP_LISTEN))
               for proto, p, st, _ in rows)


def bound_by(pid, ports):
    """Whether process pid has bound every (proto, port) in ports (a TCP
    port counts once it listens)."""
    protos = {proto for proto, _ in ports}
    # the process's own view: it may run in another network namespace
    rows = _socket_table("udp" in protos, "tcp" in protos, pid)
    mine = _socket_inodes(pid)
    if rows is None or not mine:
        return False
    have = {(proto, p) for proto, p, st, ino in rows
            if ino in mine and (proto == "udp" or st == _TCP_LISTEN)}
    return all(x in have for x in ports)


def port_holders(port):
    """"name[pid]" of every process holding a socket on port, for messages."""
    rows = _socket_table() or []
    inodes = {ino for _, p, _, ino in rows if p == port and ino}
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and inodes & _socket_inodes(int(d)):
            try:
                with open("/proc/%s/comm" % d) as f:
                    out.append("%s[%s]" % (f.read().strip(), d))
            except OSError:
                pass
    if not out and any(p == port for _, p, _, _ in rows):
        out.append("a socket of no process (TIME_WAIT)")
    return out


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _port_pool():
    """The port ranges free_port draws from: 10000-19999, below the usual
    kernel ephemeral range (32768-60999) and the shipped config's relay range
    20000-29999. A machine whose ephemeral range reaches into it (some set
    1024-65535) would have clients' source ports and port-0 binds (curl,
    SipSocket, the webhook receiver) land on ports handed to tests between
    the check and the bind, so that part is left out; what remains outside
    it, below 65536, is used when 10000-19999 has too little left. SIPp's
    control sockets (UDP 8888-8947 on 0.0.0.0) and 5060 (the torture test's)
    are never in it."""
    elo, ehi = _ephemeral_range()
    reserved = [(elo, ehi), (8888, 8947), (5060, 5061), (20000, 29999)]

    def minus(lo, hi):
        parts = [(lo, hi)]
        for rlo, rhi in reserved:
            nxt = []
            for a, b in parts:
                if rhi < a or rlo > b:
                    nxt.append((a, b))
                    continue
                if a < rlo:
                    nxt.append((a, rlo - 1))
                if rhi < b:
                    nxt.append((rhi + 1, b))
            parts = nxt
        return [(a, b) for a, b in parts if b - a >= 200]
    pool = minus(10000, 19999)
    if sum(b - a for a, b in pool) < 4000:
        pool = minus(1024, 65535)
    return pool


PORT_POOL = _port_pool()


def free_port(udp=True, tcp=True, even=False, span=1):
    """A port (or `span` consecutive ports) free for UDP and/or TCP now and
    never handed out before in this process (until the test holding it
    ended), drawn from PORT_POOL. Whether a port is free is read from
    /proc/net, not tried by binding it: a trial bind holds the port for a
    moment, and with the GIL passed to another test thread meanwhile that
    moment can be milliseconds in which a process binding a port of its own
    fails."""
    weights = [b - a - span for a, b in PORT_POOL]
    rows = _socket_table(udp, tcp)
    used = None if rows is None else {
        p for proto, p, _, _ in rows if (udp and proto == "udp") or (tcp and proto == "tcp")}
    with _port_lock:
        for _ in range(2000):
            lo, hi = random.choices(PORT_POOL, weights)[0]
            p = random.randrange(lo, hi - span + 1)
            if even:
                p &= ~1
                if p < lo:
                    continue
            rng = range(p, p + span)
            if any(q in _ports_given for q in rng):
                continue
            if not any(q in used if used is not None else not _bindable(q, udp, tcp)
                       for q in rng):
                _ports_given.update(rng)
                owner = getattr(_current, "t", None)
                if owner is not None:
                    owner.ports.extend(rng)
                return p
    raise TestFailure("no free port")


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise TestFailure("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_bound(port, udp=True, tcp=False, timeout=10, proc=None, what=None):
    """Wait until some process has bound port (read from /proc/net, so the
    wait never takes the port itself). With proc (a Popen): until that
    process has bound it, and StartFailure at once should it exit first."""
    if proc is None:
        wait_for(lambda: port_in_use(port, udp, tcp), timeout, "port %d bound" % port)
        return
    ports = ([("udp", port)] if udp else []) + ([("tcp", port)] if tcp else [])
    wait_started(proc, lambda: bound_by(proc.pid, ports), timeout,
                 what or "process %d to bind port %d" % (proc.pid, port))


ADDRESS_IN_USE = re.compile(r"Address already in use|EADDRINUSE|errno = 98\b|cannot listen")


class StartFailure(TestFailure):
    """A process that exited (or never got ready) while being started:
    its exit status and the tail of its own output."""

    def __init__(self, what, rc, output):
        self.what, self.rc, self.output = what, rc, output
        state = "exited with status %s" % rc if rc is not None else "is still running"
        TestFailure.__init__(self, "%s: %s before it was ready; its output:\n%s" % (
            what, state, output[-2500:] or "(none)"))

    def race_line(self):
        """The line of the output that says which bind failed."""
        m = re.search(r"[^\n]*(?:%s)[^\n]*" % ADDRESS_IN_USE.pattern, self.output)
        return m.group(0).strip() if m else self.output.strip()[-300:]

    @property
    def address_in_use(self):
        """Lost a bind race: another process had one of its ports."""
        return bool(ADDRESS_IN_USE.search(self.output))


def _tail(paths, limit=3000):
    out = []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if text.strip():
            out.append("--- %s\n%s" % (os.path.basename(p), text[-limit:]))
    return "\n".join(out)


def wait_started(proc, ready, timeout, what, outputs=None):
    """Wait until ready() or proc has exited, whichever comes first. An exit
    (or the timeout) raises StartFailure with the exit status and the tail of
    the files in outputs (default: proc.out_path, as set by T.popen)."""
    outputs = outputs if outputs is not None else [getattr(proc, "out_path", "")]
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise StartFailure(what, proc.returncode, _tail(outputs))
        if ready():
            return
        if time.time() > deadline:
            raise StartFailure("%s (not ready after %.0fs)" % (what, timeout), None,
                               _tail(outputs))
        time.sleep(0.05)


class T:
    """Per-test context: a temp dir, and every process started, so all of
    them are stopped when the test ends, pass or fail."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="sipxfer-%s-" % name)
        self.procs = []
        self.daemons = []
        self.notes = []
        self.ports = []
        self.finalizers = []  # run first at cleanup (at_end)
        _current.t = self

    def path(self, name):
        return os.path.join(self.dir, name)

    def note(self, msg):
        self.notes.append(msg)

    def at_end(self, fn):
        """fn() when the test ends, pass or fail, before its processes are
        killed (e.g. to stop a process group that kill alone would leave)."""
        self.finalizers.append(fn)

    def cleanup(self, ok):
        for fn in reversed(self.finalizers):
            try:
                fn()
            except Exception:
                pass
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        # a process that survived its kill still holds its ports: they stay
        # given, or the next test would be handed them
        if all(p.poll() is not None for p in self.procs):
            with _port_lock:
                _ports_given.difference_update(self.ports)
        if getattr(_current, "t", None) is self:
            _current.t = None
        if ok and not os.environ.get("KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def daemon(self, **kw):
        d = Daemon(self, **kw)
        self.daemons.append(d)
        return d

    def sipp(self, scenario, **kw):
        return Sipp(self, scenario, **kw)

    def popen(self, args, name, **kw):
        out = open(self.path(name + ".out"), "w")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=self.dir, **kw)
        p.out_path = self.path(name + ".out")
        self.procs.append(p)
        return p


def _cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):  # a list of groups
            return "( " + ", ".join(_cfg_value(x) for x in v) + " )"
        return "[ " + ", ".join(_cfg_value(x) for x in v) + " ]"
    if isinstance(v, dict):  # a group: {"certificate": "...", ...}
        return "{ " + " ".join("%s = %s;" % (k, _cfg_value(x)) for k, x in v.items()) + " }"
    raise TypeError(v)


class _Published:
    """A port attribute that remembers being read. A port a test has seen
    (put into a room URI, a config, a SIPp command line) must stay what it
    is; one nobody has read yet may be swapped for a fresh one when the
    process lost it to a bind race, without the test noticing."""

    def __set_name__(self, owner, name):
        self.key = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        if not obj.__dict__.get("_untracked"):
            obj.__dict__.setdefault("_published", set()).add(self.key)
        return obj.__dict__[self.key]

    def __set__(self, obj, value):
        obj.__dict__[self.key] = value


def _published(obj, *names):
    return bool(obj.__dict__.get("_published", set()) & {"_" + n for n in names})


START_ATTEMPTS = 3


class Daemon:
    """One sipxferd on its own SIP/API ports and media port range.

    rooms: {name: uri}; routes: {user: room}; other keyword arguments
    override config settings by dotted name ("sip.max_calls": 1). name:
    its config and log files are <name>.conf and <name>.log in the test's
    directory (several daemons in one test need names of their own)."""

    sip_port = _Published()
    api_port = _Published()
    media_min = _Published()
    media_max = _Published()

    def __init__(self, t, rooms=None, routes=None, trunk_sources=None, gateway=None,
                 media_ports=40, dns=None, trunk_extra="", name=None, **settings):
        self.t = t
        self._untracked = True
        # dns="blackhole": the daemon runs in its own mount namespace whose
        # resolv.conf names a BlackholeDns (self.dns); or pass one to share
        self.dns = BlackholeDns(t) if dns == "blackhole" else dns
        self.sip_port = free_port()
        self.api_port = free_port(udp=False)
        self.media_min = free_port(tcp=False, even=True, span=media_ports)
        self.media_max = self.media_min + media_ports - 1
        self.rooms = rooms or {}
        self.routes = routes or {}
        self.trunk_sources = trunk_sources or ["127.0.0.0/8"]
        self.gateway = gateway
        # more of the trunk's settings, as config text ("auth = { ... };")
        self.trunk_extra = trunk_extra
        # the whole trunks list as config text, in place of the one above
        self.trunks_text = None
        self.settings = {
            "node": "t",
            "drain_timeout": 5,
            "sip.listen": "sip:%s:%d" % (HOST, self.sip_port),
            "sip.max_calls": 1000,
            "sip.rate_limit": 0,
            "api.listen": "%s:%d" % (HOST, self.api_port),
            "api.tokens": [TOKEN],
            "media.mode": "relay",
            "media.address": HOST,
            "media.port_min": self.media_min,
            "media.port_max": self.media_max,
            "rooms.domain": "rooms.sipxfer.test",
            "rooms.resolver": "",
            "webhooks.url": "",
            "webhooks.secret": "",
            "transfer.ring_timeout": 10,
            "transfer.notify_timeout": 10,
            "transfer.allow": ["sip:*", "+*"],
            "transfer.refer_fallback": False,
        }
        self.settings.update(settings)
        # a test's second daemon (a cluster's node) gets files of its own
        if name is None:
            name = "sipxferd-%d" % (len(t.daemons) + 1) if t.daemons else "sipxferd"
        self.conf = t.path(name + ".conf")
        self.log = t.path(name + ".log")
        self.proc = None
        self.wrap = None
        self._conf_extra = self._conf_text = None
        self.write_config()
        self._untracked = False

    def write_config(self, path=None, extra_text=""):
        groups = {}
        top = []
        for k, v in self.settings.items():
            if "." in k:
                g, n = k.split(".", 1)
                groups.setdefault(g, []).append("  %s = %s;" % (n, _cfg_value(v)))
            else:
                top.append("%s = %s;" % (k, _cfg_value(v)))
        lines = top[:]
        for g, items in groups.items():
            if g == "rooms":
                items = items + ["  list = ("] + [
                    "    { name = %s; uri = %s; }%s" % (json.dumps(n), json.dumps(u),
                                                       "," if i < len(self.rooms) - 1 else "")
                    for i, (n, u) in enumerate(self.rooms.items())] + ["  );"]
            lines.append("%s = {\n%s\n};" % (g, "\n".join(items)))
        if "rooms" not in groups:
            raise TypeError("rooms settings missing")
        gw = ' gateway = %s;' % json.dumps(self.gateway) if self.gateway else ""
        extra = " " + self.trunk_extra if self.trunk_extra else ""
        if self.trunks_text:
            lines.append("trunks = ( %s );" % self.trunks_text)
        else:
            lines.append("trunks = ( { name = \"carrier\"; sources = %s;%s%s } );"
                         % (_cfg_value(self.trunk_sources), gw, extra))
        lines.append("routes = ( %s );" % ", ".join(
            "{ user = %s; room = %s; }" % (json.dumps(u), json.dumps(r))
            for u, r in self.routes.items()))
        text = "\n".join(lines) + "\n" + extra_text
        with open(path or self.conf, "w") as f:
            f.write(text)
        if path in (None, self.conf):
            self._conf_extra, self._conf_text = extra_text, text
        return path or self.conf

    @property
    def uri_host(self):
        return "%s:%d" % (HOST, self.sip_port)

    def start(self, timeout=30):
        """Start sipxferd and wait for /v1/health. An exit first raises
        StartFailure with its status and log; one that lost a port to
        another process ("cannot listen") is retried, on fresh ports where
        the test has not read them yet, else on the same ones once free."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once(timeout)
                return self
            except StartFailure as e:
                if not e.address_in_use or attempt == START_ATTEMPTS:
                    raise
                self._bind_race(e, attempt)

    def _start_once(self, timeout):
        self._untracked = True
        try:
            self.logf = open(self.log, "a")
            self._log_start = self.logf.tell()
            env = dict(os.environ)
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
            args = [SIPXFERD, "-c", self.conf]
            if self.dns:
                args = self.dns.wrap(args)
            if self.wrap:  # a command prefix (setpriv: a daemon without capabilities)
                args = list(self.wrap) + args
            self.proc = subprocess.Popen(args, stdout=self.logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env)
            self.t.procs.append(self.proc)
            try:
                wait_started(self.proc, self._health, timeout,
                             "sipxferd (%s) answering /v1/health" % self.conf, outputs=[])
            except StartFailure as e:
                raise StartFailure(e.what, e.rc, self.log_text()[self._log_start:])
        finally:
            self._untracked = False
        # peers now know where it listens: a restart keeps these ports
        self._published = {"_sip_port", "_api_port", "_media_min", "_media_max"}

    def _bind_race(self, failure, attempt):
        ports = [("udp", self._sip_port), ("tcp", self._sip_port), ("tcp", self._api_port)]
        holders = ["%s/%d: %s" % (proto, p, ", ".join(port_holders(p)) or "free again")
                   for proto, p in ports]
        # the failed attempt's lines would confuse the test's wait_log()s
        self.logf.close()
        with open(self.log, "r+") as f:
            f.truncate(self._log_start)
        try:
            with open(self.conf) as f:
                untouched = f.read() == self._conf_text
        except OSError:
            untouched = False
        generated = (self.settings.get("sip.listen") == "sip:%s:%d" % (HOST, self._sip_port)
                     and self.settings.get("api.listen") == "%s:%d" % (HOST, self._api_port)
                     and self.settings.get("media.port_min") == self._media_min)
        if untouched and generated and not _published(self, "sip_port", "api_port",
                                                      "media_min", "media_max"):
            span = self._media_max - self._media_min + 1
            self._sip_port = free_port()
            self._api_port = free_port(udp=False)
            self._media_min = free_port(tcp=False, even=True, span=span)
            self._media_max = self._media_min + span - 1
            self.settings.update({
                "sip.listen": "sip:%s:%d" % (HOST, self._sip_port),
                "api.listen": "%s:%d" % (HOST, self._api_port),
                "media.port_min": self._media_min, "media.port_max": self._media_max})
            self.write_config(extra_text=self._conf_extra)
            how = "on fresh ports sip %d, api %d" % (self._sip_port, self._api_port)
        else:
            wait_for(lambda: not any(port_bound(p, proto == "udp", proto == "tcp")
                                     for proto, p in ports), 15,
                     "sipxferd's ports to be free again (held: %s)" % "; ".join(holders))
            how = "on the same ports, free again"
        self.t.note("sipxferd attempt %d lost a port (%s), retried %s; it said: %s" % (
            attempt, "; ".join(holders), how, failure.race_line()))

    def _health(self):
        try:
            st, _ = self.api("GET", "/v1/health", timeout=1)
            return st == 200
        except OSError:
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, regex, timeout=10):
        r = re.compile(regex)
        return wait_for(lambda: r.search(self.log_text()), timeout, "log line /%s/" % regex)

    def api(self, method, path, body=None, token=TOKEN, raw=None, timeout=10, headers=None):
        url = "http://%s:%d%s" % (HOST, self.api_port, path)
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
        elif body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            status = e.code
        try:
            obj = json.loads(text) if text else None
        except ValueError:
            obj = text
        return status, obj

    def metrics(self):
        url = "http://%s:%d/metrics" % (HOST, self.api_port)
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, val = line.rpartition(" ")
            out[name] = float(val)
        return out

    def metric(self, name):
        return self.metrics().get(name, 0.0)

    def wait_metric(self, name, value, timeout=15):
        wait_for(lambda: self.metric(name) == value, timeout,
                 "%s == %s (now %s)" % (name, value, "?"))

    def wait_idle(self, timeout=20):
        """No call and no relay port left."""
        def idle():
            m = self.metrics()
            return (m.get("sipxfer_calls_active", 0) == 0
                    and m.get("sipxfer_relay_ports_in_use", 0) == 0
                    and m.get("sipxfer_relay_endpoints", 0) == 0)
        try:
            wait_for(idle, timeout, "daemon idle")
        except TestFailure:
            m = self.metrics()
            raise TestFailure("daemon not idle: calls_active=%s ports=%s endpoints=%s" % (
                m.get("sipxfer_calls_active"), m.get("sipxfer_relay_ports_in_use"),
                m.get("sipxfer_relay_endpoints")))

    def sessions(self):
        st, obj = self.api("GET", "/v1/sessions")
        check(st == 200, "GET /v1/sessions: %s %s" % (st, obj))
        return obj["sessions"]

    def wait_session(self, timeout=10, count=1):
        """Ids of live sessions, once there are `count` of them."""
        def have():
            s = self.sessions()
            ids = [x.get("sessionId") or x.get("session_id") or x.get("id") for x in s]
            return ids if len(ids) >= count else None
        return wait_for(have, timeout, "%d session(s)" % count)

    def options(self, transport="udp", timeout=3):
        """Send OPTIONS; return the status code or None."""
        return sip_exchange(lambda local, tp: build_request(
            "OPTIONS", "sip:%s" % self.uri_host, self.uri_host, local=local, transport=tp),
            (HOST, self.sip_port), transport, timeout)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure("sipxferd did not exit within %ss of SIGTERM" % timeout)

    def check_clean_exit(self):
        rc = self.stop()
        check(rc == 0, "sipxferd exit status %s" % rc)
        text = self.log_text()
        check("ERROR: AddressSanitizer" not in text and "runtime error:" not in text
              and "LeakSanitizer" not in text, "sanitizer report:\n" + text[-3000:])


class Sipp:
    """One SIPp process running a scenario from tests/sipp/.

    role "uas" waits for calls on its own port; "uac" calls `remote`."""

    port = _Published()
    media_port = _Published()

    def __init__(self, t, scenario, remote=None, service=None, calls=1, port=None,
                 media_port=None, echo=False, keys=None, extra=None, rate=None,
                 limit=None, duration=None, timeout=60, transport="u1"):
        self.t = t
        self._untracked = True
        self.scenario = scenario
        self.port = port or free_port()
        # SIPp binds media_port, +1 (RTCP) and +2, +3 (video)
        self.media_port = media_port or (free_port(tcp=False, even=True, span=4))
        args = ["sipp", "-sf", os.path.join(SIPP_DIR, scenario), "-i", HOST, "-p",
                str(self.port), "-m", str(calls), "-nostdin", "-mp", str(self.media_port),
                "-timeout", "%ds" % timeout, "-timeout_error", "-max_recv_loops", "1000",
                "-trace_err", "-error_file", t.path("%s-%d.err" % (scenario, self.port)),
                "-t", transport]
        if echo:
            args.append("-rtp_echo")
        if service:
            args += ["-s", service]
        if rate:
            args += ["-r", str(rate)]
        if limit:
            args += ["-l", str(limit)]
        if duration is not None:
            args += ["-d", str(duration)]
        for k, v in (keys or {}).items():
            args += ["-key", k, str(v)]
        self.log_path = t.path("sipp-%s-%d.log" % (scenario, self.port))
        args += ["-trace_logs", "-log_file", self.log_path]
        args += extra or []
        if remote:
            args.append(remote)
        self.args = args
        self.name = "sipp-%s-%d" % (scenario.replace(".xml", ""), self.port)
        self.proc = None
        self._untracked = False
        # ports the caller chose are the caller's: never swapped
        self._published = ({"_port"} if port else set()) | ({"_media_port"} if media_port
                                                              else set())

    def _arg(self, flag, value=None):
        i = self.args.index(flag) + 1
        if value is not None:
            self.args[i] = value
        return self.args[i]

    def start(self, timeout=30):
        """Start SIPp and wait until it has bound its SIP port (UDP, or TCP
        listening for t*/l* transports) and its media ports. An exit first
        raises StartFailure with its status, -error_file and output; a
        lost bind race ("Address already in use") is retried: on fresh
        ports where the test has not read them, else on the same ones once
        free."""
        for attempt in range(1, START_ATTEMPTS + 1):
            self._untracked = True
            try:
                self.proc = self.t.popen(self.args, self.name)
                tp = self._arg("-t")[:1]
                ports = [("tcp" if tp in "tl" else "udp", self._port)] if tp in "utl" else []
                ports += [("udp", self._media_port), ("udp", self._media_port + 2)]
                wait_started(self.proc, lambda: bound_by(self.proc.pid, ports), timeout,
                             "%s (%s)" % (self.name, " ".join(self.args)),
                             outputs=[self._arg("-error_file"), self.proc.out_path])
                self._published = {"_port", "_media_port"}
                return self
            except StartFailure as e:
                if not e.address_in_use or attempt == START_ATTEMPTS:
                    raise
                self._bind_race(e, attempt, ports)
            finally:
                self._untracked = False

    def _bind_race(self, failure, attempt, ports):
        holders = ["%s/%d: %s" % (proto, p, ", ".join(port_holders(p)) or "free again")
                   for proto, p in ports]
        how = []
        if not _published(self, "port"):
            self._port = free_port()
            how.append("SIP port %d" % self._port)
        if not _published(self, "media_port"):
            self._media_port = free_port(tcp=False, even=True, span=4)
            how.append("media port %d" % self._media_port)
        kept = [(proto, p) for proto, p in ports
                if p in (self._port, self._media_port, self._media_port + 2)]
        wait_for(lambda: not any(port_bound(p, proto == "udp", proto == "tcp")
                                 for proto, p in kept), 15,
                 "%s's ports to be free again (held: %s)" % (self.name, "; ".join(holders)))
        self._arg("-p", str(self._port))
        self._arg("-mp", str(self._media_port))
        self._arg("-error_file", self.t.path("%s-%d.err" % (self.scenario, self._port)))
        self.log_path = self.t.path("sipp-%s-%d.log" % (self.scenario, self._port))
        self._arg("-log_file", self.log_path)
        self.name = "sipp-%s-%d" % (self.scenario.replace(".xml", ""), self._port)
        self.t.note("%s attempt %d lost a port (%s), retried on %s; it said: %s" % (
            self.name, attempt, "; ".join(holders), ", ".join(how) or "the same ports",
            failure.race_line()))

    def wait(self, timeout=90):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure("%s still running after %ss" % (self.name, timeout))

    def done(self):
        return self.proc.poll() is not None

    def errors(self):
        try:
            with open(self._arg("-error_file"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def check_ok(self, timeout=90, what=None):
        rc = self.wait(timeout)
        check(rc == 0, "%s exited %s (%s):\n%s" % (self.name, rc, what or "expected 0",
                                                   self.errors()))

    def check_failed(self, timeout=90):
        rc = self.wait(timeout)
        check(rc != 0, "%s should have failed but exited 0" % self.name)


def sipp_uri(service, daemon):
    return "%s:%d" % (HOST, daemon.sip_port)


# ---------------------------------------------------------------- raw SIP

def _rand(n=10):
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def build_request(method, ruri, to_host, body=b"", ctype=None, local=("127.0.0.1", 5999),
                  extra="", transport="UDP", call_id=None, from_tag=None, cseq=1,
                  contact=None, to_tag=None, from_user="tester", to_user=None,
                  max_forwards=70):
    call_id = call_id or _rand(16) + "@test"
    from_tag = from_tag or _rand(8)
    hdr = [
        "%s %s SIP/2.0" % (method, ruri),
        "Via: SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport" % (transport, local[0], local[1],
                                                         _rand(12)),
        "Max-Forwards: %d" % max_forwards,
        "From: <sip:%s@%s:%d>;tag=%s" % (from_user, local[0], local[1], from_tag),
        "To: <sip:%s%s>%s" % ((to_user + "@") if to_user else "", to_host,
                               (";tag=" + to_tag) if to_tag else ""),
        "Call-ID: %s" % call_id,
        "CSeq: %d %s" % (cseq, method),
        "Contact: %s" % (contact or "<sip:%s@%s:%d>" % (from_user, local[0], local[1])),
    ]
    if ctype:
        hdr.append("Content-Type: %s" % ctype)
    if extra:
        hdr.append(extra.rstrip("\r\n"))
    hdr.append("Content-Length: %d" % len(body))
    return ("\r\n".join(hdr) + "\r\n\r\n").encode() + body


def next_sip_message(buf):
    """(first complete message, rest) of a SIP byte stream, framed by
    Content-Length (or its compact form l); (None, buf) until it is whole."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None, buf
    m = re.search(rb"\r\n(?:Content-Length|l)[ \t]*:[ \t]*(\d+)", buf[:i + 2], re.I)
    end = i + 4 + (int(m.group(1)) if m else 0)
    if len(buf) < end:
        return None, buf
    return buf[:end], buf[end:]


def rss_kb(pid):
    """Resident memory of a process (VmRSS), KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def parse_response(data):
    """(status, reason, headers{lower-name: [values]}, body) or None."""
    try:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        m = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
        if not m:
            return None
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        return int(m.group(1)), m.group(2), hdrs, body
    except Exception:
        return None


class SipSocket:
    """A UDP (or TCP) SIP endpoint for raw exchanges."""

    def __init__(self, transport="udp", remote=None, host=HOST):
        self.transport = transport
        self.remote = remote
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host, 0))  # any 127.0.0.x: a second source address
        else:
            self.sock = socket.create_connection(remote, timeout=5)
        self.local = self.sock.getsockname()
        self.buf = b""

    def send(self, data, remote=None):
        if self.transport == "udp":
            self.sock.sendto(data, remote or self.remote)
        else:
            self.sock.sendall(data)

    def recv(self, timeout):
        """One SIP message or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            if self.transport == "udp":
                data, _ = self.sock.recvfrom(65535)
                return data
            deadline = time.time() + timeout
            while True:
                m = self._take()
                if m is not None:
                    return m
                self.sock.settimeout(max(0.01, deadline - time.time()))
                chunk = self.sock.recv(65535)
                if not chunk:
                    return None
                self.buf += chunk
        except (socket.timeout, OSError):
            return None

    def _take(self):
        msg, self.buf = next_sip_message(self.buf)
        return msg

    def close(self):
        self.sock.close()


def sip_exchange(msg, remote, transport="udp", timeout=3, full=False, host=HOST):
    """Send msg (bytes, or a function of our (host, port) and transport name
    returning bytes) from an address of host; return the final status code
    (full: the whole parsed response), None when nothing came."""
    s = SipSocket(transport, remote, host=host)
    try:
        if callable(msg):
            msg = msg(s.local, transport.upper())
        s.send(msg, remote)
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = s.recv(max(0.01, deadline - time.time()))
            if data is None:
                return None
            r = parse_response(data)
            if r and r[0] >= 200:
                return r if full else r[0]
        return None
    finally:
        s.close()


class RawCall:
    """A minimal caller for tests that need RTP or raw headers: INVITE with
    an SDP offer, ACK the 2xx, exchange RTP, BYE. Answers in-dialog
    requests (re-INVITE, BYE) with 200."""

    def __init__(self, daemon, user="room-a", contact=None, extra="", rtp=True, rtcp=False,
                 max_forwards=70, sdp_host=HOST):
        self.d = daemon
        self.max_forwards = max_forwards
        self.sdp_host = sdp_host  # the c= address announced (NAT tests: not where RTP comes from)
        self.s = SipSocket("udp")
        self.rtp = self.rtcp = None
        if rtp:
            self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if rtcp:  # an even port with its odd neighbour for RTCP
                port = free_port(tcp=False, even=True, span=2)
                self.rtp.bind((HOST, port))
                self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.rtcp.bind((HOST, port + 1))
            else:
                self.rtp.bind((HOST, 0))
        self.user = user
        self.contact = contact
        self.extra = extra
        self.call_id = _rand(16) + "@raw"
        self.tag = _rand(8)
        self.to_tag = None
        self.remote_media = None
        self.final = None
        self.cseq = 1
        self.route_target = (HOST, daemon.sip_port)
        self.bye_received = False

    def sdp(self):
        port = self.rtp.getsockname()[1] if self.rtp else 9
        return ("v=0\r\no=raw 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
                "m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                "a=rtpmap:101 telephone-event/8000\r\n" % (self.sdp_host, self.sdp_host,
                                                             port)).encode()

    def invite(self, timeout=10, ack=True):
        ruri = "sip:%s@%s" % (self.user, self.d.uri_host)
        msg = build_request("INVITE", ruri, self.d.uri_host, body=self.sdp(),
                            ctype="application/sdp", local=self.s.local, call_id=self.call_id,
                            from_tag=self.tag, contact=self.contact, to_user=self.user,
                            from_user="+15551230000", extra=self.extra,
                            max_forwards=self.max_forwards)
        self.s.send(msg, self.route_target)
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.s.recv(max(0.01, deadline - time.time()))
            if data is None:
                break
            r = parse_response(data)
            if not r:
                continue
            st, reason, hdrs, body = r
            if st < 200:
                continue
            self.final = r
            to = hdrs.get("to", [""])[0]
            m = re.search(r";tag=([^;>\s]+)", to)
            self.to_tag = m.group(1) if m else None
            if st < 300:
                m = re.search(rb"c=IN IP4 (\S+)", body)
                p = re.search(rb"m=audio (\d+)", body)
                if m and p:
                    self.remote_media = (m.group(1).decode(), int(p.group(1)))
                if ack:
                    self.ack()
            else:
                self._send_in_dialog("ACK", cseq=1)
            return st
        return None

    def _send_in_dialog(self, method, cseq=None, body=b"", ctype=None, extra=""):
        ruri = "sip:%s@%s" % (self.user, self.d.uri_host)
        msg = build_request(method, ruri, self.d.uri_host, body=body, ctype=ctype, extra=extra,
                            local=self.s.local, call_id=self.call_id, from_tag=self.tag,
                            cseq=cseq or self.cseq, contact=self.contact, to_tag=self.to_tag,
                            to_user=self.user, from_user="+15551230000")
        self.s.send(msg, self.route_target)

    def ack(self):
        self._send_in_dialog("ACK", cseq=1)

    def send_rtp(self, count, pt=0, ssrc=0x1234abcd, start_seq=1):
        for i in range(count):
            hdr = bytes([0x80, pt]) + ((start_seq + i) & 0xffff).to_bytes(2, "big") + \
                (i * 160).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
            self.rtp.sendto(hdr + b"\xff" * 160, self.remote_media)
            time.sleep(0.002)  # pacing, not synchronisation

    def count_rtp(self, timeout, want):
        """Count RTP packets received until `want` arrived or timeout."""
        return len(self.rtp_ssrcs(timeout, want))

    def rtp_ssrcs(self, timeout, want):
        """SSRCs of the RTP packets received, until `want` came or timeout."""
        got = []
        deadline = time.time() + timeout
        while len(got) < want and time.time() < deadline:
            self.rtp.settimeout(max(0.01, deadline - time.time()))
            try:
                data, _ = self.rtp.recvfrom(2048)
            except (socket.timeout, OSError):
                break
            if len(data) >= 12 and data[0] & 0xc0 == 0x80:
                got.append(int.from_bytes(data[8:12], "big"))
        return got

    def drain_rtp(self):
        self.rtp.setblocking(False)
        try:
            while True:
                self.rtp.recvfrom(2048)
        except OSError:
            pass

    def request(self, method, extra="", timeout=5):
        """An in-dialog request; returns (status, reason) of its final response."""
        self.cseq += 1
        self._send_in_dialog(method, extra=extra)
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.s.recv(max(0.01, deadline - time.time()))
            if data is None:
                return None
            r = parse_response(data)
            if r and r[0] >= 200 and method in r[2].get("cseq", [""])[0]:
                return r[0], r[1]
            if not r:
                self._answer(data)
        return None

    def bye(self, timeout=5):
        """BYE; the final status, or None."""
        r = self.request("BYE", timeout=timeout)
        return r and r[0]

    def _answer(self, data):
        """200 to an in-dialog request."""
        head = data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
        if head[0].startswith("ACK"):
            return head[0]
        keep = [h for h in head[1:] if h.split(":")[0].strip().lower() in
                ("via", "from", "to", "call-id", "cseq", "v", "f", "t", "i")]
        body = b""
        extra = []
        if head[0].startswith("INVITE"):
            body = self.sdp()
            extra = ["Content-Type: application/sdp",
                     "Contact: <sip:raw@%s:%d>" % self.s.local]
        if head[0].startswith("BYE"):
            self.bye_received = True
        resp = "\r\n".join(["SIP/2.0 200 OK"] + keep + extra +
                           ["Content-Length: %d" % len(body)]) + "\r\n\r\n"
        self.s.send(resp.encode() + body, self.route_target)
        return head[0]

    def serve_until(self, method, timeout):
        """Answer in-dialog requests until one with `method` came; returns
        its request line, or None on timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.s.recv(max(0.01, deadline - time.time()))
            if data is None:
                return None
            if parse_response(data) is None:
                line = self._answer(data)
                if line and line.startswith(method + " "):
                    return line
        return None

    def serve(self, timeout):
        """Answer in-dialog requests for up to timeout s; returns the first
        request lines seen."""
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.s.recv(max(0.01, deadline - time.time()))
            if data is None:
                break
            if parse_response(data) is None:
                seen.append(self._answer(data))
                if self.bye_received:
                    break
        return seen

    def send_rtcp(self, count):
        """RTCP receiver reports to the far end's RTP port + 1."""
        for i in range(count):
            rr = bytes([0x81, 201, 0, 7]) + (0x1234abcd).to_bytes(4, "big") + bytes(24)
            self.rtcp.sendto(rr, (self.remote_media[0], self.remote_media[1] + 1))
            time.sleep(0.002)

    def close(self):
        self.s.close()
        if self.rtp:
            self.rtp.close()
        if self.rtcp:
            self.rtcp.close()


class UdpResponder(threading.Thread):
    """A far end in Python on a UDP port of its own: every request whose
    method is in `methods` is kept (self.requests, text) and answered with
    the response answer(text, n) returns (status line, extra header lines),
    n counting the kept requests from 1; its Via, From, To (tagged),
    Call-ID and CSeq are copied. For gateways and registrars whose answers
    SIPp cannot vary (by Call-ID, by count)."""

    def __init__(self, methods, answer):
        super().__init__(daemon=True)
        self.methods = methods
        self.answer = answer
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((HOST, 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.requests = []
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                data, addr = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            if text.split(" ", 1)[0] not in self.methods:
                continue
            self.requests.append(text)
            status, extra = self.answer(text, len(self.requests))
            head = text.split("\r\n\r\n")[0].split("\r\n")
            keep = [h for h in head[1:] if h.split(":")[0].strip().lower() in
                    ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")]
            keep = [h + ";tag=py" if h.lower().startswith(("to:", "t:")) and "tag=" not in h
                    else h for h in keep]
            resp = "\r\n".join(["SIP/2.0 " + status] + keep + list(extra) +
                               ["Content-Length: 0"])
            self.s.sendto((resp + "\r\n\r\n").encode(), addr)

    def close(self):
        self.stop = True
        self.s.close()


# ---------------------------------------------------------------- helpers

class Webhooks:
    """tests/tools/webhook_receiver.py as a process; events read from its
    output file (one JSON object per line, signature already verified)."""

    def __init__(self, t, secret=None, fail_first=0, fail_status=None, delay=0, name=None):
        self.t = t
        self.secret = secret or base64.b64encode(os.urandom(24)).decode()
        # a test's second receiver (one per cluster node) gets files of its own
        if name is None:
            n = 1
            while os.path.exists(t.path("webhooks%s.jsonl" % ("-%d" % n if n > 1 else ""))):
                n += 1
            name = "webhooks-%d" % n if n > 1 else "webhooks"
        self.out = t.path(name + ".jsonl")
        open(self.out, "a").close()
        args = ["python3", os.path.join(TOOLS_DIR, "webhook_receiver.py"), "--port", "0",
                "--secret", self.secret, "--out", self.out]
        if fail_first:
            args += ["--fail-first", str(fail_first)]
        if fail_status:
            args += ["--fail-status", str(fail_status)]
        if delay:
            args += ["--delay", str(delay)]
        # --port 0: the kernel picks the port as it binds, so no race to lose
        self.err_path = t.path(name + ".err")
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL)
        t.procs.append(self.proc)
        first = _first_line(self.proc, 15, "webhook receiver", [self.err_path])
        m = re.match(rb"(\d+)\s*$", first)
        check(m, "webhook receiver did not report its port: %r" % first)
        self.port = int(m.group(1))
        self.url = "http://%s:%d/hook" % (HOST, self.port)

    def events(self):
        try:
            with open(self.out) as f:
                return [json.loads(l) for l in f if l.strip()]
        except OSError:
            return []

    def types(self):
        return [e.get("type") for e in self.events()]

    def wait_type(self, typ, timeout=15, count=1):
        return wait_for(lambda: self.types().count(typ) >= count, timeout,
                        "webhook %s (have %s)" % (typ, "?"))


def readable(objs, timeout):
    """The objects of objs (sockets, files or descriptors) that can be read
    within timeout seconds. poll(), not select(): the runner holds well over
    1024 descriptors while the exhaustion tests run, and select() refuses
    any descriptor past FD_SETSIZE."""
    p = select.poll()
    by_fd = {}
    for o in objs:
        fd = o if isinstance(o, int) else o.fileno()
        by_fd[fd] = o
        p.register(fd, select.POLLIN | select.POLLPRI)
    return [by_fd[fd] for fd, _ in p.poll(max(0.0, timeout) * 1000)]


def _first_line(proc, timeout, what, outputs):
    """The first line proc writes to its stdout pipe, waited for under a
    deadline (a readline() would hang on a process that neither writes nor
    exits); StartFailure if it exits or stays silent."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.time() + timeout
    while b"\n" not in buf:
        left = deadline - time.time()
        if left <= 0:
            raise StartFailure("%s (no first line after %.0fs)" % (what, timeout), None,
                               _tail(outputs))
        r = readable([fd], min(left, 0.2))
        chunk = os.read(fd, 4096) if r else b""
        if r and not chunk:
            proc.wait(5)
            raise StartFailure(what, proc.returncode, _tail(outputs))
        buf += chunk
    return buf.split(b"\n", 1)[0]


def start_process(t, args, name, ready, timeout=30, what=None, outputs=None, **kw):
    """T.popen, then wait until ready(proc) (or StartFailure with its exit
    status and output should it exit first): for helpers that start a
    server process (baresip, Kamailio, ...). ready may be
    lambda p: bound_by(p.pid, [("udp", port)])."""
    p = t.popen(args, name, **kw)
    wait_started(p, lambda: ready(p), timeout, what or "%s (%s)" % (name, " ".join(args)),
                 outputs=outputs if outputs is not None else [p.out_path])
    return p
_ns_ok = None


def mount_namespace_ok():
    """Whether this process may run a command in a mount namespace of its
    own with another /etc/resolv.conf bound over the real one (root +
    unshare); raises Skip with the reason when not."""
    global _ns_ok
    if _ns_ok is None:
        if os.geteuid() != 0 or not shutil.which("unshare"):
            _ns_ok = "needs root and unshare(1) for a private /etc/resolv.conf"
        else:
            r = subprocess.run(["unshare", "-m", "sh", "-c",
                                "mount --bind /dev/null /etc/resolv.conf"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _ns_ok = True if r.returncode == 0 else \
                "unshare -m / mount --bind failed: %s" % r.stderr.strip()[:200]
    if _ns_ok is not True:
        raise Skip(_ns_ok)


class BlackholeDns:
    """tests/tools/blackhole_dns.py on port 53 of a loopback address of its
    own (resolv.conf has no port), plus a resolv.conf naming it. wrap() turns
    a command into one that sees that resolv.conf (its own mount namespace:
    the machine's resolver is untouched). Queries are read, never answered;
    queries() lists (proto, name) as they arrive."""

    def __init__(self, t, options=""):
        mount_namespace_ok()
        self.t = t
        self.out = None
        for _ in range(50):
            addr = "127.53.%d.%d" % (random.randrange(256), random.randrange(1, 255))
            out = t.path("dns-%s.out" % addr)
            p = subprocess.Popen(["python3", os.path.join(TOOLS_DIR, "blackhole_dns.py"),
                                  "--address", addr], stdout=open(out, "w"),
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            t.procs.append(p)
            try:
                wait_for(lambda: p.poll() is not None or "listening" in _read(out), 10,
                         "blackhole DNS on %s" % addr)
            except TestFailure:
                p.kill()
                continue
            if p.poll() is None:
                self.proc, self.address, self.out = p, addr, out
                break
        check(self.out, "no loopback address free for a blackhole DNS")
        self.resolv = t.path("resolv-blackhole.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver %s\n%s" % (self.address, options))

    def wrap(self, args):
        return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                self.resolv] + list(args)

    def queries(self):
        return [tuple(l.split()[1:3]) for l in _read(self.out).splitlines()
                if l.startswith("query ")]

    def names(self):
        return [n for _, n in self.queries()]


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def verify_signature(secret_b64, timestamp, body, signature):
    key = base64.b64decode(secret_b64)
    mac = hmac.new(key, ("%s.%s" % (timestamp, body)).encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(mac).decode(), signature)


# ---------------------------------------------------------------- registry

CASES = []


def case(fn=None, *, slow=False):
    """Register a test function taking a T."""
    def reg(f):
        CASES.append((f.__module__.replace("test_", "") + "." + f.__name__, f, slow))
        return f
    return reg(fn) if fn else reg


def sipp_status(sipp):
    """(code, reason, retry_after) logged by caller_reject.xml, or None."""
    try:
        with open(sipp.log_path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"status (\d+) ([^\r\n]*?) retry-after (\S*)", text)
    return (int(m.group(1)), m.group(2), m.group(3)) if m else None
