"""Trunk registration (issue 12 item 2, SPEC 10 `register = true`): a
REGISTER to the trunk's first gateway, answered once per challenge with
the trunk's credentials, refreshed before it expires, retried with
back-off when refused; sipxfer_trunk_registered{trunk} says whether it
holds."""
import socket
import threading

from harness import HOST, case, check

GOOD_AUTH = 'auth = { username = "acct"; password = "secret"; }; register = true;'
METRIC = 'sipxfer_trunk_registered{trunk="carrier"}'


def reg_daemon(t, registrar):
    registrar.start()
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:5070" % HOST},
                 gateway="sip:%s:%d" % (HOST, registrar.port), trunk_extra=GOOD_AUTH)
    d.start()
    return d


@case
def test_trunk_registers_with_credentials_and_refreshes(t):
    """401 answered with acct/secret (SIPp verifyauth, 403 otherwise),
    registered = 1; the registrar's Expires: 2 is refreshed in time."""
    registrar = t.sipp("registrar.xml")
    d = reg_daemon(t, registrar)
    d.wait_metric(METRIC, 1)
    registrar.check_ok(20, "registrar saw the authenticated REGISTER and its refresh")
    check(d.metric(METRIC) == 1, "still registered after the refresh")
    check("secret" not in d.log_text(), "the password is never logged")
    d.stop()
    d.check_clean_exit()


class RefusingRegistrar(threading.Thread):
    """403 to the first REGISTER, 200 (Expires: 600) to every later one,
    whatever its Call-ID (a retry after a failure may start a new one)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((HOST, 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.seen = 0
        self.stop = False

    def start(self):  # as a Sipp is started by reg_daemon
        super().start()

    def run(self):
        while not self.stop:
            try:
                data, addr = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            if not text.startswith("REGISTER "):
                continue
            self.seen += 1
            head = text.split("\r\n\r\n")[0].split("\r\n")
            keep = [h for h in head[1:] if h.split(":")[0].strip().lower() in
                    ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m")]
            status = "403 Forbidden" if self.seen == 1 else "200 OK"
            extra = [] if self.seen == 1 else ["Expires: 600"]
            resp = "\r\n".join(["SIP/2.0 " + status] + keep + extra + ["Content-Length: 0"])
            self.s.sendto((resp + "\r\n\r\n").encode(), addr)

    def close(self):
        self.stop = True
        self.s.close()


@case
def test_refused_registration_is_retried(t):
    """A 403 leaves the trunk unregistered (metric 0) and is retried after
    the back-off (2 s); the second REGISTER is taken (metric 1)."""
    registrar = RefusingRegistrar()
    try:
        d = reg_daemon(t, registrar)
        d.wait_log(r"REGISTER to .* failed 403")
        check(d.metric(METRIC) == 0, "unregistered after the 403")
        d.wait_metric(METRIC, 1, timeout=20)
        check(registrar.seen >= 2, "REGISTERs seen: %d" % registrar.seen)
        d.stop()
        d.check_clean_exit()
    finally:
        registrar.close()
