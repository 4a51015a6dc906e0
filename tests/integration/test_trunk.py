"""Issue 12: carrier trunks. Digest authentication toward a trunk gateway
(401 and 407 answered once with trunks[].auth, never passed to the
caller; refused credentials fail the leg and keep the caller), the SPEC
section 10 trunk keys in --check-config, and credentials reloaded by
SIGHUP."""
import hashlib
import re
import signal
import subprocess

import time

from harness import HOST, SIPXFERD, RawCall, Webhooks, case, check, parse_response
from test_transfer import (_failed_transfer, connected_caller, events_for, session, transfer,
                           xfer_types)
from test_uri import received, traced, transfer_confirmed

NUMBER = "+15557654321"
GOOD_AUTH = 'auth = { username = "acct"; password = "secret"; };'


def trunk_setup(t, gw, auth=GOOD_AUTH, room_calls=1):
    """A room, a webhook receiver and a daemon whose trunk sends E.164
    numbers to gw with the credentials auth, all started."""
    room = t.sipp("room.xml", calls=room_calls)
    w = Webhooks(t)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)},
                 gateway="sip:%s:%d" % (HOST, gw.port), trunk_extra=auth,
                 **{"webhooks.url": w.url, "webhooks.secret": w.secret})
    gw.start()
    room.start()
    d.start()
    return d, room, w


def failed_event(w, sid):
    ev = [e for e in events_for(w, sid) if e["type"] == "calltransfer.failed"]
    check(ev, "no calltransfer.failed for %s: %s" % (sid, xfer_types(w, sid)))
    return ev[-1]["payload"]


def still_on_room_a(d, sid):
    s = session(d, sid)
    check(s and s.get("room") == "room-a" and s.get("state") == "connected",
          "the caller must stay bridged to room-a: %s" % s)


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def digest_params(value):
    """{name: value} of a 'Digest a="b", c=d' header value."""
    check(value.lower().startswith("digest "), "not a Digest header: %r" % value)
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in re.finditer(r'([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value[7:])}


@case
def test_trunk_401_answered_with_credentials(t):
    """The gateway challenges the transfer's INVITE with 401; sipxferd
    answers once with trunks[0].auth (checked by SIPp's verifyauth) and the
    transfer completes. The caller never sees the challenge."""
    gw = t.sipp("gateway_auth401.xml")
    d, room, w = trunk_setup(t, gw)
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.completed", 20)
    check("calltransfer.failed" not in xfer_types(w, sid), "events: %s" % xfer_types(w, sid))
    d.wait_log(r'INVITE challenged \(401, realm "carrier.test"\): answering as "acct"')
    check("secret" not in d.log_text(), "the password must never be logged")
    room.check_ok(20, "room-a must be released after the transfer")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    gw.check_ok(20, "gateway must get valid credentials, then the BYE")
    c.check_ok(20, "the caller saw only its own call (no 401 reached it)")
    d.check_clean_exit()


@case
def test_trunk_407_digest_response_is_right(t):
    """A 407 (Proxy-Authenticate with qop="auth" and an opaque) is
    answered with a Proxy-Authorization that echoes the opaque, says
    qop=auth with a cnonce and nc, and whose response is
    MD5(HA1:nonce:nc:cnonce:auth:HA2), computed here from the trace of what
    the gateway received."""
    gw = traced(t, "gateway_auth407.xml")
    d, room, w = trunk_setup(t, gw)
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.completed", 20)
    room.check_ok(20)
    d.api("DELETE", "/v1/sessions/%s" % sid)
    gw.check_ok(20, "gateway must get Proxy-Authorization, then the BYE")
    c.check_ok(20)
    d.check_clean_exit()

    invites = received(gw, "INVITE")
    check(len(invites) == 2, "gateway got %d INVITEs, want 2" % len(invites))
    check("proxy-authorization" not in invites[0][2], "first INVITE already had credentials")
    p = digest_params(invites[1][2].get("proxy-authorization", ""))
    check(p.get("username") == "acct" and p.get("realm") == "proxy.carrier.test",
          "credentials: %s" % p)
    ruri = invites[1][1].split(" ")[1]
    check(p.get("uri") == ruri, "digest uri %r is not the Request-URI %r" % (p.get("uri"), ruri))
    check(p.get("qop") == "auth" and p.get("cnonce") and re.fullmatch(r"[0-9a-fA-F]{8}",
                                                                       p.get("nc", "")),
          "qop=auth needs qop, cnonce and an 8-hex nc: %s" % p)
    check(p.get("opaque", "").startswith("op"), "the opaque must be echoed: %s" % p)
    want = md5("%s:%s:%s:%s:auth:%s" % (md5("acct:proxy.carrier.test:secret"), p.get("nonce"),
                                        p.get("nc"), p.get("cnonce"),
                                        md5("INVITE:" + p.get("uri", ""))))
    check(p.get("response") == want, "digest response %r, want %r" % (p.get("response"), want))


@case
def test_trunk_wrong_password_fails_leg_then_sighup_fixes_it(t):
    """Refused credentials (a second 401) fail the transfer with 401, once:
    no third INVITE, the caller stays on room-a. The password is read from
    the running configuration at each challenge: after SIGHUP with the right
    one the same call's next transfer completes."""
    gw = traced(t, "gateway_auth401.xml", calls=2)
    d, room, w = trunk_setup(t, gw, auth='auth = { username = "acct"; password = "wrong"; };')
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.failed", 20)
    p = failed_event(w, sid)
    check(p.get("sip_status") == 401, "failed payload %s" % p)
    still_on_room_a(d, sid)
    d.wait_log(r"INVITE challenged again \(401\) after our credentials: refused")

    d.trunk_extra = GOOD_AUTH
    d.write_config()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reloaded ")
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "second transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.completed", 20)
    room.check_ok(20)
    d.api("DELETE", "/v1/sessions/%s" % sid)
    gw.check_ok(30, "call 1: challenged twice and given up; call 2: authorized")
    c.check_ok(20)
    d.check_clean_exit()
    invites = received(gw, "INVITE")
    check(len(invites) == 4, "the gateway got %d INVITEs, want 2 per transfer (no third try)"
          % len(invites))
    p = digest_params(invites[1][2].get("authorization", ""))
    check(p.get("username") == "acct" and p.get("realm") == "carrier.test", "credentials %s" % p)


