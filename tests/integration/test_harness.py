"""Issue 10 item 6: the harness itself. A process that fails to start is
reported at once with its exit status and its own output, and a port lost
to another process between free_port() and the bind is retried on fresh
ports without the test noticing."""
import socket
import threading
import time

import harness
from harness import HOST, StartFailure, bound_by, case, check


def _hold(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, port))
    return s


@case
def test_sipp_bad_scenario_reported_with_its_error(t):
    s = t.sipp("no-such-scenario.xml")
    t0 = time.time()
    try:
        s.start()
    except StartFailure as e:
        check(e.rc not in (None, 0), "exit status %r" % e.rc)
        check("Unable to load or parse" in str(e), "SIPp's own error missing: %s" % e)
        check(time.time() - t0 < 5, "noticed after %.1fs, not at the exit" % (time.time() - t0))
        return
    raise harness.TestFailure("SIPp with a missing scenario started")


@case
def test_sipp_port_lost_to_race_retried_on_fresh_port(t):
    s = t.sipp("room.xml")
    thief = _hold(s._port)  # taken between free_port() and SIPp's bind
    lost = s._port
    try:
        s.start()
    finally:
        thief.close()
    check(s.port != lost, "SIPp still on the stolen port %d" % lost)
    check(bound_by(s.proc.pid, [("udp", s.port)]), "SIPp not on its new port %d" % s.port)
    check(any("lost a port" in n for n in t.notes), "retry not noted: %s" % t.notes)
    lo, hi = harness._ephemeral_range()
    check(not lo <= s.port <= hi, "port %d in the ephemeral range" % s.port)


@case
def test_sipp_published_port_is_not_swapped(t):
    s = t.sipp("room.xml")
    port = s.port  # the test has seen it (a room URI would carry it)
    thief = _hold(port)

    def free_after_first_attempt():
        harness.wait_for(lambda: any(p.poll() is not None for p in t.procs), 20,
                         "SIPp's first attempt to fail")
        thief.close()
    threading.Thread(target=free_after_first_attempt, daemon=True).start()
    s.start()
    check(s.port == port, "published port changed %d -> %d" % (port, s.port))
    check(bound_by(s.proc.pid, [("udp", port)]), "SIPp not on port %d" % port)


@case
def test_daemon_port_lost_to_race_retried_on_fresh_ports(t):
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:9" % HOST})
    lost = d._sip_port
    thief = _hold(lost)
    try:
        d.start()
    finally:
        thief.close()
    check(d.sip_port != lost, "daemon still on the stolen port %d" % lost)
    check(d.options() == 200, "OPTIONS on the new port %d" % d.sip_port)
    check("cannot listen" not in d.log_text(), "failed attempt left in the log")
    d.check_clean_exit()


@case
def test_daemon_exit_reported_with_status_and_log(t):
    d = t.daemon(rooms={"room-a": "sip:room-a@%s:9" % HOST}, **{"media.mode": "bogus"})
    try:
        d.start()
    except StartFailure as e:
        check(e.rc not in (None, 0), "exit status %r" % e.rc)
        check("media.mode" in e.output, "daemon's own error missing: %r" % e.output)
        t.daemons.remove(d)  # its exit is this test's point
        return
    raise harness.TestFailure("sipxferd with a bad config started")
