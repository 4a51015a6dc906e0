"""Issue 4: sipRefer (REFER to the caller's side) and REFER from rooms."""
import os
import shutil
import subprocess

from harness import HOST, RawCall, Skip, case, check, wait_for
from test_core import caller
from test_transfer import (ROOM_B, connected_caller, events_for, session, setup, transfer,
                           xfer_types)


def refer_call(t, scenario, keys=None, **kw):
    """A caller running `scenario` (a REFER transferee), connected to room-a."""
    d, rooms, w = setup(t, rooms=kw.pop("rooms", ("room-a",)), **kw)
    c, sid = connected_caller(t, d, scenario, keys=keys)
    return d, rooms, w, c, sid


def target_uri(port=9):
    return "sip:bob@%s:%d" % (HOST, port)


def outcome(w, sid, typ, status=None):
    w.wait_type(typ, 20)
    ev = [e for e in events_for(w, sid) if e["type"] == typ][0]
    check(ev["payload"]["is_sip_refer"] is True, "is_sip_refer false: %s" % ev["payload"])
    if status is not None:
        check(ev["payload"].get("sip_status") == status, "sip_status %s, want %s" % (
            ev["payload"].get("sip_status"), status))
    return ev


def out_of_path(d, rooms, c):
    """sipxferd sent BYE to both sides and holds nothing."""
    c.check_ok(20, "caller side must get BYE")
    rooms["room-a"].check_ok(20, "room must get BYE")
    d.wait_idle()


@case
def test_refer_notify_200_leaves_path(t):
    d, rooms, w, c, sid = refer_call(t, "refer_transferee.xml",
                                     keys={"notify1": "100 Trying", "notify2": "200 OK"})
    st, obj = transfer(d, "room-a", sid, target_uri() + "?X-Ticket=42", mode="sipRefer")
    check(st == 200 and obj.get("transferId"), "sipRefer: %s %s" % (st, obj))
    out_of_path(d, rooms, c)
    outcome(w, sid, "calltransfer.completed")
    types = xfer_types(w, sid)
    check(types == ["calltransfer.triggered", "calltransfer.initiated",
                    "calltransfer.completed"], "events %s" % types)
    m = d.metrics()
    check(m.get('sipxfer_transfers_total{mode="sipRefer",outcome="completed"}') == 1,
          "transfer metrics %s" % {k: v for k, v in m.items() if "transfers" in k})
    log = open(c.log_path).read()
    check("sip:bob@127.0.0.1:9?X-Ticket=42" in log, "Refer-To carried: %r" % log[-300:])
    d.check_clean_exit()