@case
def test_trunk_bye_challenge_answered(t):
    """An in-dialog request challenged: the gateway (the caller's far end
    after the transfer) answers the BYE with 401; the BYE goes again with
    credentials and the dialog ends cleanly."""
    gw = t.sipp("gateway_auth_bye.xml")
    d, room, w = trunk_setup(t, gw)
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.completed", 20)
    room.check_ok(20)
    d.api("DELETE", "/v1/sessions/%s" % sid)
    gw.check_ok(20, "the second BYE must carry valid credentials")
    d.wait_log(r'BYE challenged \(401, realm "carrier.test"\): answering as "acct"')
    c.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


def reinvite(call, body, timeout=10):
    """A re-INVITE from a RawCall with body; (status, body) of its final
    response, ACKed. Other requests meanwhile are answered 200."""
    call.cseq += 1
    call._send_in_dialog("INVITE", body=body, ctype="application/sdp")
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = call.s.recv(max(0.01, deadline - time.time()))
        if data is None:
            break
        r = parse_response(data)
        if not r:
            call._answer(data)
        elif r[0] >= 200 and "INVITE" in r[2].get("cseq", [""])[0]:
            call._send_in_dialog("ACK", cseq=call.cseq)
            return r[0], r[3]
    return None, None


@case
def test_trunk_reinvite_challenge_answered(t):
    """The caller puts the call on hold after its transfer to the gateway:
    the re-INVITE passed on to the gateway is challenged 401, sent again
    with credentials (SIPp verifyauth) and the gateway's answer reaches
    the caller, never the challenge."""
    gw = t.sipp("gateway_auth_reinvite.xml")
    d, room, w = trunk_setup(t, gw)
    call = RawCall(d)
    try:
        check(call.invite() == 200, "call")
        sid = d.wait_session()[0]
        st, obj = transfer_confirmed(d, "room-a", sid, NUMBER)
        check(st == 200, "transfer: %s %s" % (st, obj))
        w.wait_type("calltransfer.completed", 20)
        room.check_ok(20)
        hold = call.sdp().replace(b"o=raw 1 1 ", b"o=raw 1 2 ") + b"a=sendonly\r\n"
        st, body = reinvite(call, hold)
        check(st == 200, "hold re-INVITE: %s (a challenge must not reach the caller)" % st)
        check(b"a=recvonly" in (body or b""), "the gateway's answer must reach the caller: %r"
              % body)
        d.wait_log(r're-INVITE challenged \(401, realm "carrier.test"\): answering as "acct"')
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    gw.check_ok(20, "the re-INVITE sent again must carry valid credentials")
    d.wait_idle()
    d.check_clean_exit()


