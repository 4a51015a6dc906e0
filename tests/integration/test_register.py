"""Trunk registration (issue 12 item 2, SPEC 10 `register = true`): a
REGISTER to the trunk's first gateway, answered once per challenge with
the trunk's credentials, refreshed before it expires, retried with
back-off when refused; sipxfer_trunk_registered{trunk} says whether it
holds."""
from harness import HOST, UdpResponder, case, check

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


def RefusingRegistrar():
    """403 to the first REGISTER, 200 (Expires: 600) to every later one,
    whatever its Call-ID (a retry after a failure may start a new one)."""
    def answer(text, n):
        if n == 1:
            return "403 Forbidden", ()
        contact = [h for h in text.split("\r\n") if h.lower().startswith(("contact:", "m:"))]
        return "200 OK", contact + ["Expires: 600"]
    return UdpResponder(("REGISTER",), answer)


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
        check(len(registrar.requests) >= 2, "REGISTERs seen: %d" % len(registrar.requests))
        d.stop()
        d.check_clean_exit()
    finally:
        registrar.close()