@case
def test_refer_refused_405_keeps_call(t):
    d, rooms, w, c, sid = refer_call(t, "refer_refused.xml")
    st, obj = transfer(d, "room-a", sid, target_uri(), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    outcome(w, sid, "calltransfer.failed", 405)
    check(session(d, sid)["state"] == "connected", "call dropped after a refused REFER")
    check(not rooms["room-a"].done(), "room leg ended")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    out_of_path(d, rooms, c)
    d.check_clean_exit()


@case
def test_refer_notify_486_keeps_call(t):
    d, rooms, w, c, sid = refer_call(t, "refer_transferee_fail.xml",
                                     keys={"notify2": "486 Busy Here"})
    st, obj = transfer(d, "room-a", sid, target_uri(), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    outcome(w, sid, "calltransfer.failed", 486)
    types = xfer_types(w, sid)
    check(types == ["calltransfer.triggered", "calltransfer.initiated", "calltransfer.failed"],
          "events %s" % types)
    # the caller hangs up itself afterwards: the room gets the BYE
    c.check_ok(20)
    rooms["room-a"].check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_refer_without_notify_times_out(t):
    d, rooms, w, c, sid = refer_call(t, "refer_silent.xml",
                                     **{"transfer.notify_timeout": 2})
    st, obj = transfer(d, "room-a", sid, target_uri(), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    outcome(w, sid, "calltransfer.failed")
    check(session(d, sid)["state"] == "connected", "call dropped after a NOTIFY timeout")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    out_of_path(d, rooms, c)
    d.check_clean_exit()


@case
def test_refer_sub_false_2xx_is_success(t):
    d, rooms, w, c, sid = refer_call(t, "refer_nosub.xml")
    st, obj = transfer(d, "room-a", sid, target_uri(), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    out_of_path(d, rooms, c)
    outcome(w, sid, "calltransfer.completed")
    d.check_clean_exit()


@case
def test_refer_caller_bye_before_notify_is_success(t):
    d, rooms, w, c, sid = refer_call(t, "refer_bye_first.xml")
    st, obj = transfer(d, "room-a", sid, target_uri(), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    c.check_ok(20)
    rooms["room-a"].check_ok(20)
    outcome(w, sid, "calltransfer.completed")
    d.wait_idle()
    d.check_clean_exit()


@case
def test_refer_to_room_or_disallowed_target_refused(t):
    d, rooms, w, c, sid = refer_call(t, "caller_wait_bye.xml",
                                     **{"transfer.allow": ["sip:*@allowed.example"]})
    st, obj = transfer(d, "room-a", sid, ROOM_B, mode="sipRefer")
    check(st == 400 and "room" in obj.get("info", ""), "room target: %s %s" % (st, obj))
    st, obj = transfer(d, "room-a", sid, "sip:x@rooms.sipxfer.test", mode="sipRefer")
    check(st == 400, "rooms.domain target: %s %s" % (st, obj))
    st, obj = transfer(d, "room-a", sid, "sip:x@denied.example", mode="sipRefer")
    check(st == 403, "disallowed target: %s %s" % (st, obj))
    check(session(d, sid)["state"] == "connected", "call disturbed")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    c.check_ok(20)
    rooms["room-a"].check_ok(20)
    d.check_clean_exit()


@case
def test_refer_fallback_to_call_transfer(t):
    target = t.sipp("room.xml")
    target.start()
    d, rooms, w, c, sid = refer_call(t, "refer_refused.xml",
                                     **{"transfer.refer_fallback": True})
    st, obj = transfer(d, "room-a", sid, target_uri(target.port), mode="sipRefer")
    check(st == 200, "sipRefer: %s %s" % (st, obj))
    rooms["room-a"].check_ok(20, "old room must get BYE after the fallback transfer")
    w.wait_type("calltransfer.completed", 20)
    check(session(d, sid) is not None, "caller lost")
    d.api("DELETE", "/v1/sessions/%s" % sid)
    target.check_ok(20, "fallback target must get INVITE from sipxferd and BYE")
    c.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_refer_from_room_becomes_call_transfer(t):
    room_a = t.sipp("room_refer.xml", duration=300,
                    keys={"referto": ROOM_B})
    room_b = t.sipp("room.xml")
    from harness import Webhooks
    w = Webhooks(t)
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room_a.port),
                        "room-b": "sip:room-b@%s:%d" % (HOST, room_b.port)},
                 **{"webhooks.url": w.url, "webhooks.secret": w.secret})
    room_a.start()
    room_b.start()
    d.start()
    c = caller(t, d, "caller_wait_bye.xml").start()
    sid = d.wait_session()[0]
    room_a.check_ok(20, "room-a must get 202, NOTIFYs and BYE")
    log = [l.split("\t")[-1].strip() if "\t" in l else l.strip()
           for l in open(room_a.log_path) if "notify" in l or "bye" in l]
    log = [l[l.index("notify"):] if "notify" in l else "bye" for l in log]
    check(log and log[0].startswith("notify SIP/2.0 100 ") and log[-1] == "bye"
          and log[-2] == "notify SIP/2.0 200 OK terminated"
          and all(" active" in l for l in log[:-2]), "room-a saw %s" % log)
    w.wait_type("calltransfer.completed", 20)
    s = session(d, sid)
    check(s and s["room"] == "room-b", "session after room REFER: %s" % s)
    d.api("DELETE", "/v1/sessions/%s" % sid)
    room_b.check_ok(20)
    c.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_refer_from_trunk_leg_refused_403(t):
    d, rooms, w = setup(t, rooms=("room-a",), hooks=False)
    call = RawCall(d, rtp=False)
    try:
        check(call.invite() == 200, "call")
        r = call.request("REFER", extra="Refer-To: <sip:evil@198.51.100.1>\r\n"
                         "Referred-By: <sip:x@127.0.0.1>")
        check(r and r[0] == 403, "REFER from the trunk: %s" % (r,))
        d.wait_log(r"SECURITY refer-refused src=127\.0\.0\.1:\d+")
        check(call.bye() == 200, "BYE")
    finally:
        call.close()
    rooms["room-a"].check_ok(20)
    d.wait_idle()
    d.check_clean_exit()


@case
def test_room_refer_to_disallowed_target_403_no_202(t):
    room_a = t.sipp("room_refer_denied.xml", duration=200,
                    keys={"referto": "sip:evil@198.51.100.7"})
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:%d" % (HOST, room_a.port)},
                 **{"transfer.allow": ["sip:*@allowed.example"]})
    room_a.start()
    d.start()
    c = caller(t, d, "caller_wait_bye.xml").start()
    sid = d.wait_session()[0]
    d.wait_log(r"SECURITY target-refused")
    s = session(d, sid)
    check(s and s["transfer"] is None and s["state"] == "connected", "session %s" % s)
    d.api("DELETE", "/v1/sessions/%s" % sid)
    room_a.check_ok(20, "room must get 403 (never 202) and then BYE")
    c.check_ok(20)
    d.wait_idle()
    d.check_clean_exit()