@case
def test_trunk_realm_mismatch_not_answered(t):
    """trunks[].auth.realm limits the credentials to that realm: a
    challenge for another realm is not answered and fails the leg."""
    gw = t.sipp("gateway_auth401.xml", timeout=10)  # waits in vain for credentials
    d, room, w = trunk_setup(t, gw, auth='auth = { username = "acct"; password = "secret"; '
                                         'realm = "other.test"; };')
    c, sid = connected_caller(t, d)
    st, obj = transfer(d, "room-a", sid, NUMBER)
    check(st == 200, "transfer: %s %s" % (st, obj))
    w.wait_type("calltransfer.failed", 20)
    check(failed_event(w, sid).get("sip_status") == 401, "failed payload")
    still_on_room_a(d, sid)
    d.wait_log(r'realm "carrier.test", trunk "carrier" answers only "other.test"')
    d.api("DELETE", "/v1/sessions/%s" % sid)
    room.check_ok(20)
    c.check_ok(20)
    gw.check_failed(30)  # it waited for credentials that never came
    d.check_clean_exit()


@case
def test_trunk_check_config_section10(t):
    """--check-config takes SPEC section 10's trunk block and refuses its
    mistakes with FILE:LINE and the key."""
    d = t.daemon(rooms={"room-a": "sip:room-a@127.0.0.1:5070"})
    good = ('gateways = [ "sip:127.0.0.1:5090", "sip:127.0.0.1:5091;transport=tcp" ];\n'
            '  auth = { username = "acct"; password = "secret"; };\n'
            '  register = false; prefixes = [ "+1" ]; number_format = "e164";\n'
            '  identity = "pai"; diversion = true; options_interval = 30;\n'
            '  refer_target = "tel"; media_sources = [ "203.0.113.0/24" ];')

    def run(extra, name):
        d.trunk_extra = extra
        path = d.write_config(t.path(name))
        r = subprocess.run([SIPXFERD, "--check-config", "-c", path], capture_output=True,
                           text=True)
        return path, r

    path, r = run(good, "good.conf")
    check(r.returncode == 0, "SPEC 10 trunk refused: %s" % r.stderr)
    for extra, key in (
            ('auth = { username = "acct"; pasword = "x"; };', "trunks[0].auth.pasword"),
            ('gateways = [ "sip:127.0.0.1:5090", "sip:gw;transport=sctp" ];',
             "trunks[0].gateways[1]"),
            ('identity = "ppi";', "trunks[0].identity"),
            ('prefixes = [ "1" ];', "trunks[0].prefixes[0]")):
        path, r = run(extra, "bad.conf")
        line = [i + 1 for i, ln in enumerate(open(path)) if "trunks = (" in ln][0]
        check(r.returncode != 0, "accepted: %s" % extra)
        check(("%s:%d:" % (path, line)) in r.stderr and key in r.stderr,
              "error lacks %s:%d: and %s: %r" % (path, line, key, r.stderr))


@case
def test_trunk_challenge_without_credentials_ends_the_leg(t):
    """A target that is no trunk gateway answers 407: nothing to answer it
    with, so the transfer fails with 407 and the caller stays on room-a.
    nua keeps such a handle waiting for credentials: the leg layer ends it,
    else the call never ended (wait_idle) and sipxferd could not drain."""
    _failed_transfer(t, "room_challenge.xml", 407)


@case
def test_trunk_room_challenge_gives_caller_502(t):
    """A room answering 407 (no credentials for it): the caller gets 502,
    never the challenge, and the call is cleaned up."""
    room = t.sipp("room_challenge.xml")
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    room.start()
    d.start()
    call = RawCall(d)
    try:
        check(call.invite() == 502, "caller got %s, want 502" % (call.final and call.final[0]))
        check("proxy-authenticate" not in call.final[2], "the challenge reached the caller")
    finally:
        call.close()
    room.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()
