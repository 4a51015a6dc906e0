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


def start_baresip(t, dial):
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
            f.write(BARESIP_CONFIG.format(host=HOST, port=port, rtp=rtp, rtp_end=rtp + 9))
        with open(os.path.join(conf, "accounts"), "w") as f:
            f.write("<sip:alice@%s:%d>;regint=0\n" % (HOST, port))
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
