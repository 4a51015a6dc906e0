"""Issue 12 item 9: URIs kept whole. A gateway's or room's ;transport= and
other parameters stay in the Request-URI (so the INVITE really goes over
TCP), sit inside the To header's <...>, and Referred-By names the room by
its public name, never its internal address. Checked on the wire, from
SIPp's message trace of what it received."""
import re

from harness import HOST, Webhooks, case, check, free_port, wait_for
from test_core import caller
from test_transfer import connected_caller, session, setup, transfer
from test_refer import out_of_path, outcome, target_uri


def traced(t, scenario, **kw):
    """t.sipp() that keeps every message it sends and receives."""
    port = free_port()
    messages = t.path("msgs-%s-%d.log" % (scenario, port))
    sipp = t.sipp(scenario, port=port, extra=["-trace_msg", "-message_file", messages], **kw)
    sipp.messages = messages
    return sipp


def transfer_confirmed(d, room, sid, to, **kw):
    """transfer(), once the caller's ACK is in: the session reads
    "connected" from the 200 on, a transfer is refused (409) until the ACK."""
    def attempt():
        st, obj = transfer(d, room, sid, to, **kw)
        busy = st == 409 and "not connected" in str((obj or {}).get("info"))
        return None if busy else (st, obj)
    return wait_for(attempt, 10, "the call to take a transfer")


def received(sipp, method):
    """[(transport, start line, {header: value})] of the `method` requests
    sipp received, in order. Read once sipp has exited (its trace is
    buffered)."""
    with open(sipp.messages, errors="replace") as f:
        text = f.read()
    out = []
    for m in re.finditer(r"(UDP|TCP) message received \[\d+\] bytes :\n\n(.*?)(?=\n-{10,}|\Z)",
                         text, re.S):
        lines = m.group(2).replace("\r", "").split("\n")
        if not lines[0].startswith(method + " "):
            continue
        headers = {}
        for ln in lines[1:]:
            if not ln:
                break
            name, _, value = ln.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        out.append((m.group(1), lines[0], headers))
    return out


def first_invite(sipp):
    inv = received(sipp, "INVITE")
    check(inv, "%s received no INVITE" % sipp.name)
    return inv[0]


@case
def test_e164_through_tcp_gateway_keeps_transport_and_user_phone(t):
    gw = traced(t, "target_pstn.xml", transport="t1")
    room = t.sipp("room.xml")
    w = Webhooks(t)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room.port)},
                 gateway="sip:%s:%d;transport=tcp" % (HOST, gw.port),
                 **{"webhooks.url": w.url, "webhooks.secret": w.secret})
    gw.start()
    room.start()
    d.start()
    c, sid = connected_caller(t, d)
    st, obj = transfer_confirmed(d, "room-a", sid, "+15557654321", callerId="+15550001111")
    check(st == 200, "transfer: %s %s" % (st, obj))
    room.check_ok(20)
    w.wait_type("calltransfer.completed")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    gw.check_ok(20, "TCP gateway must get the INVITE and the BYE")
    c.check_ok(20)
    want = "sip:+15557654321@%s:%d;transport=tcp;user=phone" % (HOST, gw.port)
    tp, line, h = first_invite(gw)
    check(tp == "TCP", "INVITE to a ;transport=tcp gateway came over %s" % tp)
    check(line == "INVITE %s SIP/2.0" % want, "Request-URI: %r, want %r" % (line, want))
    check(h.get("to") == "<%s>" % want,
          "To must hold the URI with its parameters inside <>: %r" % h.get("to"))
    bye = received(gw, "BYE")
    check(bye and bye[0][0] == "TCP", "BYE to the gateway: %s" % [b[:2] for b in bye])
    d.check_clean_exit()


@case
def test_room_uri_parameters_inside_to(t):
    room = traced(t, "room.xml", transport="t1")
    uri = "sip:room-a@%s:%d;transport=tcp" % (HOST, room.port)
    d = t.daemon(rooms={"room-a": uri})
    room.start()
    d.start()
    c = caller(t, d, duration=200).start()
    c.check_ok(30, "UDP caller to a TCP room")
    room.check_ok(30, "room over TCP")
    tp, line, h = first_invite(room)
    check(tp == "TCP", "INVITE to the room came over %s" % tp)
    check(line == "INVITE %s SIP/2.0" % uri, "Request-URI: %r" % line)
    check(h.get("to") == "<%s>" % uri, "To: %r, want <%s>" % (h.get("to"), uri))
    d.wait_idle()
    d.check_clean_exit()


@case
def test_transfer_to_sip_uri_with_transport_tcp(t):
    target = traced(t, "target_sip.xml", transport="t1")
    d, rooms, w = setup(t)
    target.start()
    c, sid = connected_caller(t, d)
    uri = "sip:target@%s:%d;transport=tcp" % (HOST, target.port)
    st, obj = transfer_confirmed(d, "room-a", sid, uri + "?X-Foo=bar")
    check(st == 200, "transfer: %s %s" % (st, obj))
    rooms["room-a"].check_ok(20, "old room must get BYE")
    w.wait_type("calltransfer.completed")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    target.check_ok(20, "TCP target must see X-Foo and get BYE")
    c.check_ok(20)
    tp, line, h = first_invite(target)
    check(tp == "TCP", "INVITE to the target came over %s" % tp)
    check(line == "INVITE %s SIP/2.0" % uri, "Request-URI: %r" % line)
    check(h.get("to") == "<%s>" % uri, "To: %r, want <%s>" % (h.get("to"), uri))
    d.wait_idle()
    d.check_clean_exit()


@case
def test_sip_refer_referred_by_names_room_in_rooms_domain(t):
    """Issue 12.9 overrides SPEC section 8 ("Referred-By: <room uri>"): the
    carrier sees sip:<room>@<rooms.domain>, never the room's address."""
    d, rooms, w = setup(t, rooms=("room-a",), **{"rooms.domain": "rooms.carrier-facing.test"})
    c = traced(t, "refer_transferee.xml", remote=d.uri_host, service="room-a",
               keys={"notify1": "100 Trying", "notify2": "200 OK"}).start()
    sid = d.wait_session()[0]
    wait_for(lambda: (session(d, sid) or {}).get("state") == "connected", 10, "connected")
    st, obj = transfer_confirmed(d, "room-a", sid, target_uri(), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    out_of_path(d, rooms, c)
    outcome(w, sid, "calltransfer.completed")
    refer = received(c, "REFER")
    check(refer, "caller side received no REFER")
    rb = refer[0][2].get("referred-by")
    check(rb == "<sip:room-a@rooms.carrier-facing.test>", "Referred-By: %r" % rb)
    check(str(rooms["room-a"].port) not in rb, "Referred-By leaks the room's address: %r" % rb)
    d.check_clean_exit()
