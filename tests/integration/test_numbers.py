"""Carrier trunks, issue 12 items 4-6: numbers routed to the trunk with the
longest matching prefix and written in its number_format; the caller's
identity (PAI > RPID > From, Privacy) toward rooms and out to trunks;
Diversion; a sipRefer to a number names a tel: URI. Gateways here are a
Python UDP recorder that answers 486, so each transfer fails (the caller
staying on its room) once the INVITE has been seen on the wire."""
import re
import time

from harness import HOST, Daemon, RawCall, UdpResponder, case, check, wait_for
from test_transfer import session, transfer


def Gateway():
    """A gateway that records the INVITEs it gets and answers each 486."""
    g = UdpResponder(("INVITE",), lambda text, n: ("486 Busy Here", ()))
    g.invites = g.requests
    return g


def hdr(msg, name):
    m = re.search(r"^%s:[ \t]*(.*)$" % re.escape(name), msg, re.M | re.I)
    return m.group(1).strip() if m else None


def numbers_daemon(t, trunks_text, room="room.xml"):
    rsipp = t.sipp(room, timeout=60)
    rsipp.start()
    d = Daemon(t, rooms={"room-a": "sip:room-a@%s:%d" % (HOST, rsipp.port)})
    d.trunks_text = trunks_text
    d.write_config()
    d.start()
    return d, rsipp


def connected(d, extra=""):
    call = RawCall(d, extra=extra)
    check(call.invite() == 200, "call")
    sid = d.wait_session()[0]
    wait_for(lambda: (session(d, sid) or {}).get("state") == "connected", 10, "connected")
    return call, sid


def transfer_seen(d, sid, gw, number, **extra):
    before = len(gw.invites)
    st, obj = transfer(d, "room-a", sid, number, **extra)
    check(st == 200, "transfer %s %s" % (st, obj))
    wait_for(lambda: len(gw.invites) > before, 10, "INVITE at the gateway")
    # 486: the transfer fails, the caller stays with its room
    wait_for(lambda: ((session(d, sid) or {}).get("transfer") or {}).get("state") == "failed",
             10, "transfer failed on 486")
    check(session(d, sid)["room"] == "room-a", "caller kept on its room")
    return gw.invites[-1]


@case
def test_numbers_routed_by_longest_prefix_in_each_format(t):
    """+44 goes to the UK trunk (national format: no +, no user=phone),
    +1 to the US one (e164), +1 212 to the NYC one (longest prefix, tel:
    with the gateway as Route), anything else to the trunk without prefixes."""
    gws = {k: Gateway() for k in ("us", "nyc", "uk", "any")}
    for g in gws.values():
        g.start()
    src = '[ "127.0.0.0/8" ]'
    trunks = ", ".join([
        '{ name = "us"; sources = %s; gateway = "sip:%s:%d"; prefixes = [ "+1" ]; }'
        % (src, HOST, gws["us"].port),
        '{ name = "nyc"; sources = %s; gateway = "sip:%s:%d"; prefixes = [ "+1212" ];'
        ' number_format = "tel"; }' % (src, HOST, gws["nyc"].port),
        '{ name = "uk"; sources = %s; gateway = "sip:%s:%d"; prefixes = [ "+44" ];'
        ' number_format = "national"; }' % (src, HOST, gws["uk"].port),
        '{ name = "any"; sources = %s; gateway = "sip:%s:%d"; }' % (src, HOST, gws["any"].port),
    ])
    d, room = numbers_daemon(t, trunks)
    call, sid = connected(d)
    try:
        inv = transfer_seen(d, sid, gws["us"], "+15551234567")
        check(inv.startswith("INVITE sip:+15551234567@%s:%d;user=phone " % (HOST, gws["us"].port)),
              "e164 Request-URI: %r" % inv.split("\r\n")[0])
        inv = transfer_seen(d, sid, gws["uk"], "+447700900123")
        check(inv.startswith("INVITE sip:447700900123@%s:%d SIP/2.0" % (HOST, gws["uk"].port)),
              "national Request-URI: %r" % inv.split("\r\n")[0])
        inv = transfer_seen(d, sid, gws["nyc"], "+12125550100")
        check(inv.startswith("INVITE tel:+12125550100 SIP/2.0"), "tel Request-URI: %r" %
              inv.split("\r\n")[0])
        check("tel:+12125550100" in (hdr(inv, "To") or ""), "To: %r" % hdr(inv, "To"))
        inv = transfer_seen(d, sid, gws["any"], "+33123456789")
        check(inv.startswith("INVITE sip:+33123456789@"), "catch-all trunk: %r" %
              inv.split("\r\n")[0])
        check(all(len(gws[k].invites) == 1 for k in gws), "one INVITE each: %s" %
              {k: len(g.invites) for k, g in gws.items()})
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
        for g in gws.values():
            g.close()
    room.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_identity_out_to_trunks_and_diversion(t):
    """The caller's asserted number (P-Asserted-Identity, over its From) goes
    out as From user plus P-Asserted-Identity (identity "pai") or
    Remote-Party-ID ("rpid"); callerId replaces it; Diversion names the
    room by its public name."""
    gw_pai, gw_rpid = Gateway(), Gateway()
    gw_pai.start()
    gw_rpid.start()
    src = '[ "127.0.0.0/8" ]'
    trunks = ", ".join([
        '{ name = "pai"; sources = %s; gateway = "sip:%s:%d"; prefixes = [ "+1" ];'
        ' identity = "pai"; diversion = true; }' % (src, HOST, gw_pai.port),
        '{ name = "rpid"; sources = %s; gateway = "sip:%s:%d"; prefixes = [ "+44" ];'
        ' identity = "rpid"; }' % (src, HOST, gw_rpid.port),
    ])
    d, room = numbers_daemon(t, trunks)
    call, sid = connected(d, extra="P-Asserted-Identity: <sip:+15557770000@carrier.example>")
    try:
        inv = transfer_seen(d, sid, gw_pai, "+15551234567")
        check(re.search(r"<sip:\+15557770000@", hdr(inv, "From") or ""), "From: %r" %
              hdr(inv, "From"))
        check(re.search(r"<sip:\+15557770000@[^>]*;user=phone>",
                        hdr(inv, "P-Asserted-Identity") or ""), "PAI: %r" %
              hdr(inv, "P-Asserted-Identity"))
        check(hdr(inv, "Diversion") ==
              "<sip:room-a@rooms.sipxfer.test>;reason=unconditional;counter=1",
              "Diversion: %r" % hdr(inv, "Diversion"))
        inv = transfer_seen(d, sid, gw_pai, "+15551234567", callerId="+15550001111")
        check(re.search(r"<sip:\+15550001111@", hdr(inv, "From") or ""), "callerId From: %r" %
              hdr(inv, "From"))
        check("+15550001111" in (hdr(inv, "P-Asserted-Identity") or ""), "callerId PAI")
        inv = transfer_seen(d, sid, gw_rpid, "+447700900123")
        rpid = hdr(inv, "Remote-Party-ID") or ""
        check(re.search(r"<sip:\+15557770000@.*;party=calling;screen=yes;privacy=off", rpid),
              "RPID: %r" % rpid)
        check(hdr(inv, "P-Asserted-Identity") is None, "no PAI toward an rpid trunk")
        check(hdr(inv, "Diversion") is None, "no Diversion where diversion is off")
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
        gw_pai.close()
        gw_rpid.close()
    room.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_identity_toward_the_room_and_privacy(t):
    """Toward the room: From user and P-Asserted-Identity carry the asserted
    number (RPID when there is no PAI); with Privacy: id the From is
    anonymous and Privacy: id goes along."""
    for extra, scenario in (
            ("Remote-Party-ID: <sip:+15554443333@carrier.example>;party=calling",
             "room_identity.xml"),
            ("P-Asserted-Identity: \"Ann\" <sip:+15554443333@carrier.example>\r\nPrivacy: id",
             "room_identity_private.xml")):
        d, room = numbers_daemon(t, '{ name = "c"; sources = [ "127.0.0.0/8" ]; }', room=scenario)
        call = RawCall(d, extra=extra)
        try:
            check(call.invite() == 200, "call (%s): the room checks its INVITE" % scenario)
            check(call.bye() == 200, "BYE")
        finally:
            call.close()
        room.check_ok(20, scenario)
        d.wait_idle()
        d.stop()


@case
def test_sip_refer_to_a_number_names_a_tel_uri(t):
    """sipRefer with toEndPoint +E164 on a call from a refer_target = "tel"
    trunk: the caller's REFER says Refer-To: <tel:+E164>; from a "sip"
    trunk: <sip:+E164@its gateway;user=phone>."""
    for form, want in (("tel", r"<tel:\+15551234567>"),
                       ("sip", r"<sip:\+15551234567@127\.0\.0\.1:5999;user=phone>")):
        d, room = numbers_daemon(
            t, '{ name = "c"; sources = [ "127.0.0.0/8" ]; gateway = "sip:127.0.0.1:5999";'
               ' refer_target = "%s"; }' % form)
        call, sid = connected(d)
        try:
            st, obj = transfer(d, "room-a", sid, "+15551234567", mode="sipRefer")
            check(st == 200, "sipRefer %s %s" % (st, obj))
            refer = None
            deadline = time.time() + 10
            while refer is None and time.time() < deadline:
                data = call.s.recv(max(0.01, deadline - time.time()))
                if data and data.startswith(b"REFER "):
                    refer = data.decode(errors="replace")
            check(refer is not None, "no REFER to the caller")
            rt = hdr(refer, "Refer-To") or hdr(refer, "r") or ""
            check(re.fullmatch(want, rt), "Refer-To (%s): %r" % (form, rt))
            d.api("DELETE", "/v1/sessions/%s" % sid)
        finally:
            call.close()
        d.wait_idle()
        d.stop()
